"""lerobot's own ACT and Diffusion Policy as baselines: trained with `lerobot-train` on a tabletop
dataset, then measured by `vla eval` exactly like a VLA checkpoint (success, latency, parameters).

Tiny models (ResNet-18 backbones from scratch: nothing can be downloaded), 2 training steps each.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_lerobot_train import lerobot_train

ACT_FLAGS = [
    "--policy.type=act", "--policy.dim_model=64", "--policy.n_heads=2", "--policy.dim_feedforward=128",
    "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1", "--policy.n_vae_encoder_layers=1",
    "--policy.chunk_size=8", "--policy.n_action_steps=8",
]
# n_obs_steps stays at its default 2, so the observation history (`observe`) is exercised.
DIFFUSION_FLAGS = [
    "--policy.type=diffusion", "--policy.horizon=8", "--policy.n_action_steps=4", "--policy.drop_n_last_frames=3",
    "--policy.down_dims=[32,64]", "--policy.diffusion_step_embed_dim=32", "--policy.spatial_softmax_num_keypoints=8",
    "--policy.use_separate_rgb_encoder_per_camera=false", "--policy.use_group_norm=true",
    "--policy.num_train_timesteps=10", "--policy.num_inference_steps=2",
]
EPISODE_STEPS = 16


def train(flags: list[str], dataset: Path, out: Path) -> tuple[Path, int]:
    """(pretrained_model folder, the parameter count lerobot-train logged)."""
    proc = lerobot_train(
        *flags, "--dataset.repo_id=local/vla_tabletop", f"--dataset.root={dataset}", "--steps=2", "--batch_size=2",
        "--num_workers=0", "--save_freq=2", "--log_freq=1", "--wandb.enable=false", "--policy.push_to_hub=false",
        "--policy.device=cpu", "--policy.pretrained_backbone_weights=null", f"--output_dir={out}", cwd=out.parent,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    params = re.search(r"num_total_params=(\d+)", proc.stdout + proc.stderr)
    assert params, "lerobot-train no longer logs num_total_params"
    return out / "checkpoints" / "last" / "pretrained_model", int(params.group(1))


@pytest.fixture(scope="module")
def act_checkpoint(tabletop_dataset, tmp_path_factory):
    return train(ACT_FLAGS, tabletop_dataset, tmp_path_factory.mktemp("act") / "train")


@pytest.fixture(scope="module")
def diffusion_checkpoint(tabletop_dataset, tmp_path_factory):
    return train(DIFFUSION_FLAGS, tabletop_dataset, tmp_path_factory.mktemp("diffusion") / "train")


def image_size(ckpt: Path) -> tuple[int, int]:
    """(H, W) the policy was trained at (the tabletop_dataset fixture's, from the saved config)."""
    features = json.loads((ckpt / "config.json").read_text())["input_features"]
    return tuple(features["observation.images.agentview"]["shape"][1:])


def vla_eval(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "vla.cli", "eval", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize("kind, calls", [("act", EPISODE_STEPS // 8), ("diffusion", EPISODE_STEPS // 4)])
def test_vla_eval_measures_a_lerobot_train_checkpoint(kind, calls, request, tmp_path):
    ckpt, params = request.getfixturevalue(f"{kind}_checkpoint")
    h, w = image_size(ckpt)
    out = tmp_path / "eval"
    proc = vla_eval(f"checkpoint={ckpt}", "env=tabletop", "episodes=1", "tasks=[push_red_left]", "video=false",
                    f"env.image_size=[{h},{w}]", f"env.max_episode_steps={EPISODE_STEPS}", "threads=1",
                    f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "eval.json").read_text())
    assert report["overall"]["episodes"] == 1 and report["episodes"][0]["length"] == EPISODE_STEPS
    assert report["policy"] == {"type": kind, "params": params}  # the count lerobot-train logged
    lat = report["latency_ms"]
    assert lat["calls"] == calls and lat["p50"] > 0  # n_action_steps executed per call
    assert {"preprocess", "model", "postprocess", "total"} <= set(lat["stages_mean"])
    assert report["visual_tokens_mean"] == 0
    assert f"policy: {kind}, {params / 1e6:.2f} M parameters" in proc.stdout


def obs(seed: int, size: tuple[int, int]) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": {c: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for c in ("agentview", "wrist")},
            "state": rng.normal(size=8).astype(np.float32), "instruction": "push the red cube to the left"}


def test_diffusion_sees_the_same_history_as_lerobot_select_action(diffusion_checkpoint):
    """infer at step 0, observe steps 1-3, infer at step 4 == lerobot's select_action called every
    step (it predicts at steps 0 and 4 from its queue of the last n_obs_steps=2 frames)."""
    from vla.runtime import LeRobotChunkPolicy, load_policy

    policy = load_policy(diffusion_checkpoint[0], "cpu")
    hw = image_size(diffusion_checkpoint[0])
    assert isinstance(policy, LeRobotChunkPolicy) and policy.n_obs_steps == 2 and policy.n_action_steps == 4
    policy.reset()
    policy.infer(obs(0, hw))
    for t in (1, 2, 3):
        policy.observe(obs(t, hw))
    torch.manual_seed(1)
    ours = policy.infer(obs(4, hw))["actions"]

    lerobot, pre, post = policy.policy, policy.preprocessor, policy.postprocessor
    lerobot.reset()
    for t in range(5):
        torch.manual_seed(1)  # the sampling noise of the call at step 4
        first = lerobot.select_action(pre(policy._batch(obs(t, hw))))
    chunk = torch.cat([first[:, None], torch.stack(list(lerobot._queues["action"]), dim=1)], dim=1)
    np.testing.assert_allclose(ours, np.clip(post(chunk)[0].numpy(), -1, 1), atol=1e-6)
    # and the history matters: without the observed frames the chunk differs
    policy.reset()
    policy.infer(obs(0, hw))
    torch.manual_seed(1)
    assert not np.allclose(policy.infer(obs(4, hw))["actions"], ours)


def test_lerobot_checkpoint_errors_are_clear(act_checkpoint):
    from vla.runtime import load_policy

    ckpt = act_checkpoint[0]
    hw = image_size(ckpt)
    with pytest.raises(FileNotFoundError, match="Did you mean .*pretrained_model"):
        load_policy(ckpt.parent)  # <out>/checkpoints/last
    with pytest.raises(ValueError, match="VLA checkpoints only"):
        load_policy(ckpt, accel="fast")
    policy = load_policy(ckpt, "cpu", n_action_steps=4)  # load-time overrides work for any policy
    assert policy.n_action_steps == 4 and policy.infer(obs(0, hw))["actions"].shape == (8, 7)
    h, w = hw
    with pytest.raises(ValueError, match=rf"trained on \({h}, {w}\).*env.image_size=\[{h},{w}\]"):
        policy.infer(obs(0, (2 * h, 2 * w)))


def test_lerobot_checkpoint_with_garbage_weights_names_the_file(act_checkpoint, tmp_path):
    import shutil

    from policies.checkpoint_files import CheckpointError
    from vla.runtime import load_policy

    ckpt = Path(shutil.copytree(act_checkpoint[0], tmp_path / "act"))
    (ckpt / "model.safetensors").write_bytes(b"\x00garbage, not a safetensors file" * 64)
    with pytest.raises(CheckpointError, match=r"model\.safetensors' of this 'act' checkpoint"):
        load_policy(ckpt)
