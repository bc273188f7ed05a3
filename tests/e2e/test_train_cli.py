"""`vla train` as a user runs it: the debug preset trains two steps, then the same command with
more steps resumes; bad input is one clear line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def vla(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `vla` in ``cwd`` (Hydra writes its run dir, outputs/train/<time>, under the working dir)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "vla.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def _root(fixture) -> Path:
    return Path(fixture) if isinstance(fixture, (str, Path)) else Path(fixture.root)


def test_debug_preset_trains_two_steps_then_resumes(tabletop_dataset, tmp_path):
    out = tmp_path / "run"
    first = vla("train", f"dataset={_root(tabletop_dataset)}", "train=debug", f"output_dir={out}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpts = out / "checkpoints"
    assert (ckpts / "last").resolve().name == "000002"
    for name in ("config.json", "model.safetensors", "fingerprint.json", "policy_preprocessor.json",
                 "policy_postprocessor.json", "train_config.yaml", "training_state/training_step.json"):
        assert (ckpts / "last" / name).is_file(), name
    assert "loss=" in first.stderr and "smp_s=" in first.stderr  # the tqdm bar
    # output_dir= is the run dir itself (Hydra's log next to the checkpoints): no outputs/train/<time>/.
    assert (out / "train.log").is_file() and not (tmp_path / "outputs").exists()

    second = vla("train", f"dataset={_root(tabletop_dataset)}", "train=debug", f"output_dir={out}", "train.steps=4",
                 cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming at step 2" in second.stdout + second.stderr
    assert (ckpts / "last").resolve().name == "000004"


def test_missing_dataset_is_one_clear_line(tmp_path):
    proc = vla("train", f"dataset={tmp_path / 'nope'}", "train=debug", f"output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "vla train: error:" in proc.stderr and str(tmp_path / "nope") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # failed at validation: no out/, no outputs/
