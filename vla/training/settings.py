"""The `vla train` config (configs/train.yaml + configs/train/<preset>.yaml), checked once up front.

Hydra already rejects unknown keys; this module rejects bad *values* with a message naming the key,
the value and what is allowed (with a "did you mean" hint), before anything heavy is loaded.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

FREEZE = {
    "none": (),
    "vision": ("model.vision.",),  # the SigLIP tower
    # tower + language backbone (incl. its token embeddings): only the compressor, the action head
    # and the small glue layers between them (projector, state/instruction projections, camera
    # embeddings, action queries) train.
    "vision_backbone": ("model.vision.", "model.backbone."),
}
RESUME = ("auto", "true", "false")
DEVICES = ("cpu", "cuda")
STATS = ("dataset", "checkpoint")


class TrainConfigError(ValueError):
    """A `vla train` config value that cannot work; the message names the key."""


@dataclass
class Augment:
    shift: int = 0  # random shift in pixels (replicate pad + crop); 0 = off
    brightness: float = 0.0  # +- brightness jitter in [0, 1] image units
    contrast: float = 0.0  # +- relative contrast jitter

    @property
    def enabled(self) -> bool:
        return self.shift > 0 or self.brightness > 0 or self.contrast > 0


@dataclass
class OversampleStart:
    frames: int = 0  # the first N frames of every episode; 0 = off (uniform sampling)
    fraction: float = 0.25  # share of every batch drawn from them


@dataclass
class Instructions:
    augment: str | None = None  # paraphrase templates (configs/instructions/*_augment.yaml); None = off
    p: float = 0.5  # probability that a sample's instruction is replaced by a drawn wording


@dataclass
class TrainSettings:
    dataset: str
    output_dir: str | None
    resume: str
    init_from: str | None
    freeze: str
    finetune_stats: str
    seed: int
    device: str
    batch_size: int
    lr: float
    steps: int
    warmup_steps: int
    min_lr: float
    weight_decay: float
    betas: tuple[float, float]
    grad_clip: float
    save_every: int
    keep_last: int
    log_every: int
    eval_every: int
    eval_batches: int
    val_episodes: int
    cache: str
    cache_max_gb: float
    cache_resize: bool
    num_workers: int
    threads: int  # torch intra-op threads; 0 = torch's default (one per core)
    augment: Augment = field(default_factory=Augment)
    oversample_start: OversampleStart = field(default_factory=OversampleStart)
    instructions: Instructions = field(default_factory=Instructions)
    model: dict[str, Any] = field(default_factory=dict)
    compressor: dict[str, Any] = field(default_factory=dict)
    check_init_arch: bool = False  # model/compressor given explicitly with init_from: must match the checkpoint


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if text not in allowed:
        close = difflib.get_close_matches(text, allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise TrainConfigError(f"{key}={value!r} is not valid; choose one of {', '.join(allowed)}.{hint}")
    return text


def number(key: str, value: Any, kind: type, low: float | None = None, high: float | None = None) -> Any:
    """``value`` as ``kind`` (int or float) within [low, high]; else an error naming ``key`` and the value
    (also used by `vla eval` / `vla collect`: `episodes=abc` says which key)."""
    try:
        if isinstance(value, bool) or value is None:
            raise ValueError
        out = kind(value)
        if kind is int and out != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise TrainConfigError(f"{key}={value!r} must be a{'n integer' if kind is int else ' number'}") from None
    if (low is not None and out < low) or (high is not None and out > high):
        rng = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise TrainConfigError(f"{key}={value!r} is out of range {rng}")
    return out


def _get(cfg: DictConfig, dotted: str, default: Any = None) -> Any:
    value = OmegaConf.select(cfg, dotted, default=default, throw_on_missing=False)
    return value


def settings_from(cfg: DictConfig, check_init_arch: bool = False) -> TrainSettings:
    """Validate the composed config and flatten it into ``TrainSettings``."""
    for group in ("model", "compressor", "train"):
        if not isinstance(_get(cfg, group), DictConfig):
            raise TrainConfigError(f"config group '{group}' is missing or not a mapping (check configs/{group}/)")
    if OmegaConf.is_missing(cfg, "dataset"):
        raise TrainConfigError("dataset= is required: a LeRobot dataset root folder, or a repo_id in the local cache")
    if OmegaConf.is_missing(cfg, "init_from"):
        raise TrainConfigError("init_from= is required by this preset: the checkpoint folder to fine-tune")
    for key in ("output_dir", "resume", "freeze", "seed", "device", "batch_size", "lr", "data"):
        if key not in cfg:
            raise TrainConfigError(f"config key '{key}' is missing (configs/train.yaml defines it)")
    t = cfg.train
    aug = _get(cfg, "data.augment", {}) or {}
    start = _get(cfg, "data.oversample_start", {}) or {}
    words = _get(cfg, "data.instructions", {}) or {}
    steps = number("train.steps", t.steps, int, 1)
    s = TrainSettings(
        dataset=str(cfg.dataset),
        output_dir=None if cfg.output_dir in (None, "") else str(cfg.output_dir),
        resume=_choice("resume", cfg.resume, RESUME),
        init_from=None if cfg.init_from in (None, "") else str(cfg.init_from),
        freeze=_choice("freeze", cfg.freeze, tuple(FREEZE)),
        finetune_stats=_choice("finetune_stats", _get(cfg, "finetune_stats", "dataset"), STATS),
        seed=number("seed", cfg.seed, int, 0),
        device=check_device(cfg.device),
        batch_size=number("batch_size", cfg.batch_size, int, 1),
        lr=number("lr", cfg.lr, float, 0.0),
        steps=steps,
        warmup_steps=number("train.warmup_steps", t.warmup_steps, int, 0),
        min_lr=number("train.min_lr", t.min_lr, float, 0.0),
        weight_decay=number("train.weight_decay", t.weight_decay, float, 0.0),
        betas=_betas(t.betas),
        grad_clip=number("train.grad_clip", t.grad_clip, float, 0.0),
        save_every=number("train.save_every", t.save_every, int, 0),
        keep_last=number("train.keep_last", t.keep_last, int, 1),
        log_every=number("train.log_every", t.log_every, int, 1),
        eval_every=number("train.eval_every", t.eval_every, int, 0),
        eval_batches=number("train.eval_batches", t.eval_batches, int, 1),
        val_episodes=number("data.val_episodes", cfg.data.val_episodes, int, 0),
        cache=_choice("data.cache", cfg.data.cache, ("auto", "true", "false")),
        cache_max_gb=number("data.cache_max_gb", cfg.data.cache_max_gb, float, 0.0),
        cache_resize=_choice("data.cache_resize", str(_get(cfg, "data.cache_resize", False)).lower(), ("true", "false")) == "true",
        num_workers=number("data.num_workers", cfg.data.num_workers, int, 0),
        threads=number("threads", _get(cfg, "threads", 0) or 0, int, 0),
        augment=Augment(
            shift=number("data.augment.shift", aug.get("shift", 0), int, 0),
            brightness=number("data.augment.brightness", aug.get("brightness", 0.0), float, 0.0, 1.0),
            contrast=number("data.augment.contrast", aug.get("contrast", 0.0), float, 0.0, 1.0),
        ),
        oversample_start=OversampleStart(
            frames=number("data.oversample_start.frames", start.get("frames", 0), int, 0),
            fraction=number("data.oversample_start.fraction", start.get("fraction", 0.25), float, 0.0, 1.0),
        ),
        instructions=_instructions(words),
        model=OmegaConf.to_container(cfg.model, resolve=True),
        compressor=OmegaConf.to_container(cfg.compressor, resolve=True),
        check_init_arch=check_init_arch,
    )
    pretrained_parts = s.model.get("vision_path") or s.model.get("backbone_path")
    if s.freeze != "none" and not s.init_from and not pretrained_parts:
        raise TrainConfigError(
            f"freeze={s.freeze} keeps weights fixed, so they must be trained ones: set init_from=<checkpoint> "
            "(fine-tuning), or load parts with model.vision_path / model.backbone_path"
        )
    if s.eval_every and not s.val_episodes:
        raise TrainConfigError(f"train.eval_every={s.eval_every} needs held-out episodes: set data.val_episodes >= 1")
    return s


def _instructions(words: Any) -> Instructions:
    """``data.instructions``: the augmentation file must load (checked now, not at the first step)."""
    augment = words.get("augment")
    out = Instructions(None if augment in (None, "", "null") else str(augment),
                       number("data.instructions.p", words.get("p", 0.5), float, 0.0, 1.0))
    if out.augment:
        from vla.instructions import InstructionFileError, InstructionSet, resolve_path

        try:
            out.augment = str(resolve_path(out.augment).absolute())
            InstructionSet.load(out.augment)
        except InstructionFileError as e:
            raise TrainConfigError(f"data.instructions.augment: {e}") from None
    return out


# Device nodes of an NVIDIA (or ROCm) driver: without any, no CUDA GPU can be usable, and saying
# so needs no torch import (seconds).
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")


def check_device(value: Any, key: str = "device") -> str:
    """``cpu`` / ``cuda`` / ``cuda:N``, with a clear error when no CUDA GPU is usable."""
    device = str(value)
    _choice(key, device.split(":")[0], DEVICES)
    if device.startswith("cuda"):
        if not any(os.path.exists(p) for p in GPU_DEVICE_NODES):
            raise TrainConfigError(
                f"{key}={device} requested but no CUDA GPU is usable here: no GPU driver (none of "
                f"{', '.join(GPU_DEVICE_NODES)} exists). Use device=cpu."
            )
        import torch

        if not torch.cuda.is_available():
            raise TrainConfigError(
                f"{key}={device} requested but no CUDA GPU is usable here (torch.cuda.is_available() is "
                "False). Use device=cpu, or check the driver / CUDA_VISIBLE_DEVICES."
            )
    return device


def _betas(value: Any) -> tuple[float, float]:
    try:
        b1, b2 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TrainConfigError(f"train.betas={value!r} must be two numbers, e.g. [0.9, 0.95]") from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise TrainConfigError(f"train.betas={value!r} must be in [0, 1)")
    return b1, b2
