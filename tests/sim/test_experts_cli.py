"""`vla experts` and `vla bench env-speed` as a user runs them (subprocess, real Hydra CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_vla(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": "egl", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "vla.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_experts_command_prints_table_and_writes_reports(tmp_path):
    proc = run_vla(
        "experts", "env=tabletop", "episodes_per_task=2", "tasks=[stack_red_on_green,push_yellow_left]",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    assert "| stack_red_on_green | 2 | 2 | 1.00 |" in proc.stdout
    assert "| push_yellow_left | 2 | 2 | 1.00 |" in proc.stdout
    assert "| **overall** | 4 | 4 | 1.00 |" in proc.stdout
    assert "reproduce: vla experts env=tabletop episodes_per_task=2 split=heldout" in proc.stdout
    report = json.loads((tmp_path / "experts.json").read_text())
    assert report["split"] == "heldout" and report["suite"] == "tabletop"
    assert [t["task"] for t in report["tasks"]] == ["stack_red_on_green", "push_yellow_left"]
    assert report["tasks"][0]["instruction"] == "stack the red cube on the green cube"
    assert report["overall"]["success_rate"] == 1.0
    assert "| stack_red_on_green |" in (tmp_path / "experts.md").read_text()


def test_experts_command_unknown_task_lists_valid_ones(tmp_path):
    proc = run_vla("experts", "env=tabletop", "tasks=[stack_blue_on_red]", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert "unknown tabletop task 'stack_blue_on_red'" in proc.stderr
    assert "Valid tasks: place_red_on_blue_plate" in proc.stderr


def test_env_speed_bench_reports_rows_and_survives_a_broken_suite(tmp_path):
    proc = run_vla("bench", "env-speed", "suites=[tabletop,no_such_suite]", "steps=20", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "env_speed.json").read_text())
    rows = {(r["suite"], r["cameras"]): r for r in report["rows"]}
    assert rows[("tabletop", True)]["steps_per_s"] > 0 and rows[("tabletop", False)]["steps_per_s"] > 0
    assert "no env config" in rows[("no_such_suite", True)]["error"]
    assert "| tabletop | place_red_on_blue_plate | on | 20 |" in proc.stdout
    assert "reproduce: vla bench env-speed suites=[tabletop,no_such_suite] steps=20 max_seconds=30" in proc.stdout
