"""`vla eval` as a user runs it: the command line, its printout, its files and its errors."""

import json
import os
import subprocess
import sys
from pathlib import Path


def vla(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "egl"}
    return subprocess.run([sys.executable, "-m", "vla.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


def test_eval_expert_from_the_command_line(tmp_path):
    proc = vla("eval", "checkpoint=expert", "env=tabletop", "episodes=1", "tasks=[push_red_left]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = list((tmp_path / "outputs" / "eval").iterdir())  # the Hydra run dir: outputs/eval/<time>/
    assert len(runs) == 1
    out = runs[0]
    assert "| push_red_left | 1.00 (1/1) |" in proc.stdout
    assert "policy latency per call (ms): p50" in proc.stdout
    video = out / "videos" / "push_red_left_ep000.mp4"
    assert f"video:     {video}" in proc.stdout and video.stat().st_size > 0
    assert (out / "eval.md").is_file()
    report = json.loads((out / "eval.json").read_text())
    assert report["tasks"][0]["success_rate"] == 1.0
    # The printed reproduce command runs as printed and gives the same episodes.
    line = next(l for l in proc.stdout.splitlines() if l.startswith("reproduce: vla eval "))
    again = tmp_path / "again"
    cmd = line.removeprefix("reproduce: vla ").replace("eval", f"{sys.executable} -m vla.cli eval", 1)
    rerun = subprocess.run(f"{cmd} hydra.run.dir={again}", shell=True, capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    strip = lambda eps: [{k: v for k, v in e.items() if k != "video"} for e in eps]  # noqa: E731
    assert strip(json.loads((again / "eval.json").read_text())["episodes"]) == strip(report["episodes"])


def test_missing_checkpoint_error_names_it(tmp_path):
    proc = vla("eval", "checkpoint=/nonexistent/ckpt_dir", "episodes=1", cwd=tmp_path)
    assert proc.returncode != 0
    assert "/nonexistent/ckpt_dir" in proc.stderr and "not found" in proc.stderr


def test_unknown_env_lists_the_valid_ones(tmp_path):
    proc = vla("eval", "checkpoint=expert", "env=tabletopp", cwd=tmp_path)
    assert proc.returncode != 0
    assert "tabletopp" in proc.stderr and "tabletop" in proc.stderr.replace("tabletopp", "")


def test_unknown_task_lists_the_valid_ones(tmp_path):
    proc = vla("eval", "checkpoint=expert", "tasks=[no_such_task]", cwd=tmp_path)
    assert proc.returncode != 0
    assert "unknown task 'no_such_task'" in proc.stderr and "push_red_left" in proc.stderr


def test_checkpoint_is_required(tmp_path):
    proc = vla("eval", "episodes=1", cwd=tmp_path)
    assert proc.returncode != 0 and "checkpoint" in proc.stderr


def test_checkpoint_that_does_not_load_is_one_line_before_any_env(tmp_path):
    import shutil

    ckpt = Path(shutil.copytree(Path(__file__).resolve().parents[2] / "checkpoints" / "push_red_left_tiny_cvla",
                                tmp_path / "ckpt"))
    (ckpt / "model.safetensors").write_bytes(b"\0garbage" * 100)
    work = tmp_path / "work"
    work.mkdir()
    proc = vla("eval", f"checkpoint={ckpt}", "episodes=1", "tasks=[push_red_left]", cwd=work)
    assert proc.returncode != 0
    assert f"vla eval: error: cannot load checkpoint '{ckpt}'" in proc.stderr and "model.safetensors" in proc.stderr
    # The policy loads before the env is built: no GL context to tear down, so no EGL tracebacks.
    assert "Traceback" not in proc.stderr and "EGL" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert not list(work.iterdir())  # no outputs/eval/<time>/ left behind
