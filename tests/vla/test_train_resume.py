"""A `vla train` process SIGKILLed after a checkpoint resumes to the same weights as a run that was
never interrupted (the data order and every random draw are functions of seed and step)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from safetensors.torch import load_file

from train_helpers import FAST_TINY, dataset_root, small_run
from vla.train import train
from vla.training import checkpointing

ARGS = ("train.steps=12", "train.save_every=2", "data.augment.shift=2")


def _kill_after_first_checkpoint(proc: subprocess.Popen, out, seen: dict) -> None:
    while proc.poll() is None:
        last = checkpointing.checkpoints_dir(out) / checkpointing.LAST
        if last.exists():
            proc.send_signal(signal.SIGKILL)
            seen["killed_after"] = last.resolve().name
            break
        time.sleep(0.02)
    proc.wait()


def test_sigkilled_run_resumes_to_the_same_weights(tabletop_dataset, tmp_path):
    dataset = dataset_root(tabletop_dataset)
    killed_out, straight_out = tmp_path / "killed", tmp_path / "straight"
    cmd = [sys.executable, "-m", "vla.cli", "train", f"dataset={dataset}", *FAST_TINY, "threads=1", "batch_size=4",
           f"output_dir={killed_out}", "train.log_every=1", "train.warmup_steps=2", "data.cache=true", *ARGS]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log_file = tmp_path / "killed.log"  # a file, not a pipe: a full pipe would block the child
    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    seen: dict = {}
    watcher = threading.Thread(target=_kill_after_first_checkpoint, args=(proc, killed_out, seen))
    watcher.start()
    try:
        straight = train(small_run(dataset, straight_out, *ARGS))  # meanwhile, the uninterrupted run
        watcher.join(timeout=600)
    finally:
        if proc.poll() is None:  # never leave the child behind, whatever failed
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, log_file.read_text()[-3000:]
    assert seen["killed_after"] != "000012"

    resumed = train(small_run(dataset, killed_out, *ARGS))  # same command again: resume=auto
    assert 2 <= resumed.start_step < 12 and resumed.end_step == 12
    a = load_file(str(straight.checkpoint / "model.safetensors"))
    b = load_file(str(resumed.checkpoint / "model.safetensors"))
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff == 0.0, f"max weight difference {diff} after resuming from step {resumed.start_step}"
    assert resumed.losses == [(s, loss) for s, loss in straight.losses if s > resumed.start_step]
    assert not list(checkpointing.checkpoints_dir(killed_out).glob("tmp-*"))
