"""Training data: find a LeRobot dataset, check its features, serve batches in a deterministic order.

    source = resolve_dataset("outputs/demo/dataset")      # a local root, or a repo_id in the cache
    meta = load_metadata(source)                           # clear error if it is not LeRobot v3.0
    check_features(meta, camera_keys, state_dim, action_dim)
    dataset = make_dataset(source, meta, chunk_size=H, cache="auto")
    loader = make_loader(dataset, StepBatchSampler(len(dataset), batch, seed, start_step, steps))

Why a frame cache: lerobot decodes video per sample (seek + decode of one frame per camera,
~20 ms/sample here), which on 2 CPU cores costs more than a ``tiny`` policy step. Decoding each
episode once, in order, runs at ~600 frames/s; the decoded uint8 frames of a small dataset fit in
memory (128x128x3 = 48 KiB per camera-frame), so ``cache=auto`` keeps them there when they fit in
``cache_max_gb``. Items are the same as ``LeRobotDataset`` with ``delta_timestamps`` for the action
chunk and ``return_uint8=True`` (``tests/vla/test_train_data.py`` checks it).

Why a step-indexed sampler: batch ``s`` is a pure function of (seed, s, rank), so a run resumed at
step ``k`` sees exactly the batches an uninterrupted run sees from step ``k`` on, on any number of
processes, without saving sampler or DataLoader state.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lerobot.utils.constants import ACTION, OBS_STATE
from policies.modeling_vla import KEYPOSE  # the keypose auxiliary loss's target (keypose_targets)
from vla.training.dataset_files import EXPECTED, DatasetError, DatasetSource, read_info, resolve_dataset  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

ACTION_IS_PAD = f"{ACTION}_is_pad"


# --------------------------------------------------------------------------------------------------
# Finding and checking the dataset
# --------------------------------------------------------------------------------------------------
def load_metadata(source: DatasetSource):
    """``LeRobotDatasetMetadata`` of a local dataset; ``DatasetError`` naming the path if it is not one."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    read_info(source)
    try:
        return LeRobotDatasetMetadata(source.repo_id, root=source.root)
    except Exception as e:  # lerobot raises assorted errors for half-written metadata
        raise DatasetError(f"cannot read the metadata of dataset '{source.root}': {type(e).__name__}: {e}") from e


def policy_features(meta) -> tuple[dict, dict]:
    """(input_features, output_features) as lerobot's ``make_policy`` derives them from a dataset."""
    from lerobot.configs import FeatureType
    from lerobot.utils.feature_utils import dataset_to_policy_features

    features = dataset_to_policy_features(meta.features)
    outputs = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
    inputs = {k: f for k, f in features.items() if k not in outputs}
    return inputs, outputs


EMBODIMENT_FILE = "meta/vla_embodiment.json"  # written beside info.json by vla's dataset writer


def dataset_embodiment(meta):
    """The robot a dataset was recorded with (``policies.embodiment.Embodiment``).

    In order: ``meta/vla_embodiment.json`` (what `vla collect` records: the env's own embodiment,
    limits included); a dataset whose state/action names are the tabletop/LIBERO arm's (datasets
    `vla collect` wrote before that file existed); else derived from ``meta.features`` and
    ``meta.stats`` (any LeRobot dataset, e.g. an SO-100 recording: limits = the recorded action
    range with a margin).
    """
    import json

    from policies.embodiment import Embodiment, EmbodimentError
    from sim import spaces

    file = Path(meta.root) / EMBODIMENT_FILE
    if file.is_file():
        try:
            return Embodiment.from_dict(json.loads(file.read_text()))
        except (json.JSONDecodeError, EmbodimentError) as e:
            raise DatasetError(f"'{file}' is not a valid embodiment: {e}") from e
    guess = Embodiment.from_features(meta.features, meta.stats, fps=meta.fps)
    if guess.action_names == spaces.ACTION_NAMES and guess.state_names == spaces.STATE_NAMES:
        cam = guess.cameras[0]
        arm = spaces.embodiment((cam.height, cam.width), fps=meta.fps)
        if guess.camera_names == arm.camera_names:
            return arm
    return guess


def check_features(meta, camera_keys: list[str], state_dim: int | None = None, action_dim: int | None = None,
                   where: str = "the model config") -> None:
    """Raise ``DatasetError`` naming every feature the policy needs that the dataset lacks or shapes differently."""
    inputs, outputs = policy_features(meta)
    have = {k: tuple(v.shape) for k, v in {**inputs, **outputs}.items()}
    problems = []
    for key in camera_keys:
        if key not in inputs:
            problems.append(f"camera '{key}' (required by {where}) is missing")
        elif len(inputs[key].shape) != 3 or inputs[key].shape[0] != 3:
            problems.append(f"camera '{key}' has shape {tuple(inputs[key].shape)}, expected (3, H, W)")
    for key, dim, feats in ((OBS_STATE, state_dim, inputs), (ACTION, action_dim, outputs)):
        if key not in feats:
            problems.append(f"'{key}' is missing")
        elif len(feats[key].shape) != 1:
            problems.append(f"'{key}' has shape {tuple(feats[key].shape)}, expected 1-D")
        elif dim is not None and feats[key].shape[0] != dim:
            problems.append(f"'{key}' has dimension {feats[key].shape[0]} but {where} expects {dim}")
    if problems:
        raise DatasetError(
            f"dataset '{meta.root}' does not fit the policy: " + "; ".join(problems) + f". Dataset features: {have}"
        )


def sample_frames(root: str | Path, camera_keys: list[str], num_batches: int = 8, batch_size: int = 8,
                  seed: int = 0, frame_index: int | None = None) -> list[dict[str, Any]]:
    """Collated batches of single frames (cameras float in [0, 1], state, ``task``), not yet preprocessed.

    A seeded sample without replacement, for calibration (``vla prune``) and probing (``vla probe``);
    ``frame_index``: only frames that many steps into their episode (0 = first frames).
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from torch.utils.data import default_collate

    if num_batches < 1 or batch_size < 1:
        raise ValueError(f"the number of batches and the batch size must be >= 1, got {num_batches} and {batch_size}")
    source = resolve_dataset(root)
    meta = load_metadata(source)
    check_features(meta, list(camera_keys), where="the checkpoint")
    dataset = LeRobotDataset(source.repo_id, root=source.root, return_uint8=True)
    rows = torch.arange(len(dataset))
    if frame_index is not None:
        rows = rows[read_columns(dataset, ["frame_index"])["frame_index"] == frame_index]
        if not len(rows):
            raise ValueError(f"no episode of '{source.root}' has a frame {frame_index} steps in")
    total = min(len(rows), num_batches * batch_size)
    order = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:total]].tolist()
    batches = []
    for start in range(0, total, batch_size):
        batch = default_collate([dataset[i] for i in order[start : start + batch_size]])
        to_float_images(batch, list(camera_keys))
        batches.append(batch)
    return batches


def split_episodes(num_episodes: int, val_episodes: int) -> tuple[list[int], list[int]]:
    """Train on the first episodes, hold out the last ``val_episodes`` for the validation loss."""
    if not 0 <= val_episodes < num_episodes:
        raise ValueError(f"val_episodes={val_episodes} must be in [0, {num_episodes}) (the dataset's episodes)")
    cut = num_episodes - val_episodes
    return list(range(cut)), list(range(cut, num_episodes))


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------
def make_dataset(source: DatasetSource, meta, chunk_size: int, episodes: list[int] | None = None,
                 cache: str | bool = "auto", cache_max_gb: float = 4.0, keypose: KeyposeChannels | None = None,
                 cache_image_size: int | None = None, cache_resize: str = "pad") -> Dataset:
    """The in-memory ``FrameCache`` when asked (or ``auto`` and it fits), else a ``LeRobotDataset``;
    ``keypose``: items also carry the ``KEYPOSE`` target read from these channels (:func:`keypose_targets`);
    ``cache_image_size``: the cache holds frames resized to this square size (None = as recorded),
    fitted as the policy's ``image_resize`` (``cache_resize``) says."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    delta = {ACTION: [i / meta.fps for i in range(chunk_size)]}
    ds = LeRobotDataset(source.repo_id, root=source.root, episodes=episodes, delta_timestamps=delta, return_uint8=True)
    gib = FrameCache.estimate_bytes(ds, cache_image_size) / 2**30
    use_cache = cache is True or str(cache).lower() == "true" or (str(cache).lower() == "auto" and gib <= cache_max_gb)
    if use_cache:
        out: Dataset = FrameCache(ds, chunk_size, cache_image_size, cache_resize)
    else:
        if str(cache).lower() == "auto":
            logger.info("frame cache off: decoded frames need %.1f GiB > cache_max_gb=%s", gib, cache_max_gb)
        out = ds
    return WithKeypose(out, ds, keypose) if keypose else out


def read_columns(ds, names: list[str]) -> dict[str, torch.Tensor]:
    """Whole columns of a ``LeRobotDataset``'s rows (its episode selection, in row order) as tensors:
    ``observation.state`` / ``action`` float32 [N, D], the scalar columns [N] (int64 if integer, else float32)."""
    cols = ds.hf_dataset.with_format("numpy", columns=names)[:]
    out = {}
    for name in names:
        values = np.asarray(cols[name])
        values = values.astype(np.int64 if np.issubdtype(values.dtype, np.integer) else np.float32)
        out[name] = torch.from_numpy(values if name in (OBS_STATE, ACTION) else values.reshape(-1))
    return out


# (state channels of the end-effector position in m, action dim of the gripper command): where the
# keypose target is read from, taken from the embodiment (vla.training.build.keypose_channels).
KeyposeChannels = tuple[tuple[int, int, int], int]
EEF_ARM_KEYPOSE: KeyposeChannels = ((0, 1, 2), -1)  # the tabletop/LIBERO arm (sim/spaces.py)


def keypose_targets(state: torch.Tensor, action: torch.Tensor, episode: torch.Tensor,
                    channels: KeyposeChannels = EEF_ARM_KEYPOSE) -> torch.Tensor:
    """[N, 3] for N rows (episodes contiguous): the end-effector position (``state[:, pos_dims]``) at
    the episode's next gripper event (a row whose gripper command, ``action[:, gripper_dim]``, changes
    sign), or at its last row when none is left, minus the row's own position.

    Why: in the tabletop and LIBERO tasks the first gripper event is the grasp of the object the
    instruction names and the next one the release at the named target, so this target says which
    object and where, densely, for every frame. The action chunk says it only weakly (a saturated
    move towards it) and only a few steps ahead. Used as an auxiliary regression target, it asks
    the policy to locate what the instruction names (keyframe prediction, as in C2F-ARM/PerAct).
    """
    pos_dims, gripper_dim = channels
    pos = state[:, list(pos_dims)]
    closed = action[:, gripper_dim] > 0
    out = torch.empty_like(pos)
    for ep in torch.unique(episode).tolist():
        rows = torch.nonzero(episode == ep).flatten()
        first, last = int(rows[0]), int(rows[-1])
        change = torch.nonzero(closed[first + 1 : last + 1] != closed[first:last]).flatten() + first + 1
        # For row t, the first event strictly after t; rows after the last event aim at the last row.
        events = torch.cat([change, torch.tensor([last])])
        nxt = events[torch.searchsorted(events, rows, right=True).clamp(max=len(events) - 1)]
        out[rows] = pos[nxt] - pos[rows]
    return out


def keypose_table(ds, channels: KeyposeChannels = EEF_ARM_KEYPOSE) -> torch.Tensor:
    """[max index + 1, 3]: :func:`keypose_targets` of a ``LeRobotDataset``'s rows, by absolute ``index``
    (NaN for rows it does not hold)."""
    cols = read_columns(ds, [OBS_STATE, ACTION, "episode_index", "index"])
    targets = keypose_targets(cols[OBS_STATE], cols[ACTION], cols["episode_index"], channels)
    index = cols["index"]
    table = torch.full((int(index.max()) + 1, 3), float("nan"))
    table[index] = targets
    return table


class WithKeypose(Dataset):
    """Items of ``inner`` plus ``KEYPOSE``, looked up by each item's absolute ``index``."""

    def __init__(self, inner: Dataset, ds, channels: KeyposeChannels = EEF_ARM_KEYPOSE) -> None:
        self.targets = keypose_table(ds, channels)
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.inner[idx]
        item[KEYPOSE] = self.targets[int(item["index"])]
        return item


class FrameCache(Dataset):
    """A ``LeRobotDataset`` (action chunk of ``chunk_size``) with every frame decoded once into memory.

    ``image_size``: keep frames resized to image_size x image_size (the policy's own input resize),
    e.g. 64 px for the ``tiny`` model on 128 px recordings: 4x less memory, the same model input up
    to uint8 rounding. Image augmentation then works in pixels of the resized frames.
    """

    def __init__(self, ds, chunk_size: int, image_size: int | None = None, resize: str = "pad"):
        meta = ds.meta
        cols = read_columns(ds, [OBS_STATE, ACTION, "episode_index", "frame_index", "timestamp", "index", "task_index"])
        self.state, self.action = cols[OBS_STATE], cols[ACTION]
        self.episode, self.frame_index = cols["episode_index"], cols["frame_index"]
        self.timestamp, self.abs_index, self.task_index = cols["timestamp"], cols["index"], cols["task_index"]
        self.tasks = list(meta.tasks.index)
        self.chunk = chunk_size
        self.camera_keys = list(meta.camera_keys)
        self.meta = meta
        self.image_size = image_size
        self.resize = resize
        # Episode bounds in *this* (possibly episode-filtered) row space: rows of an episode are contiguous.
        self.ep_start = torch.zeros_like(self.episode)
        self.ep_end = torch.zeros_like(self.episode)
        for ep in torch.unique(self.episode).tolist():
            rows = torch.nonzero(self.episode == ep).flatten()
            self.ep_start[rows], self.ep_end[rows] = int(rows[0]), int(rows[-1]) + 1
        self.frames = {key: self._decode(ds, key) for key in self.camera_keys}

    @staticmethod
    def estimate_bytes(ds, image_size: int | None = None) -> int:
        per_frame = [3 * image_size**2 if image_size else math.prod(ds.meta.features[k]["shape"])
                     for k in ds.meta.camera_keys]
        return len(ds) * sum(per_frame)

    def _decode(self, ds, key: str) -> torch.Tensor:
        """All frames of one camera, uint8 [N, 3, H, W], in row order (one decode pass per episode)."""
        meta = ds.meta
        if key not in meta.video_keys:  # image feature stored in the parquet files
            col = ds.hf_dataset.with_format("torch", columns=[key])
            out = [self._fit(col[i : i + 256][key]) for i in range(0, len(col), 256)]
            return torch.cat(out)
        from lerobot.datasets.video_utils import decode_video_frames

        c, h, w = self._chw(meta, key)
        size = (self.image_size, self.image_size) if self.image_size else (h, w)
        out = torch.empty((len(self.episode), c, *size), dtype=torch.uint8)
        for ep in torch.unique(self.episode).tolist():
            rows = torch.nonzero(self.episode == ep).flatten()
            info = meta.episodes[ep]
            ts = (self.timestamp[rows].double() + info[f"videos/{key}/from_timestamp"]).tolist()
            path = ds.root / meta.get_video_file_path(ep, key)
            backend = getattr(ds, "_video_backend", None)  # lerobot's choice (torchcodec, else pyav)
            frames = decode_video_frames(path, ts, ds.tolerance_s, backend, return_uint8=True)
            out[rows] = frames if not self.image_size else self._fit(frames.float() / 255)
        return out

    def _fit(self, images: torch.Tensor) -> torch.Tensor:
        """float [N, 3, H, W] in [0, 1] -> uint8, resized to ``image_size`` when set."""
        from policies.processor_vla import resize_images

        if self.image_size and images.shape[-2:] != (self.image_size, self.image_size):
            images = resize_images(images, self.image_size, self.resize)
        return (images * 255).round().to(torch.uint8)

    @staticmethod
    def _chw(meta, key: str) -> tuple[int, int, int]:
        h, w, c = meta.features[key]["shape"]
        return c, h, w

    def __len__(self) -> int:
        return len(self.episode)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        q = idx + torch.arange(self.chunk)
        end = int(self.ep_end[idx])
        item = {key: self.frames[key][idx] for key in self.camera_keys}
        item.update({
            OBS_STATE: self.state[idx],
            ACTION: self.action[q.clamp(max=end - 1)],
            ACTION_IS_PAD: q >= end,
            "episode_index": self.episode[idx],
            "frame_index": self.frame_index[idx],
            "timestamp": self.timestamp[idx],
            "index": self.abs_index[idx],
            "task_index": self.task_index[idx],
            "task": self.tasks[int(self.task_index[idx])],
        })
        return item


# --------------------------------------------------------------------------------------------------
# Order and loading
# --------------------------------------------------------------------------------------------------
def _permutation(seed: int, epoch: int, n: int, stream: int = 0) -> torch.Tensor:
    entropy = [seed, epoch] if stream == 0 else [seed, epoch, stream]  # stream 0: as before streams existed
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
    return torch.randperm(n, generator=gen)


def start_rows(dataset: Dataset, frames: int) -> list[int]:
    """Rows of ``dataset`` (a ``FrameCache``, a ``LeRobotDataset`` or either wrapped in ``WithKeypose``)
    whose ``frame_index`` is below ``frames``: the first ``frames`` frames of every episode."""
    inner = dataset.inner if isinstance(dataset, WithKeypose) else dataset
    index = inner.frame_index if isinstance(inner, FrameCache) else read_columns(inner, ["frame_index"])["frame_index"]
    return torch.nonzero(index < frames).flatten().tolist()


class StepBatchSampler(Sampler[list[int]]):
    """Batches for steps ``start_step .. steps-1``; batch ``s`` depends only on (seed, s, rank).

    The samples form one endless stream: epoch ``e`` is a permutation seeded by (seed, e), and step
    ``s`` of process ``rank`` (of ``world``) takes stream positions ``(s*world + rank)*batch + j``.

    ``focus`` (row indices) with ``focus_per_batch`` > 0: that many of every batch's rows come from a
    second endless stream over ``focus`` alone (epochs seeded by (seed, e, 1)), the rest from the main
    stream. Why: ``data.oversample_start`` draws the first frames of episodes, the only frames where
    the instruction alone says where to go, far more often than their share of the data.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, start_step: int, steps: int,
                 rank: int = 0, world: int = 1, focus: list[int] | None = None, focus_per_batch: int = 0):
        if num_samples < 1:
            raise ValueError("the training set is empty")
        if focus_per_batch and not focus:
            raise ValueError("focus_per_batch > 0 but the focus set is empty")
        if not 0 <= focus_per_batch <= batch_size:
            raise ValueError(f"focus_per_batch={focus_per_batch} must be in [0, batch_size={batch_size}]")
        self.n, self.batch, self.seed = num_samples, batch_size, seed
        self.start, self.steps, self.rank, self.world = start_step, steps, rank, world
        self.focus, self.k = list(focus or []), focus_per_batch
        self._perms: dict[int, tuple[int, torch.Tensor]] = {}

    def _take(self, stream: int, n: int, per_step: int, step: int) -> list[int]:
        """``per_step`` positions of step ``step`` in the endless permuted stream over ``range(n)``."""
        first = (step * self.world + self.rank) * per_step
        out = []
        for pos in range(first, first + per_step):
            epoch, offset = divmod(pos, n)
            cached = self._perms.get(stream)
            if cached is None or cached[0] != epoch:
                cached = self._perms[stream] = (epoch, _permutation(self.seed, epoch, n, stream))
            out.append(int(cached[1][offset]))
        return out

    def indices(self, step: int) -> list[int]:
        out = self._take(0, self.n, self.batch - self.k, step)
        if self.k:
            out += [self.focus[i] for i in self._take(1, len(self.focus), self.k, step)]
        return out

    def __iter__(self):
        for step in range(self.start, self.steps):
            yield self.indices(step)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def make_loader(dataset: Dataset, sampler: Sampler, num_workers: int = 0, mp_context: str = "spawn",
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``sampler``'s batches. Workers start with ``spawn`` by default: torchcodec in
    forked workers fails when the parent process has used it (seen with torchcodec 0.11)."""
    workers = num_workers > 0
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        multiprocessing_context=mp_context if workers else None,
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
    )


# --------------------------------------------------------------------------------------------------
# Augmentation (on the batch, in the main process, from a per-step generator: reproducible)
# --------------------------------------------------------------------------------------------------
def to_float_images(batch: dict[str, Any], camera_keys: list[str]) -> None:
    """uint8 [B, 3, H, W] -> float [0, 1] in place (what the VLA processor expects)."""
    for key in camera_keys:
        if key in batch and batch[key].dtype == torch.uint8:
            batch[key] = batch[key].float().div_(255.0)


def augment_images(batch: dict[str, Any], camera_keys: list[str], gen: torch.Generator,
                   shift: int = 0, brightness: float = 0.0, contrast: float = 0.0) -> None:
    """Random shift (replicate-pad by ``shift`` px + random crop, as in DrQ) and brightness/contrast
    jitter, per sample, in place on float images in [0, 1]."""
    for key in camera_keys:
        img = batch[key]
        b, _, h, w = img.shape
        if shift > 0:
            padded = torch.nn.functional.pad(img, (shift, shift, shift, shift), mode="replicate")
            dx = torch.randint(0, 2 * shift + 1, (b,), generator=gen).tolist()
            dy = torch.randint(0, 2 * shift + 1, (b,), generator=gen).tolist()
            img = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
        if brightness > 0 or contrast > 0:
            gain = 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * contrast
            bias = (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * brightness
            mean = img.mean(dim=(1, 2, 3), keepdim=True)
            img = ((img - mean) * gain + mean + bias).clamp_(0, 1)
        batch[key] = img


# --------------------------------------------------------------------------------------------------
# Instruction augmentation (the task strings of the batch; configs/instructions/, vla/instructions.py)
# --------------------------------------------------------------------------------------------------
_PARAPHRASERS: dict[tuple[str, float], Any] = {}


def paraphraser(augment: str | None, p: float):
    """The ``Paraphraser`` of ``data.instructions`` (file + probability), loaded once; None when off."""
    if not augment or p <= 0:
        return None
    from vla.instructions import InstructionSet, Paraphraser

    key = (str(augment), float(p))
    if key not in _PARAPHRASERS:
        _PARAPHRASERS[key] = Paraphraser(InstructionSet.load(augment), p)
    return _PARAPHRASERS[key]


def augment_instructions(batch: dict[str, Any], augment: str | None, p: float, gen: torch.Generator) -> None:
    """Replace each sample's ``task`` string, with probability ``p``, by a wording of its task family
    drawn from the ``augment`` file (synonyms, word order, politeness, articles), in place.
    Strings of no family in the file stay as they are."""
    para = paraphraser(augment, p)
    if para is not None and "task" in batch:
        batch["task"] = para(list(batch["task"]), gen)
