"""Acceleration presets (``configs/accel/<name>.yaml``): ``accel=none|fast`` in vla profile / eval / bench.

``accel=fast`` stacks the three cheap wins measured in this repo:
  1. visual tokens: Compressor-VLA (STC + SRC), 512 -> 160 tokens into the backbone;
  2. EfficientVLA layer pruning: keep ``round(keep_ratio * L)`` decoder layers (cpu preset 4 -> 2),
     the ones with the highest I(l) (policies/layer_pruning.py);
  3. EfficientVLA action-head step cache: ``head.cache_interval`` = 5 (block outputs recomputed on
     2 of the 10 flow steps).

How it applies, and what happens without a calibrated checkpoint:
* **Fresh policy** (``vla profile``, random weights): built with the preset's compressor, then
  pruned with the importance measured on synthetic observations (FLOPs and latency do not depend
  on WHICH layers go, only how many), then the cache is switched on.
* **A checkpoint** (``vla.runtime.load_policy(..., accel=...)``, used by eval / bench):
  - compressor: compressor_vla is *learned*, so it can only be used if the checkpoint was trained
    with it. A checkpoint trained with ``none`` gets ``fallback_compressor`` instead (EfficientVLA's
    training-free token selection at the same 160-token budget). A checkpoint trained with another
    compressor keeps it (it was trained to see those tokens).
  - pruning: a checkpoint already pruned by ``vla prune`` (``backbone.removed_layers`` set) is left
    as it is -- the recommended path, since ``vla prune`` calibrates on real dataset frames.
    Otherwise the layers are pruned at load time, calibrated on ``calib`` (a dataset root) or, when
    that is null, on synthetic observations (logged as a warning: a rough proxy).
  - cache: set on the flow head (the l1 head has no denoising steps; nothing to cache).

``AccelSpec`` is also how ``vla bench`` describes its methods (compressor + pruning + cache).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

logger = logging.getLogger(__name__)
NONE = "none"


@dataclass
class AccelSpec:
    """What to apply to a policy. ``compressor`` None = keep the policy's; ``keep_ratio`` None = no pruning."""

    name: str = NONE
    compressor: dict | None = None
    fallback_compressor: dict | None = None
    keep_ratio: float | None = None
    cache_interval: int = 1
    vision_prune: dict | None = None  # {after: fraction of the tower's layers, keep, min_layers}; None = off
    calib: str | None = None  # dataset root for load-time pruning; None = synthetic observations
    calib_batches: int = 4
    calib_batch_size: int = 8
    seed: int = 0


def accel_spec(cfg: Any) -> AccelSpec | None:
    """AccelSpec from a Hydra ``accel`` group / dict / preset name; None for ``none`` (or nothing)."""
    if cfg is None:
        return None
    if isinstance(cfg, AccelSpec):
        return None if cfg.name == NONE else cfg
    if isinstance(cfg, str):
        cfg = _load_preset(cfg)
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    if d.get("name", NONE) == NONE:
        return None
    known = set(AccelSpec.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"accel preset '{d.get('name')}': unknown keys {unknown}; valid: {sorted(known)}")
    spec = AccelSpec(**d)
    if spec.cache_interval < 1:
        raise ValueError(f"accel.cache_interval must be >= 1, got {spec.cache_interval}")
    if spec.vision_prune is not None:
        vp = dict(spec.vision_prune)
        unknown = sorted(set(vp) - {"after", "keep", "min_layers"})
        if unknown or not 0 < float(vp.get("after", 0)) < 1 or not 0 < float(vp.get("keep", 0)) <= 1:
            raise ValueError(f"accel.vision_prune must be {{after: fraction of the tower's layers in (0, 1), keep: "
                             f"in (0, 1], min_layers: int}}, got {spec.vision_prune}")
    return spec


def _load_preset(name: str) -> dict:
    from vla.configs import preset

    return preset("accel", name)


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------
def is_learned(compressor: dict, dim: int = 8) -> bool:
    import compressors

    kwargs = {k: v for k, v in compressor.items() if k != "name"}
    with torch.device("meta"):
        return bool(compressors.build(compressor["name"], dim=dim, **kwargs).learned)


def with_compressor(policy, compressor: dict, allow_untrained: bool = False):
    """A copy of ``policy`` whose compressor is ``compressor`` (a preset dict), all other weights shared.

    A learned compressor gets freshly initialised parameters, which is only allowed with
    ``allow_untrained`` (cost measurements). The old compressor's parameters are dropped.
    """
    from policies.configuration_vla import CompressorConfig
    from policies.modeling_vla import VLAPolicy

    cfg = copy.deepcopy(policy.config)
    kwargs = {k: v for k, v in compressor.items() if k != "name"}
    cfg.compressor = CompressorConfig(name=compressor["name"], kwargs=kwargs)
    cfg._validate_compressor()  # fills the method's defaults into kwargs, checks the budget fits
    new = VLAPolicy(cfg, load_pretrained_parts=False)
    state = {k: v for k, v in policy.state_dict().items() if not k.startswith("model.compressor.")}
    missing, unexpected = new.load_state_dict(state, strict=False)
    untrained = [k for k in missing if k.startswith("model.compressor.")]
    other = [k for k in missing if not k.startswith("model.compressor.")] + list(unexpected)
    if other:
        raise RuntimeError(f"weights do not carry over to compressor '{compressor['name']}': {other[:8]}")
    if untrained and not allow_untrained:
        raise ValueError(
            f"compressor '{compressor['name']}' is learned: its {len(untrained)} parameter tensors are not in this "
            f"checkpoint (trained with '{policy.config.compressor.name}'). Train with compressor={compressor['name']}"
        )
    new.to(next(policy.parameters()).device)
    new.eval()
    return new


def set_cache_interval(policy, interval: int) -> bool:
    """Switch the flow head's step cache (1 = off); returns False for heads without denoising steps."""
    head = policy.model.head
    if not hasattr(head, "cache_interval"):
        return False
    head.cache_interval = int(interval)
    policy.config.head.cache_interval = int(interval)
    return True


def calibration_batches(policy, preprocessor, spec: AccelSpec) -> list[dict[str, Any]]:
    from vla.batches import dataset_batches, synthetic_batches

    if spec.calib:
        return dataset_batches(spec.calib, preprocessor, policy.config.camera_keys, spec.calib_batches,
                               spec.calib_batch_size, spec.seed)
    return synthetic_batches(policy, preprocessor, spec.calib_batches, spec.seed)


Calibrate = Callable[[Any, Any], list]  # (policy, preprocessor) -> preprocessed calibration batches


def prune_to_ratio(policy, preprocessor, spec: AccelSpec, calibrate: Calibrate | None = None) -> dict[str, Any] | None:
    """Prune to ``spec.keep_ratio`` of the layers (never below what an in-LM compressor needs).

    Calibration: ``spec.calib`` (a dataset) if set, else ``calibrate`` if given, else synthetic frames.
    """
    from policies.layer_pruning import decoder_layers, keep_count, min_layers, prune_policy

    n = len(decoder_layers(policy))
    keep = max(keep_count(n, keep_ratio=spec.keep_ratio), min_layers(policy))
    if keep >= n:
        return None
    if spec.calib or calibrate is None:
        if not spec.calib:
            logger.warning("accel=%s: pruning %d -> %d layers with importance from synthetic observations; "
                           "`vla prune calib=<dataset>` gives a calibrated checkpoint", spec.name, n, keep)
        batches = calibration_batches(policy, preprocessor, spec)
    else:
        batches = calibrate(policy, preprocessor)
    return prune_policy(policy, batches, keep_layers=keep)


# --------------------------------------------------------------------------------------------------
# Applying a preset
# --------------------------------------------------------------------------------------------------
def resolve_compressor(policy, spec: AccelSpec) -> tuple[dict | None, str]:
    """(compressor to switch to or None to keep the policy's, why) -- see the module docstring."""
    have = policy.config.compressor.name
    target = spec.compressor
    if not target or target["name"] == have:
        return None, f"kept '{have}'"
    if have != NONE:
        return None, f"kept '{have}' (the checkpoint was trained with it)"
    if is_learned(target):
        if not spec.fallback_compressor:
            raise ValueError(f"accel={spec.name}: '{target['name']}' is learned and this checkpoint was trained "
                             f"without it; train with compressor={target['name']} or give a fallback_compressor")
        return spec.fallback_compressor, (f"'{target['name']}' is learned and the checkpoint was trained with "
                                          f"'none': training-free fallback '{spec.fallback_compressor['name']}'")
    return target, f"'{target['name']}' (training-free) on a checkpoint trained with 'none'"


def set_vision_prune(policy, prune: dict) -> str:
    """Turn on token halting in the vision tower (policies/vision_pruning.py) if it is deep enough."""
    vision = policy.config.vision
    if vision.num_layers < int(prune.get("min_layers", 1)):
        return f"off: a {vision.num_layers}-layer tower (< min_layers {prune['min_layers']})"
    after = min(max(1, round(float(prune["after"]) * vision.num_layers)), vision.num_layers - 1)
    vision.prune_after, vision.prune_keep = after, float(prune["keep"])
    return f"after layer {after} of {vision.num_layers}, keep {vision.prune_keep:g} of the patches"


def accelerate(policy, preprocessor, spec: AccelSpec | Any, calibrate: Calibrate | None = None) -> tuple[Any, dict]:
    """Apply a preset to a loaded policy; returns (policy -- a new object if the compressor changed, notes).

    ``calibrate`` supplies pruning calibration batches when the preset names no dataset.
    """
    spec = accel_spec(spec)
    if spec is None:
        return policy, {"accel": NONE}
    notes: dict[str, Any] = {"accel": spec.name}
    target, notes["compressor"] = resolve_compressor(policy, spec)
    if target is not None:
        policy = with_compressor(policy, target)
    if spec.keep_ratio is not None:
        if policy.config.backbone.removed_layers:
            notes["pruning"] = f"already pruned (removed layers {policy.config.backbone.removed_layers})"
        else:
            report = prune_to_ratio(policy, preprocessor, spec, calibrate)
            how = spec.calib or ("synthetic" if calibrate is None else "caller's frames")
            notes["pruning"] = (f"removed layers {report['removed']} of {report['num_layers_before']} "
                                f"(calibration: {how})") if report else "nothing to prune"
    if spec.vision_prune is not None:
        notes["vision_prune"] = set_vision_prune(policy, spec.vision_prune)
    if spec.cache_interval > 1:
        notes["cache"] = f"interval {spec.cache_interval}" if set_cache_interval(policy, spec.cache_interval) else \
            "no flow head: no step cache"
    logger.info("accel=%s: %s", spec.name, notes)
    return policy, notes


def build_accelerated(model: Any, spec: AccelSpec, device: str = "cpu", seed: int = 0):
    """A fresh policy with the preset (its compressor at build time): (policy, pre, post, notes)."""
    from vla.checkpoint import build_policy

    torch.manual_seed(seed)
    policy, pre, post = build_policy(model, spec.compressor or {"name": NONE}, device=device)
    policy, notes = accelerate(policy, pre, replace(spec, compressor=None))
    notes["compressor"] = policy.config.compressor.name
    return policy, pre, post, notes


def speedup_line(base: dict[str, Any], fast: dict[str, Any], base_name: str = NONE) -> str:
    """The one-line summary of two `vla.cost` rows."""
    speedup = base["latency_ms"]["total"] / fast["latency_ms"]["total"]
    share = 100.0 * fast["flops"]["total"] / base["flops"]["total"]
    return f"speedup {speedup:.2f}x vs {base_name}, FLOPs {share:.1f} % of {base_name}"
