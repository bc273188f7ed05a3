"""`vla profile` as a user runs it: one row per registered compressor, files, reproduce line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import compressors


def vla(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "vla.cli", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd, env=env)


def test_profile_every_method_on_tiny(tmp_path):
    out = tmp_path / "run"
    proc = vla("profile", "model=tiny", "repeats=2", "warmup=1", "threads=1", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line and line.split()[0] in
            compressors.available()}
    assert set(rows) == set(compressors.available())
    assert rows["none"][2] == "512" and rows["compressor_vla"][2] == "160" and rows["fastv"][2] == "512→256"
    report = json.loads((out / "profile.json").read_text())
    assert set(report["rows"]) == set(compressors.available())
    for name, row in report["rows"].items():
        assert row["gflops"] > 0 and row["latency_ms"]["total"] > 0, name
        assert set(row["latency_ms"]) == {"vision", "compressor", "backbone", "action_head", "total"}
    assert report["rows"]["pool"]["gflops"] < report["rows"]["none"]["gflops"]
    assert (out / "profile.md").read_text().count("|") > 10
    assert "reproduce: HF_HUB_OFFLINE=1 vla profile model=tiny repeats=2" in table


def test_profile_one_method(tmp_path):
    proc = vla("profile", "model=tiny", "compressor=pool", "repeats=1", "warmup=0", "threads=1",
               f"hydra.run.dir={tmp_path / 'one'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "one" / "profile.json").read_text())["rows"]
    assert list(rows) == ["pool"] and rows["pool"]["visual_tokens"] == 128


def test_unknown_method_is_named():
    import pytest
    from omegaconf import OmegaConf

    from vla.profiling import _compressor_presets

    with pytest.raises(ValueError, match="unknown compressor 'pol'. Did you mean 'pool'"):
        _compressor_presets(OmegaConf.create({"compressor": None, "methods": ["pol"]}))
