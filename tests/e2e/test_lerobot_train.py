"""`lerobot-train --policy.type=vla` as a user runs it (the plugin route), then loading its checkpoint.

Needs the plugin distribution installed (`pip install -e plugins/lerobot_policy_vla`, done by the
Makefile): lerobot imports every installed `lerobot_policy_*` distribution, which registers `vla`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

# The `tiny` preset as lerobot-train flags (draccus nested fields).
TINY_FLAGS = [
    "--policy.chunk_size=8", "--policy.n_action_steps=4", "--policy.max_instruction_tokens=16",
    "--policy.vision.image_size=64", "--policy.vision.patch_size=4", "--policy.vision.hidden_size=32",
    "--policy.vision.num_layers=1", "--policy.vision.num_heads=2", "--policy.vision.intermediate_size=64",
    "--policy.backbone.hidden_size=64", "--policy.backbone.num_layers=3", "--policy.backbone.num_heads=2",
    "--policy.backbone.num_kv_heads=1", "--policy.backbone.intermediate_size=128",
    "--policy.head.hidden_size=32", "--policy.head.num_layers=1", "--policy.head.num_heads=2",
    "--policy.head.num_flow_steps=4",
]


def lerobot_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lerobot-train")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def test_lerobot_train_finds_vla_and_its_checkpoint_loads(tabletop_dataset, tmp_path):
    out = tmp_path / "train"
    proc = lerobot_train(
        "--policy.type=vla", "--dataset.repo_id=local/vla_tabletop", f"--dataset.root={tabletop_dataset}",
        "--steps=3", "--batch_size=2", "--num_workers=0", "--save_freq=3", "--log_freq=1",
        "--wandb.enable=false", "--policy.push_to_hub=false", "--policy.device=cpu",
        '--policy.compressor.name=compressor_vla', f"--output_dir={out}", *TINY_FLAGS,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "step:3 " in log and "visual_tokens:160" in log  # 2 cameras x (16 STC + 64 SRC)

    ckpt = out / "checkpoints" / "last" / "pretrained_model"
    from lerobot.datasets import LeRobotDataset
    from vla.checkpoint import load_checkpoint

    loaded = load_checkpoint(ckpt)
    assert loaded.policy.config.compressor.name == "compressor_vla"
    assert loaded.policy.config.backbone.num_layers == 3
    frame = LeRobotDataset("local/vla_tabletop", root=tabletop_dataset)[0]
    obs = {k: v for k, v in frame.items() if k.startswith("observation.")}
    obs["task"] = frame["task"]
    with torch.no_grad():
        chunk = loaded.postprocessor(loaded.policy.predict_action_chunk(loaded.preprocessor(obs)))
    assert chunk.shape == (1, 8, 7) and torch.isfinite(chunk).all()

    # lerobot's own loading path (what `lerobot-eval --policy.path=...` does) resolves the same policy
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    cfg = PreTrainedConfig.from_pretrained(ckpt)
    policy = get_policy_class(cfg.type).from_pretrained(ckpt, config=cfg)
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(ckpt))
    noise = torch.zeros(1, 8, 7)
    torch.testing.assert_close(policy.predict_action_chunk(pre(obs), noise=noise),
                               loaded.policy.predict_action_chunk(loaded.preprocessor(obs), noise=noise))
