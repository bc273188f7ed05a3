"""`vla train` data-parallel (accelerate's DDP; gloo on CPU), as a user launches it on CPU:

    torchrun --nproc_per_node 2 -m vla.cli train ... batch_size=2

(``accelerate launch --multi_gpu --num_processes N -m vla.cli train ...`` on GPUs; accelerate's
``Accelerator`` reads the same torch.distributed environment either way.) It
matches one process with the doubled batch (batch_size=4) step for step: the two ranks read
stream positions (s*2 + r)*2 + j, which are the single process's 4s .. 4s+3, and DDP averages
their gradients. The L1 head is used because it draws no noise (the flow head's noise is seeded per
rank, so its two runs legitimately differ). Then the 2-process run resumes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from train_helpers import write_dataset

COMMON = ["model=tiny", "model.vision.image_size=32", "model.head.type=l1", "model.num_action_queries=8",
          "threads=1", "train.log_every=1", "train.warmup_steps=1", "data.cache=true", "data.num_workers=0",
          "train.save_every=2", "lr=1e-3"]


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def two_processes(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    import socket

    with socket.socket() as s:  # a free rendezvous port: tests may run beside other jobs
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    return run([str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
                "-m", "vla.cli", "train", *args], cwd)


def losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in rows if "loss" in r]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / "last" / "model.safetensors"))


def test_two_cpu_processes_match_one_with_the_doubled_batch_and_resume(tmp_path):
    dataset = write_dataset(tmp_path / "data", episodes=3, length=16, size=32)
    single, multi = tmp_path / "single", tmp_path / "multi"
    one = run([sys.executable, "-m", "vla.cli", "train", f"dataset={dataset}", *COMMON, "batch_size=4",
               "train.steps=2", f"output_dir={single}"], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = two_processes(f"dataset={dataset}", *COMMON, "batch_size=2", "train.steps=2", f"output_dir={multi}",
                        cwd=tmp_path)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    a, b = weights(single), weights(multi)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    # The logged losses are the same batches' (the mean over both ranks' samples).
    la, lb = losses(single), losses(multi)
    assert len(la) == len(lb) == 2 and la[0] != la[1]  # it trained: the second step's loss moved
    assert all(abs(x - y) < 1e-4 * max(1.0, abs(x)) for x, y in zip(la, lb)), (la, lb)
    step = (multi / "checkpoints" / "last" / "training_state" / "training_step.json").read_text()
    assert '"num_processes": 2' in step and '"batch_size": 2' in step

    resumed = two_processes(f"dataset={dataset}", *COMMON, "batch_size=2", "train.steps=4", f"output_dir={multi}",
                            cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step 2" in resumed.stdout + resumed.stderr
    assert (multi / "checkpoints" / "last").resolve().name == "000004"
