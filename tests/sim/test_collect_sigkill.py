"""SIGKILL the whole `vla collect` process group mid-run: nothing committed is lost, the dataset
still opens in LeRobotDataset, and rerunning the same command completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from sim.collect import collect, compose_config
from sim.dataset import open_dataset, read_ledger
from sim.spaces import ACTION_KEY, OBS_IMAGE_KEYS

REPO = Path(__file__).resolve().parents[2]
TASKS = ("push_red_left", "push_green_right", "push_yellow_left")
N = 3


def committed_kept(root: Path) -> list:
    try:
        return [a for a in read_ledger(root) if a.kept]
    except (OSError, ValueError):  # mid-swap reads are fine to retry
        return []


def test_sigkill_mid_run_loses_nothing_committed_and_rerun_completes(tmp_path):
    root = tmp_path / "ds"
    overrides = [
        "env=tabletop", "env.image_size=[64,64]", f"tasks=[{','.join(TASKS)}]", f"episodes_per_task={N}",
        f"root={root}", "commit_interval_s=0",
    ]
    log = open(tmp_path / "collect.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vla.cli", "collect", *overrides, "workers=2", f"hydra.run.dir={tmp_path / 'run1'}"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # own process group
    )
    try:
        deadline = time.monotonic() + 240
        while not committed_kept(root):
            assert proc.poll() is None, (tmp_path / "collect.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no episode committed in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the collector and its spawn workers, no cleanup
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    # Whatever the ledger says is committed opens and reads back in full.
    before = committed_kept(root)
    assert len(before) >= 1
    ds = open_dataset(root)
    assert ds.num_episodes == len(before)
    assert len(ds) == sum(a.length for a in before)
    ep_col = np.array(ds.hf_dataset["episode_index"])
    kept_actions = {a.key: np.stack(ds.hf_dataset[ACTION_KEY])[ep_col == a.dataset_episode] for a in before}
    for a in before:
        assert len(kept_actions[a.key]) == a.length
        last = ds[int(ds.meta.episodes[a.dataset_episode]["dataset_to_index"]) - 1]  # decodes its video
        assert last[OBS_IMAGE_KEYS["agentview"]].shape == (3, 64, 64) and last["task"] == a.instruction

    # Rerun (in-process, serial: the worker count is not part of the dataset's identity).
    result = collect(compose_config([*overrides, "workers=0", "commit_interval_s=5"]), tmp_path / "run2")
    after = read_ledger(root)
    keys = [a.key for a in after]
    assert len(keys) == len(set(keys))
    assert Counter(a.task for a in after if a.kept) == {t: N for t in TASKS}
    assert not {a.key for a in before} & {a.key for a in result.attempts}  # nothing redone
    ds = open_dataset(root)
    assert ds.num_episodes == N * len(TASKS)
    ep_col, actions = np.array(ds.hf_dataset["episode_index"]), np.stack(ds.hf_dataset[ACTION_KEY])
    by_key = {a.key: a.dataset_episode for a in after if a.kept}
    for key, acts in kept_actions.items():  # the committed episodes survived intact
        np.testing.assert_array_equal(actions[ep_col == by_key[key]], acts)


def _alive_in_group(pgid: int) -> list[str]:
    """Live (not zombie) processes of a process group, as "pid command" strings (Linux /proc)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        state, _ppid, group = text.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            alive.append(f"{stat.parent.name} {text.split('(', 1)[1].split(')')[0]}")
    return alive


def test_sigkill_of_the_collector_alone_ends_its_workers_and_resource_tracker(tmp_path):
    root = tmp_path / "ds"
    log = open(tmp_path / "collect.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vla.cli", "collect", "env=tabletop", "env.image_size=[32,32]", f"tasks=[{TASKS[0]}]",
         "episodes_per_task=50", f"root={root}", "commit_interval_s=0", "workers=2", "videos=false",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its children share its group
    )
    try:
        deadline = time.monotonic() + 240
        while not committed_kept(root):  # workers are running and queued jobs wait in their pipe
            assert proc.poll() is None, (tmp_path / "collect.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no episode committed in time"
            time.sleep(0.05)
        assert len(_alive_in_group(proc.pid)) >= 3  # collector + 2 workers (+ resource tracker)
        proc.send_signal(signal.SIGKILL)  # the collector only: no cleanup code runs
        proc.wait(30)
        deadline = time.monotonic() + 20
        while (alive := _alive_in_group(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive, f"left behind after the collector was SIGKILLed: {alive}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever failed, leave nothing running
        except ProcessLookupError:
            pass
        proc.wait(30)
