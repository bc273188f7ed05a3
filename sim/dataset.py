"""LeRobot v3.0 dataset I/O for `vla collect`: features, staged episodes and a crash-safe store.

Why not just ``LeRobotDataset.create`` + ``save_episode`` in a loop?  lerobot 0.6.1 appends every
episode of a session to one open ``pyarrow.ParquetWriter`` per data / episode-metadata file and
writes their footers only in ``finalize()``, while ``meta/info.json`` and ``stats.json`` are
rewritten (in place) after every episode. A SIGKILL mid-session therefore leaves parquet files
without footers next to an info.json that counts their episodes: the dataset no longer opens.

Design (every claim below was checked by experiment on lerobot 0.6.1, see tests/sim/):

1. **Staging.** Simulation workers write each finished episode to
   ``<parent>/.<name>.collect/staging/`` as one compressed ``.npz`` (frames + metadata), via a
   temporary file, fsync and ``os.replace``: a staged file is either complete or absent. Failed
   attempts that are not kept become a tiny ``.json`` marker so a rerun does not redo them.
2. **Versioned commits.** The writer process commits staged episodes in batches. A commit builds
   the next version of the whole dataset in ``.<name>.collect/next``: every existing file is
   *hard-linked* (free, O(files)) except the small top-level ``meta/`` files, which are copied
   because lerobot rewrites them in place. ``LeRobotDataset.resume`` on that copy always starts
   *new* data / episode-metadata / video files (verified: it never modifies an existing one),
   so the hard-linked files of the published version are never touched. After ``finalize()`` the
   new version is complete, and it replaces ``root`` in one atomic step: Linux
   ``renameat2(RENAME_EXCHANGE)`` swaps the two directories, then the old one is deleted.
   On systems without it we fall back to two renames (root is briefly absent; the next start
   restores it), documented in :func:`exchange_dirs`.
3. **Ledger.** ``<root>/meta/vla_episodes.jsonl`` lists every committed attempt
   (task, episode index, success, kept, seed, length, dataset episode index). It is part of the
   version, so it is always consistent with the data. Done = ledger + staged files; a rerun
   skips those and commits leftover staged files first (deleting ones already in the ledger,
   which happens if a kill lands between the swap and the staging cleanup).
4. **Compaction.** Each commit adds 4 files (1 data, 1 episode-meta, 1 video per camera). At the
   end of a run ``lerobot.datasets.aggregate.aggregate_datasets`` rewrites the dataset into a
   few large files (videos are remuxed, not re-encoded), published with the same atomic swap.

So at any instant ``root`` is a finalized dataset that ``LeRobotDataset(repo_id, root=root)``
opens, and no finished episode is lost (it is either in ``root`` or staged). Not covered: power
loss (only the staged files are fsynced, not every dataset file). Cost per commit: one metadata
load (~0.3-1 s) on top of encoding (~0.3-1 s per 50-frame 2x128x128 episode on a busy 2-core
machine), hence commits every ``commit_interval_s`` rather than per episode.

Other lerobot 0.6.1 pitfalls handled here:
* its streaming encoder *drops* frames when its 30-frame queue is full (it is meant for real-time
  capture); we make the queue unbounded and, before publishing, check that the new video files
  hold exactly as many frames as the committed episodes (:func:`_verify_new_videos`);
* ``aggregate_datasets`` writes wrong ``meta/episodes/file_index`` values when it merges
  episode-metadata files (:func:`fix_episode_meta_locations`);
* a process-wide torchcodec decoder cache is keyed by video path, so a reader that outlives a
  commit must reopen through :func:`open_dataset`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import json
import os
import shutil
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.spaces import ACTION_KEY, OBS_STATE_KEY

IMAGE_PREFIX = "observation.images."
LEDGER_FILE = "meta/vla_episodes.jsonl"
FINGERPRINT_FILE = "meta/vla_collect.json"
SUMMARY_JSON = "meta/vla_summary.json"
SUMMARY_MD = "meta/vla_summary.md"
SAMPLE_VIDEO_DIR = "meta/vla_videos"



EMBODIMENT_FILE = "meta/vla_embodiment.json"  # read by vla.training.data.dataset_embodiment


def default_repo_id(env_name: str) -> str:
    return f"local/vla_{env_name}"


def dataset_features(robot: Any) -> dict[str, dict]:
    """LeRobot feature spec of a robot (a ``policies.embodiment.Embodiment``): its cameras as video,
    its state and action (``Embodiment.dataset_features``)."""
    return robot.dataset_features()


def camera_names(features: Mapping[str, Any]) -> list[str]:
    """The cameras of a feature spec, in its order (``observation.images.<name>`` keys)."""
    return [k[len(IMAGE_PREFIX):] for k in features if k.startswith(IMAGE_PREFIX)]


def image_size_of(env_cfg: Mapping[str, Any], default: int = 128) -> tuple[int, int]:
    """The env config's ``image_size`` (int or [h, w]), the key every suite config uses."""
    value = env_cfg.get("image_size", default)
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)


# ── episodes in memory and in the staging area ─────────────────────────────────────────────


@dataclass
class Attempt:
    """One expert attempt on (task, episode_index): a ledger line."""

    task: str
    episode: int
    success: bool
    kept: bool
    seed: int
    length: int
    instruction: str
    dataset_episode: int | None = None  # index in the LeRobot dataset once committed and kept

    @property
    def key(self) -> tuple[str, int]:
        return self.task, self.episode


@dataclass
class Episode:
    """A recorded episode: per-step observations and the action taken at that step."""

    attempt: Attempt
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> uint8 [T, H, W, 3]
    state: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    action: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def check(self, features: Mapping[str, Any]) -> None:
        """Raise ValueError naming the first array that does not match the dataset ``features``."""
        t = len(self.action)
        expected = {k: (t, *map(int, ft["shape"])) for k, ft in features.items() if k in (OBS_STATE_KEY, ACTION_KEY)
                    or k.startswith(IMAGE_PREFIX)}
        cams = [k[len(IMAGE_PREFIX):] for k in expected if k.startswith(IMAGE_PREFIX)]
        actual = {OBS_STATE_KEY: self.state.shape, ACTION_KEY: self.action.shape}
        actual.update({IMAGE_PREFIX + c: self.images[c].shape if c in self.images else None for c in cams})
        for key, shape in expected.items():
            if tuple(actual[key] or ()) != shape:
                raise ValueError(
                    f"episode {self.attempt.task}#{self.attempt.episode}: '{key}' has shape {actual[key]}, "
                    f"dataset expects {shape} (check env.image_size)"
                )
        if t == 0:
            raise ValueError(f"episode {self.attempt.task}#{self.attempt.episode} has no frames")


def staged_name(task: str, episode: int) -> str:
    # Task names may hold any character (LIBERO's are long sentences); crc32 keeps slugs unique.
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in task)[:80]
    return f"{slug}-{zlib.crc32(task.encode()):08x}-ep{episode:06d}"


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def stage_episode(episode: Episode, staging_dir: Path) -> Path:
    """Write a finished attempt to the staging area atomically; frames only if it is kept."""
    name = staged_name(episode.attempt.task, episode.attempt.episode)
    meta = json.dumps(asdict(episode.attempt))
    if not episode.attempt.kept:
        path = staging_dir / f"{name}.json"
        _atomic_write(path, lambda f: f.write(meta.encode()))
        return path
    path = staging_dir / f"{name}.npz"
    arrays = {f"image_{c}": frames for c, frames in episode.images.items()}
    _atomic_write(
        path,
        lambda f: np.savez_compressed(f, meta=np.array(meta), state=episode.state, action=episode.action, **arrays),
    )
    return path


def load_staged(path: Path, frames: bool = True) -> Episode:
    """Read a staged attempt; ``frames=False`` reads only its metadata (cheap for .npz too)."""
    if path.suffix == ".json":
        return Episode(Attempt(**json.loads(path.read_text())))
    with np.load(path) as z:
        episode = Episode(Attempt(**json.loads(str(z["meta"]))))
        if frames:
            episode.images = {k[len("image_"):]: z[k] for k in z.files if k.startswith("image_")}
            episode.state, episode.action = z["state"], z["action"]
    return episode


# ── atomic directory publication ───────────────────────────────────────────────────────────

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux >= 3.15). False if the platform can't do it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE) failed: {os.strerror(err)}")


def exchange_dirs(new: Path, target: Path, prev: Path) -> None:
    """Publish ``new`` as ``target``; the old ``target`` ends up at ``new`` and is deleted.

    Atomic with renameat2. Fallback (non-Linux): target -> prev, new -> target; a crash between the
    two renames leaves target absent, and :meth:`DatasetStore.recover` renames prev back.
    """
    if not target.exists():
        os.rename(new, target)
        return
    if _renameat2_exchange(new, target):
        shutil.rmtree(new)
        return
    os.rename(target, prev)
    os.rename(new, target)
    shutil.rmtree(prev)


def link_tree(src: Path, dst: Path) -> None:
    """Recreate ``src`` at ``dst`` with hard links, copying the top-level ``meta/`` files.

    lerobot rewrites meta/info.json, stats.json and tasks.parquet in place on resume, which
    would change them in the published version too if they were links; every other file it
    only ever creates new (verified for lerobot 0.6.1 by tests/sim/test_dataset.py).
    """
    for dirpath, _, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            s, d = Path(dirpath) / name, dst / rel / name
            if rel == Path("meta"):
                shutil.copy2(s, d)
                continue
            try:
                os.link(s, d)
            except OSError:  # file systems without hard links: correct, just slower
                shutil.copy2(s, d)


# ── ledger and fingerprint ─────────────────────────────────────────────────────────────────


def read_ledger(root: str | Path) -> list[Attempt]:
    path = Path(root) / LEDGER_FILE
    if not path.exists():
        return []
    return [Attempt(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def read_fingerprint(root: str | Path) -> dict | None:
    path = Path(root) / FINGERPRINT_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two JSON-like values, one per differing leaf."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old:
                out.append(f"{key}: absent in the dataset, {new[k]!r} now")
            elif k not in new:
                out.append(f"{key}: {old[k]!r} in the dataset, absent now")
            else:
                out += _diff(old[k], new[k], key)
        return out
    return [] if old == new else [f"{prefix}: {old!r} in the dataset, {new!r} now"]


def check_fingerprint(root: Path, stored: dict | None, current: dict, what: str = "dataset") -> None:
    """Raise ValueError naming every difference between a dataset's recorded setup and this run."""
    if stored is None:
        lerobot = (root / "meta/info.json").exists()
        kind = "a LeRobot dataset not recorded by `vla collect`" if lerobot else "not a dataset"
        raise ValueError(f"{root} exists but is {kind} (no {FINGERPRINT_FILE}); choose another root=")
    diffs = _diff(json.loads(json.dumps(stored)), json.loads(json.dumps(current)))
    if diffs:
        raise ValueError(
            f"{what} at {root} was recorded with a different setup, so this run cannot append to it:\n  "
            + "\n  ".join(diffs)
            + f"\nUse another root= (or delete the {what}) to record with the new setup."
        )


# ── the store ──────────────────────────────────────────────────────────────────────────────


class DatasetStore:
    """A LeRobot dataset at ``root`` that only ever changes by atomic, finalized commits.

    ``fingerprint`` (repo_id, env, fps, features, seed, ...) is stored with the dataset; reopening
    with a different one is an error naming the differences. Use as a context manager: it holds
    an exclusive lock so two collectors cannot write one root.
    """

    def __init__(self, root: str | Path, repo_id: str, fps: int, features: dict, fingerprint: dict,
                 embodiment: dict | None = None):
        self.root = Path(root).absolute()
        self.repo_id, self.fps, self.features = repo_id, int(fps), features
        self.fingerprint = fingerprint
        # The robot as data (Embodiment.to_dict()), written beside info.json: training reads its
        # action kind and limits from it (vla.training.data.dataset_embodiment) instead of guessing.
        self.embodiment = embodiment
        self.work = self.root.parent / f".{self.root.name}.collect"
        self.staging = self.work / "staging"
        self._next, self._prev = self.work / "next", self.work / "prev"
        self._lock_fd: int | None = None
        self.commits = 0

    # lifecycle
    def __enter__(self) -> DatasetStore:
        self.staging.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.work / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise RuntimeError(f"another `vla collect` is writing {self.root} (lock {self.work / 'lock'})") from None
        self.recover()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def recover(self) -> None:
        """Undo what a killed run may have left: half-built versions, temp files, a moved root."""
        if not self.root.exists() and self._prev.exists():
            os.rename(self._prev, self.root)  # killed inside the non-atomic fallback swap
        for leftover in (self._next, self._prev):
            if leftover.exists():
                shutil.rmtree(leftover)
        for tmp in self.staging.glob(".*.tmp*"):
            tmp.unlink()
        if self.root.exists() and not any(self.root.iterdir()):
            self.root.rmdir()  # an empty dir (e.g. made by hand) is not a dataset; treat as absent
        if self.root.exists():
            check_fingerprint(self.root, read_fingerprint(self.root), self.fingerprint)
        stored = self.work / "fingerprint.json"
        if stored.exists() and list(self.staging.iterdir()):
            check_fingerprint(self.staging, json.loads(stored.read_text()), self.fingerprint, "staged episodes")
        _atomic_write(stored, lambda f: f.write(json.dumps(self.fingerprint, indent=1).encode()))
        # Staged files already in the ledger: a kill landed between publish and cleanup.
        done = {a.key for a in self.ledger()}
        for path in self.staged():
            if load_staged(path, frames=False).attempt.key in done:
                path.unlink()

    # reading
    def ledger(self) -> list[Attempt]:
        return read_ledger(self.root)

    def staged(self) -> list[Path]:
        return sorted(p for p in self.staging.iterdir() if p.suffix in (".npz", ".json") and not p.name.startswith("."))

    def exists(self) -> bool:
        return (self.root / "meta/info.json").exists()

    # writing
    def commit(self, paths: list[Path]) -> list[Attempt]:
        """Append staged attempts to the dataset in one atomic step; returns the committed ones.

        Failed-and-dropped attempts need no dataset write, but they can only be recorded once a
        dataset exists: until then they stay staged (still durable, still counted as done).
        """
        paths = sorted(paths)
        with_frames = [p for p in paths if p.suffix == ".npz"]
        if not paths or (not self.exists() and not with_frames):
            return []
        from lerobot.datasets import LeRobotDataset

        if self._next.exists():
            shutil.rmtree(self._next)
        # Streaming encoding (frames go straight to PyAV encoder threads, no PNG round trip) is
        # ~2x faster here; lerobot *drops* frames when its queue is full (made for real-time
        # capture), so the queue is made unbounded: we feed from memory and can wait.
        writer_kwargs = {"streaming_encoding": True, "encoder_queue_maxsize": 0}
        if self.exists():
            link_tree(self.root, self._next)
            ds = LeRobotDataset.resume(self.repo_id, root=self._next, **writer_kwargs) if with_frames else None
        else:
            ds = LeRobotDataset.create(
                self.repo_id, fps=self.fps, features=self.features, root=self._next,
                robot_type=self.fingerprint.get("robot_type"), use_videos=True, **writer_kwargs,
            )
            (self._next / FINGERPRINT_FILE).write_text(json.dumps(self.fingerprint, indent=1))
            if self.embodiment is not None:
                (self._next / EMBODIMENT_FILE).write_text(json.dumps(self.embodiment, indent=1))
        _quiet_encoders()  # after resume: lerobot's metadata loading re-enables datasets' bars
        ledger = read_ledger(self._next)
        committed: list[Attempt] = []
        try:
            for path in paths:
                episode = load_staged(path, frames=path.suffix == ".npz")
                if path.suffix == ".npz":
                    episode.attempt.dataset_episode = ds.meta.total_episodes
                    self._write_episode(ds, episode)
                committed.append(episode.attempt)
        finally:
            if ds is not None:
                ds.finalize()
        _verify_new_videos(self.root, self._next, sum(a.length for a in committed if a.kept), camera_names(self.features))
        _write_ledger(self._next, ledger + committed)
        exchange_dirs(self._next, self.root, self._prev)
        for path in paths:
            path.unlink(missing_ok=True)
        self.commits += 1
        return committed

    def _write_episode(self, ds: Any, episode: Episode) -> None:
        cams = camera_names(self.features)
        episode.check(self.features)
        instruction = episode.attempt.instruction
        for t in range(len(episode.action)):
            frame = {IMAGE_PREFIX + c: episode.images[c][t] for c in cams}
            frame[OBS_STATE_KEY] = episode.state[t]
            frame[ACTION_KEY] = episode.action[t]
            frame["task"] = instruction
            ds.add_frame(frame)
        ds.save_episode()

    def compact(self) -> bool:
        """Rewrite the dataset into few large files (atomic swap). False if already compact."""
        if not self.exists() or len(list((self.root / "data").rglob("*.parquet"))) <= 1:
            return False
        from lerobot.datasets.aggregate import aggregate_datasets

        _quiet_encoders()
        if self._next.exists():
            shutil.rmtree(self._next)
        # Its tqdm bars ("Copy data and videos" ...) are noise here; failures still raise.
        with contextlib.redirect_stderr(io.StringIO()):
            aggregate_datasets([self.repo_id], self.repo_id, roots=[self.root], aggr_root=self._next)
        fix_episode_meta_locations(self._next)
        # aggregate_datasets knows only lerobot's files: carry our sidecars over.
        for path in (self.root / "meta").glob("vla_*"):
            if path.is_dir():
                shutil.copytree(path, self._next / "meta" / path.name, copy_function=os.link)
            else:
                shutil.copy2(path, self._next / "meta" / path.name)
        before, after = json.loads((self.root / "meta/info.json").read_text()), json.loads(
            (self._next / "meta/info.json").read_text()
        )
        for key in ("total_episodes", "total_frames"):
            if before[key] != after[key]:
                raise RuntimeError(f"compaction changed {key}: {before[key]} -> {after[key]}; dataset left as is")
        exchange_dirs(self._next, self.root, self._prev)
        return True

    def write_sidecar(self, relpath: str, data: bytes) -> Path:
        """Atomically write a file that is not part of the LeRobot format (summary, videos)."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda f: f.write(data))
        return path


def _verify_new_videos(old: Path, new: Path, expected_frames: int, cameras: list[str]) -> None:
    """Refuse to publish a version whose new video files do not hold exactly the new frames.

    A resumed writer puts a commit's episodes only into new video files, so their frame counts
    must add up to the committed episodes' lengths (a dropped frame would desynchronise every
    later timestamp of the file).
    """
    import av

    for cam in cameras:
        sub = Path("videos") / (IMAGE_PREFIX + cam)
        added = sorted(set((new / sub).rglob("*.mp4")) - {new / p.relative_to(old) for p in (old / sub).rglob("*.mp4")})
        frames = 0
        for path in added:
            with av.open(str(path)) as container:
                frames += container.streams.video[0].frames
        if frames != expected_frames:
            raise RuntimeError(
                f"{sub}: the new video files hold {frames} frames, the committed episodes {expected_frames}; "
                "not publishing this commit (the staged episodes are kept for the next try)"
            )


def fix_episode_meta_locations(root: Path) -> None:
    """Make ``meta/episodes/{chunk,file}_index`` name the file each episode row really lives in.

    lerobot 0.6.1's aggregate_datasets keeps the *source* file index when it merges several
    episode-metadata files into one, so the compacted dataset reads fine but the next resume
    starts at a wrong file number and the next aggregation looks for files that do not exist.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in sorted((root / "meta/episodes").glob("chunk-*/file-*.parquet")):
        chunk, file = int(path.parent.name.split("-")[1]), int(path.stem.split("-")[1])
        table = pq.read_table(path)
        for col, value in (("meta/episodes/chunk_index", chunk), ("meta/episodes/file_index", file)):
            i = table.schema.get_field_index(col)
            table = table.set_column(i, col, pa.array([value] * table.num_rows, type=table.schema.field(i).type))
        pq.write_table(table, path, compression="snappy")


def _write_ledger(root: Path, attempts: list[Attempt]) -> None:
    path = root / LEDGER_FILE
    path.write_text("".join(json.dumps(asdict(a)) + "\n" for a in attempts))


def _quiet_encoders() -> None:
    """Silence per-episode encoder chatter (SVT-AV1 banner, libav moov notices, datasets bars)."""
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 reads it when an encoder starts: errors only
    with contextlib.suppress(Exception):
        import av.logging

        # lerobot re-installs FFmpeg's default (printing) log callback after each episode, so
        # lower FFmpeg's own threshold: hides the per-file "moving the moov atom" INFO lines.
        av.logging.set_libav_level(av.logging.ERROR)
    import datasets

    datasets.disable_progress_bars()


# ── reading ────────────────────────────────────────────────────────────────────────────────


def open_dataset(root: str | Path, repo_id: str | None = None, **kwargs: Any):
    """Open a collected dataset for reading (repo_id defaults to the one it was recorded with).

    lerobot keeps a process-wide torchcodec decoder cache keyed by video *path*; after a commit or
    compaction the same path can hold a longer (or different) file, so a process that read this
    dataset before would decode from a stale decoder. Opening through here drops that cache.
    """
    from lerobot.datasets import LeRobotDataset
    from lerobot.datasets import video_utils

    with contextlib.suppress(AttributeError):
        video_utils._default_decoder_cache.clear()
    if repo_id is None:
        fp = read_fingerprint(root)
        repo_id = fp["repo_id"] if fp else "local/dataset"
    return LeRobotDataset(repo_id, root=root, **kwargs)


def episode_frames(root: str | Path, episode_index: int, meta: Any = None) -> dict[str, np.ndarray]:
    """Decode every camera frame of one episode: camera -> uint8 [T, H, W, 3].

    One seek + sequential decode per camera (PyAV), 20-40x faster than lerobot's per-timestamp
    decoding for whole episodes. Pass ``meta`` (a LeRobotDatasetMetadata) when decoding several
    episodes, to load the metadata once.
    """
    import av
    from lerobot.datasets import LeRobotDatasetMetadata

    if meta is None:
        fp = read_fingerprint(root)
        meta = LeRobotDatasetMetadata(fp["repo_id"] if fp else "local/dataset", root=root)
    ep = meta.episodes[episode_index]
    length = int(ep["length"])
    frames = {}
    for key in meta.video_keys:
        cam = key[len(IMAGE_PREFIX):]
        start = float(ep[f"videos/{key}/from_timestamp"])
        out: list[np.ndarray] = []
        with av.open(str(Path(root) / meta.get_video_file_path(episode_index, key))) as container:
            stream = container.streams.video[0]
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts * stream.time_base < start - 0.5 / meta.fps:
                    continue  # before the episode (decoding resumes at the previous keyframe)
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) == length:
                    break
        if len(out) != length:
            raise RuntimeError(f"episode {episode_index}: decoded {len(out)} of {length} frames of {key}")
        frames[cam] = np.stack(out)
    return frames
