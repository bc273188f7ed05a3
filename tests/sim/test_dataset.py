"""sim/dataset.py: staged episodes and the crash-safe LeRobot store, on synthetic episodes.

The hard-kill tests fork a child (cheap: lerobot is already imported) that SIGKILLs itself at a
chosen point of a commit; the parent then checks that the dataset still opens with exactly the
previously committed episodes and that the next commit completes without duplicates.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from sim import dataset as sd
from sim.dataset import Attempt, DatasetStore, Episode, dataset_features, load_staged, stage_episode
from sim.spaces import ACTION_KEY, CAMERAS, OBS_IMAGE_KEYS, OBS_STATE_KEY, embodiment

SIZE = (32, 32)
REPO_ID = "local/vla_test"


def make_episode(task: str, index: int, length: int = 12, kept: bool = True) -> Episode:
    rng = np.random.default_rng(index * 1000 + len(task))
    base = rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)
    images = {cam: np.stack([np.roll(base, t + k, axis=1) for t in range(length)]) for k, cam in enumerate(CAMERAS)}
    attempt = Attempt(task, index, kept, kept, seed=index, length=length, instruction=f"do {task}")
    return Episode(
        attempt, images, rng.standard_normal((length, 8)).astype(np.float32),
        rng.uniform(-1, 1, (length, 7)).astype(np.float32),
    )


def fingerprint(size: tuple[int, int] = SIZE) -> dict:
    features = {k: {"dtype": v["dtype"], "shape": list(v["shape"])} for k, v in dataset_features(embodiment(size)).items()}
    return {"repo_id": REPO_ID, "env": "synthetic", "fps": 10, "features": features, "seed": 0}


def make_store(root: Path, size: tuple[int, int] = SIZE) -> DatasetStore:
    return DatasetStore(root, REPO_ID, 10, dataset_features(embodiment(size)), fingerprint(size))


def stage(store: DatasetStore, episodes: list[Episode]) -> list[Path]:
    return [stage_episode(ep, store.staging) for ep in episodes]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, hashlib.md5(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def check_dataset(root: Path, expected: list[Episode]) -> None:
    """The dataset opens in LeRobotDataset and holds exactly `expected`, in order, bit-exact."""
    ds = sd.open_dataset(root)
    assert ds.num_episodes == len(expected)
    assert len(ds) == sum(ep.attempt.length for ep in expected)
    ledger = [a for a in sd.read_ledger(root) if a.kept]
    assert [(a.task, a.episode) for a in ledger] == [ep.attempt.key for ep in expected]
    actions = np.stack(ds.hf_dataset[ACTION_KEY]) if len(ds) else np.zeros((0, 7))
    states = np.stack(ds.hf_dataset[OBS_STATE_KEY])
    np.testing.assert_array_equal(actions, np.concatenate([ep.action for ep in expected]))
    np.testing.assert_array_equal(states, np.concatenate([ep.state for ep in expected]))
    last = ds[len(ds) - 1]  # decodes the newest video segment
    assert last[OBS_IMAGE_KEYS["wrist"]].shape == (3, *SIZE)
    assert last["task"] == expected[-1].attempt.instruction


def test_staged_episode_round_trip(tmp_path):
    ep = make_episode("a", 3)
    path = stage_episode(ep, tmp_path)
    back = load_staged(path)
    assert back.attempt == ep.attempt
    for cam in CAMERAS:
        np.testing.assert_array_equal(back.images[cam], ep.images[cam])
    np.testing.assert_array_equal(back.action, ep.action)
    assert load_staged(path, frames=False).images == {}
    failed = stage_episode(make_episode("a", 4, kept=False), tmp_path)
    assert failed.suffix == ".json" and not load_staged(failed).attempt.kept
    assert sorted(p.name.startswith(".") for p in tmp_path.iterdir()) == [False, False]  # no temp files left


def test_commits_never_touch_the_published_version_and_compaction_keeps_data(tmp_path):
    root = tmp_path / "ds"
    eps = [make_episode("a", 0), make_episode("b", 0), make_episode("a", 1), make_episode("b", 1)]
    with make_store(root) as store:
        store.commit(stage(store, eps[:2]))
        before = snapshot(root)
        store.commit(stage(store, eps[2:3]) + [stage_episode(make_episode("b", 9, kept=False), store.staging)])
        after = snapshot(root)
        # Every data/video/episode-meta file of the old version lives on unchanged in the new one
        # (same inode: a hard link, never rewritten); only the small top-level meta files, which
        # are copied because lerobot rewrites them in place, may differ.
        relinked = {k for k in before if not k.startswith("meta/") or k.startswith("meta/episodes/")}
        assert relinked and all(before[k] == after[k] for k in relinked)
        changed = {k for k in before if before[k][1] != after[k][1]}
        assert changed <= {"meta/info.json", "meta/stats.json", "meta/tasks.parquet", "meta/vla_episodes.jsonl"}
        assert len(list((root / "data").rglob("*.parquet"))) == 2
        assert store.compact()
        assert len(list((root / "data").rglob("*.parquet"))) == 1
        check_dataset(root, eps[:3])
        # A compacted dataset resumes and compacts again (lerobot's aggregate mislabels episode
        # metadata files; sim.dataset fixes that up).
        store.commit(stage(store, eps[3:]))
        assert store.compact()
        check_dataset(root, eps)
        assert store.staged() == []
        assert [a.key for a in store.ledger()] == [("a", 0), ("b", 0), ("a", 1), ("b", 9), ("b", 1)]


def _commit_and_die(root: str, paths: list[str], where: str) -> None:
    """Child process: commit, but SIGKILL ourselves at `where`."""

    def die(*_a, **_k):
        os.kill(os.getpid(), signal.SIGKILL)

    real_exchange, real_write = sd.exchange_dirs, DatasetStore._write_episode
    calls = []
    if where == "mid_episodes":
        def write(self, ds, ep):
            calls.append(1)
            if len(calls) == 2:
                die()
            real_write(self, ds, ep)
        DatasetStore._write_episode = write
    elif where == "before_swap":
        sd.exchange_dirs = die
    elif where == "after_swap":
        sd.exchange_dirs = lambda *a: (real_exchange(*a), die())
    with make_store(Path(root)) as store:
        store.commit([Path(p) for p in paths])
    os._exit(3)  # not reached


@pytest.mark.parametrize("where", ["mid_episodes", "before_swap", "after_swap"])
def test_sigkill_inside_a_commit_keeps_the_dataset_valid(tmp_path, where):
    root = tmp_path / "ds"
    first, batch = [make_episode("a", 0)], [make_episode("a", 1), make_episode("b", 0)]
    with make_store(root) as store:
        store.commit(stage(store, first))
        paths = stage(store, batch)
    child = mp.get_context("fork").Process(target=_commit_and_die, args=(str(root), [str(p) for p in paths], where))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    published = first + batch if where == "after_swap" else first
    check_dataset(root, published)
    with make_store(root) as store:  # recovery: leftovers removed, already-committed staged files dropped
        assert not store._next.exists()
        remaining = [load_staged(p, frames=False).attempt.key for p in store.staged()]
        assert remaining == ([] if where == "after_swap" else sorted(ep.attempt.key for ep in batch))
        store.commit(store.staged())
    check_dataset(root, first + (batch if where == "after_swap" else sorted(batch, key=lambda e: e.attempt.key)))


def test_failed_commit_leaves_root_untouched(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    with make_store(root) as store:
        store.commit(stage(store, [make_episode("a", 0)]))
        before = snapshot(root)
        monkeypatch.setattr(sd, "exchange_dirs", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
        with pytest.raises(OSError, match="disk full"):
            store.commit(stage(store, [make_episode("a", 1)]))
        assert snapshot(root) == before and len(store.staged()) == 1


def test_fallback_swap_interrupted_between_renames_is_recovered(tmp_path):
    root = tmp_path / "ds"
    with make_store(root) as store:
        store.commit(stage(store, [make_episode("a", 0)]))
        os.rename(root, store._prev)  # as if killed right after the first rename of the fallback
    with make_store(root):
        pass
    check_dataset(root, [make_episode("a", 0)])


def test_reopening_with_other_features_names_the_difference(tmp_path):
    root = tmp_path / "ds"
    with make_store(root) as store:
        store.commit(stage(store, [make_episode("a", 0)]))
    with pytest.raises(ValueError) as err:
        with make_store(root, size=(16, 16)):
            pass
    msg = str(err.value)
    assert "features.observation.images.agentview.shape: [32, 32, 3] in the dataset, [16, 16, 3] now" in msg
    assert "another root=" in msg


def test_root_that_is_not_a_collected_dataset_is_refused(tmp_path):
    root = tmp_path / "ds"
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps({"codebase_version": "v3.0"}))
    with pytest.raises(ValueError, match="not recorded by `vla collect`"):
        with make_store(root):
            pass


def test_two_writers_on_one_root_are_refused(tmp_path):
    with make_store(tmp_path / "ds"):
        with pytest.raises(RuntimeError, match="another `vla collect` is writing"):
            with make_store(tmp_path / "ds"):
                pass


def test_episode_with_wrong_image_size_is_a_clear_error(tmp_path):
    ep = make_episode("a", 0)
    msg = r"'observation.images.agentview' has shape \(12, 32, 32, 3\), dataset expects \(12, 16, 16, 3\)"
    with pytest.raises(ValueError, match=msg):
        ep.check(dataset_features(embodiment((16, 16))))


def test_a_commit_whose_videos_miss_frames_is_not_published(tmp_path):
    root = tmp_path / "ds"
    with make_store(root) as store:
        store.commit(stage(store, [make_episode("a", 0, length=12)]))
    empty = tmp_path / "empty"
    empty.mkdir()
    sd._verify_new_videos(empty, root, 12, list(CAMERAS))  # all of root's videos are "new" relative to an empty dir
    with pytest.raises(RuntimeError, match="hold 12 frames, the committed episodes 13; not publishing"):
        sd._verify_new_videos(empty, root, 13, list(CAMERAS))
    frames = sd.episode_frames(root, 0)
    assert frames["wrist"].shape == (12, *SIZE, 3) and frames["wrist"].dtype == np.uint8
