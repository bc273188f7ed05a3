"""`vla bench study` (vla/bench/study.py): the matched-budget study's plan, resumption and CLI errors.
The whole study on a tiny dataset (two methods, a few steps) is the slow test at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from vla.bench.study import final_checkpoint, plan
from vla.configs import CONFIG_DIR


def study_cfg(tmp_path: Path, **overrides) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "bench" / "study.yaml"), resolve=False)
    cfg.pop("hydra")
    cfg.update(dataset=str(tmp_path / "ds"), root=str(tmp_path / "study"), **overrides)
    return cfg


def test_every_method_trains_at_the_same_budget_and_steps(tmp_path):
    steps = plan(study_cfg(tmp_path, steps=500))
    train = {s.what.removeprefix("train "): s.args for s in steps if s.what.startswith("train")}
    assert list(train) == study_cfg(tmp_path)["methods"]
    for method, args in train.items():
        assert "train.steps=500" in args and "model=tiny" in args and f"compressor={method}" in args
    assert "compressor.budget=80" in train["tome"] and "compressor.budget=160" in train["fastv"]  # in-LM: both cameras
    assert "compressor.num_queries=16" in train["compressor_vla"]
    trained, free = (s for s in steps if s.what.startswith("bench"))
    assert any(a.startswith("checkpoints={compressor_vla:") for a in trained.args)
    methods_free = next(a for a in free.args if a.startswith("methods="))
    assert "compressor_vla" not in methods_free and "stc" not in methods_free and "tome" in methods_free
    assert not any(s.done for s in steps)


def test_a_finished_training_is_skipped_and_a_half_done_one_resumes(tmp_path):
    cfg = study_cfg(tmp_path, steps=500, methods=["none", "pool"])
    final_checkpoint(tmp_path / "study" / "train" / "none", 500).mkdir(parents=True)
    (tmp_path / "study" / "train" / "pool" / "checkpoints" / "000300").mkdir(parents=True)  # half done
    done = {s.what: s.done for s in plan(cfg)}
    assert done == {"train none": True, "train pool": False, "bench trained": False, "bench free": False}


def vla_study(tmp_path: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla.cli", "bench", "study", *args], cwd=tmp_path, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_cli_errors_name_the_problem(tmp_path):
    proc = vla_study(tmp_path, f"dataset={tmp_path / 'missing'}", f"root={tmp_path / 's'}")
    assert proc.returncode != 0 and "is not a folder" in proc.stderr + proc.stdout
    (tmp_path / "ds").mkdir()
    proc = vla_study(tmp_path, f"dataset={tmp_path / 'ds'}", f"root={tmp_path / 's'}", "stage=bench")
    assert proc.returncode != 0 and "cannot bench yet, not trained" in proc.stderr + proc.stdout
    proc = vla_study(tmp_path, f"dataset={tmp_path / 'ds'}", f"root={tmp_path / 's'}", "methods=[none,tome2]")
    assert proc.returncode != 0 and "unknown methods ['tome2']" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_a_tiny_study_trains_benches_and_resumes(tabletop_dataset, tmp_path):
    args = [f"dataset={tabletop_dataset}", f"root={tmp_path / 's'}", "methods=[none,pool]", "steps=4", "save_every=4",
            "episodes=1", 'bench_overrides=["tasks=[push_red_left]","repeats=2","warmup=1"]']
    proc = vla_study(tmp_path, *args, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trained = json.loads((tmp_path / "s" / "bench_trained" / "bench.json").read_text())
    assert trained["rows"]["pool"]["weights"] == "own"  # its own trained checkpoint
    free = json.loads((tmp_path / "s" / "bench_free" / "bench.json").read_text())
    assert free["rows"]["pool"]["weights"] == "default"  # training-free on the trained none
    again = vla_study(tmp_path, *args)
    assert again.returncode == 0 and again.stdout.count(": done (") == 4
