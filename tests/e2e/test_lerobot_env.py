"""The tabletop suite as a lerobot env: `lerobot-eval --env.type=vla_tabletop` evaluates lerobot
policies through lerobot's own CLI and plugin discovery: a small randomly initialised ACT (a policy
lerobot ships) and a `vla` checkpoint (`--policy.path`, found through the lerobot_policy_vla plugin)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest

TASKS = ["place_red_on_blue_plate", "push_red_left"]
EPISODE_LENGTH = 12


@pytest.fixture(scope="module")
def act_checkpoint(tmp_path_factory) -> Path:
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from sim.lerobot_env import VLATabletopEnvConfig

    out = tmp_path_factory.mktemp("act")
    env_cfg = VLATabletopEnvConfig(task=TASKS[0], observation_height=64, observation_width=64)
    cfg = ACTConfig(
        device="cpu", chunk_size=5, n_action_steps=5, dim_model=32, dim_feedforward=64, n_heads=2,
        n_encoder_layers=1, n_decoder_layers=1, use_vae=False, pretrained_backbone_weights=None,
    )
    policy = make_policy(cfg, env_cfg=env_cfg)
    pre, post = make_pre_post_processors(cfg, dataset_stats=None)
    for part in (policy, pre, post):
        part.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def vla_checkpoint(tmp_path_factory) -> Path:
    """A tiny, untrained `vla` checkpoint (compressor_vla) with fixed normalisation stats."""
    import numpy as np
    from omegaconf import OmegaConf

    from vla.checkpoint import build_policy, save_checkpoint
    from vla.configs import CONFIG_DIR

    stats = {
        "observation.state": {"mean": np.zeros(8, np.float32), "std": np.ones(8, np.float32)},
        "action": {"mean": np.zeros(7, np.float32), "std": np.full(7, 0.5, np.float32)},
    }
    model = OmegaConf.load(CONFIG_DIR / "model" / "tiny.yaml")
    compressor = OmegaConf.load(CONFIG_DIR / "compressor" / "compressor_vla.yaml")
    policy, pre, post = build_policy(model, compressor, dataset_stats=stats)
    return save_checkpoint(tmp_path_factory.mktemp("vla"), policy, pre, post)


def test_env_config_features_follow_the_suite():
    from sim.lerobot_env import VLATabletopEnvConfig

    cfg = VLATabletopEnvConfig(observation_height=96, observation_width=80)
    assert cfg.features["pixels/agentview"].shape == (96, 80, 3)
    assert cfg.features_map["pixels/wrist"] == "observation.images.wrist"
    assert cfg.features_map["agent_pos"] == "observation.state"
    with pytest.raises(ValueError, match="Valid tasks"):
        VLATabletopEnvConfig(task="place_the_moon").task_list()


@pytest.mark.parametrize("policy", ["act_checkpoint", "vla_checkpoint"])
def test_lerobot_eval_runs_a_policy_on_the_tabletop_suite(policy, request, tmp_path):
    checkpoint = request.getfixturevalue(policy)
    out = tmp_path / "eval"
    cmd = [
        str(Path(sys.executable).with_name("lerobot-eval")), f"--policy.path={checkpoint}", "--env.type=vla_tabletop",
        f"--env.task={','.join(TASKS)}", "--env.observation_height=64", "--env.observation_width=64",
        f"--env.episode_length={EPISODE_LENGTH}", "--eval.n_episodes=1", "--eval.batch_size=1",
        "--policy.device=cpu", f"--output_dir={out}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "egl"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    info = json.loads((out / "eval_info.json").read_text())
    per_task = info["per_task"]
    assert [t["task_id"] for t in per_task] == [0, 1]  # one vector env per requested task
    for task in per_task:
        assert len(task["metrics"]["successes"]) == 1
        (video,) = task["metrics"]["video_paths"]
        frames = iio.imread(video, plugin="pyav")
        # the (untrained) policy never succeeds, so the rollout ran to truncation: one frame per step
        assert frames.shape[0] == EPISODE_LENGTH and frames.shape[-1] == 3
    assert info["overall"]["n_episodes"] == 2
