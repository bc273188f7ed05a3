"""Learned behaviour, measured the way a user measures it: `vla collect` demos of an easy tabletop
task (one task, one layout, noisy expert for varied demos), `vla train` the tiny model for a few
hundred steps, then `vla eval` it against `checkpoint=random` (uniform random actions) on the same
episodes. Seeds are fixed, so the numbers are reproducible on a given machine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vla.training.loop import read_metrics

TASK = "push_red_left"
SCENE = ["env=tabletop", f"env.tasks=[{TASK}]", "env.num_layouts=1"]  # layout 0 of the train split
STEPS = 300


def vla(*args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "vla.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def success_rate(cwd: Path, checkpoint: str, out: str) -> float:
    vla("eval", f"checkpoint={checkpoint}", *SCENE, "split=train", "episodes=6", "num_envs=2", "video=false",
        f"hydra.run.dir={out}", cwd=cwd)
    return json.loads((cwd / out / "eval.json").read_text())["overall"]["success_rate"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("easy")
    vla("collect", *SCENE, "episodes_per_task=16", "+expert_kwargs.noise=0.3", "+expert_kwargs.max_speed=0.5",
        "root=ds", "videos=false", "hydra.run.dir=collect", cwd=work)
    vla("train", "dataset=ds", "model=tiny", "compressor=compressor_vla", "output_dir=run", f"train.steps={STEPS}",
        "train.warmup_steps=20", f"train.save_every={STEPS}", "batch_size=16", "lr=1e-3", "threads=2",
        "hydra.run.dir=train", cwd=work)
    return work, work / "run" / "checkpoints" / "last"


def test_tiny_policy_beats_random_on_an_easy_task(trained):
    work, ckpt = trained
    losses = [m["loss"] for m in read_metrics(ckpt.parent.parent) if "loss" in m]
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3])  # it fitted the demos (flow matching has a noise floor)
    learned = success_rate(work, str(ckpt), "eval_trained")
    chance = success_rate(work, "random", "eval_random")
    print(f"{TASK}, layout 0: trained tiny {learned:.2f} vs random {chance:.2f} success")
    assert learned >= 0.5 and learned > chance
