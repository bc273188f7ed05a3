"""`vla serve` as a user runs it: a subprocess of the real CLI, on a free port (or a given one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "egl", "OMP_WAIT_POLICY": "PASSIVE"}


def start_server(checkpoint: Path, run_dir: Path, *overrides: str, port: int = 0) -> tuple[subprocess.Popen, dict]:
    """`vla serve checkpoint=... port=...` in the background; returns it and its serve.json once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "vla.cli", "serve", f"checkpoint={checkpoint}", f"port={port}",
                             "threads=1", f"hydra.run.dir={run_dir}", *overrides],
                            cwd=run_dir.parent, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    info = run_dir / "serve.json"
    deadline = time.monotonic() + 180
    while not info.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"vla serve did not start:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.2)
    time.sleep(0.1)  # written before the line is printed; the socket listens already
    return proc, json.loads(info.read_text())


def stop_server(proc: subprocess.Popen) -> str:
    proc.terminate()  # SIGTERM: stops serving and exits
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out
