"""The methods `vla bench` compares, and the policy each row runs.

A method is an ``AccelSpec`` (vla/accel.py): a compressor preset at the bench's token budget, plus
optional layer pruning and head step cache. Budgets (``budget_per_camera`` = B, 2 cameras):

    none            all 256 tokens per camera (512)
    compressor_vla  16 STC + 64 SRC = 80 per camera (its design budget)       learned
    stc / src       16 / 64 per camera (the paper's ablations)               learned
    efficientvla    in-LM selection at layer 2 keeping 2B, + pruning + cache  (the full EfficientVLA)
    fastv           in-LM at layer 2 keeping 2B
    tome, visionzip, divprune, random   B per camera
    pool            2x2 average pooling: 64 per camera (pooling cannot hit an arbitrary budget)
    accel_<preset>  a configs/accel/ preset applied as at load time (optional row)

Which weights a row runs (``Prepared.source``):
    "default"   training-free method on the default checkpoint (compressor switched; its
                training compressor should be `none`)
    "own"       the method's own checkpoint from ``checkpoints={method: dir}``
    "untrained" learned method without its own checkpoint: freshly initialised compressor on the
                default checkpoint -- tokens, FLOPs and latency are real, success is NOT evaluated
The prepared policy is saved as a checkpoint folder (``<run>/checkpoints/<method>``), which is what
the success evaluation loads and what a user can re-run or deploy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from vla.accel import (
    NONE,
    AccelSpec,
    Calibrate,
    accel_spec,
    accelerate,
    is_learned,
    prune_to_ratio,
    set_cache_interval,
    with_compressor,
)

from vla.configs import CONFIG_DIR  # noqa: E402
IN_LM = ("fastv", "efficientvla")


@dataclass
class Prepared:
    name: str
    policy: Any
    preprocessor: Any
    postprocessor: Any
    source: str  # "default" | "own" | "untrained"
    checkpoint: str  # the checkpoint the weights came from
    learned: bool
    notes: dict = field(default_factory=dict)
    saved: str | None = None  # the prepared checkpoint folder (what eval loads)

    @property
    def evaluated(self) -> bool:
        return self.source != "untrained"


def method_spec(name: str, budget_per_camera: int, cameras: int, efficientvla: dict | None = None) -> AccelSpec:
    """The AccelSpec of a bench method at the given visual-token budget."""
    if name.startswith("accel_"):
        spec = accel_spec(name.removeprefix("accel_"))
        if spec is None:
            raise ValueError(f"method '{name}': accel preset '{name.removeprefix('accel_')}' is a no-op")
        return replace(spec, name=name)
    file = CONFIG_DIR / "compressor" / f"{name}.yaml"
    preset = yaml.safe_load(file.read_text()) if file.is_file() else {"name": name}
    if name in IN_LM:
        preset.pop("ratio", None)
        preset["budget"] = budget_per_camera * cameras
    elif "budget" in preset:
        preset["budget"] = budget_per_camera
    spec = AccelSpec(name=name, compressor=preset)
    if name == "efficientvla":
        extra = dict(efficientvla or {})
        spec.keep_ratio = extra.get("keep_ratio")
        spec.cache_interval = int(extra.get("cache_interval", 1))
    return spec


def load(path: str | Path, device: str):
    from vla.checkpoint import load_checkpoint

    loaded = load_checkpoint(path, device=device)
    return loaded.policy, loaded.preprocessor, loaded.postprocessor


def prepare(
    name: str,
    spec: AccelSpec,
    default_checkpoint: str,
    own_checkpoint: str | None,
    device: str,
    calibrate: Calibrate,
    cache: dict[str, tuple] | None = None,
) -> Prepared:
    """Load the row's weights and apply its spec; ``calibrate(policy, pre)`` gives pruning calibration batches.

    ``cache`` (path -> loaded triple) avoids re-reading the default checkpoint for every row; the
    cached policy is never modified (rows get copies).
    """
    cache = {} if cache is None else cache
    path = str(own_checkpoint or default_checkpoint)
    if path not in cache:
        cache[path] = load(path, device)
    base, pre, post = cache[path]
    have = base.config.compressor.name
    source = "own" if own_checkpoint else "default"
    notes: dict[str, Any] = {"trained_with": have}
    if name.startswith("accel_"):  # the preset exactly as `load_policy(..., accel=...)` applies it
        policy, extra = accelerate(copy.deepcopy(base), pre, spec, calibrate)
        return Prepared(name, policy.eval(), pre, post, source, path, False, {**notes, **extra})
    target = spec.compressor or {"name": have, **base.config.compressor.kwargs}
    learned = is_learned(target, base.config.vision.hidden_size)
    if learned and target["name"] == have:
        policy = copy.deepcopy(base)  # trained with it: its own budget is part of its weights
    elif learned:
        if own_checkpoint:
            raise ValueError(f"checkpoints.{name}='{own_checkpoint}' was trained with compressor '{have}', "
                             f"not '{target['name']}'")
        policy, source = with_compressor(base, target, allow_untrained=True), "untrained"
    else:
        if have not in (NONE, target["name"]):
            notes["warning"] = f"training-free '{target['name']}' on a checkpoint trained with '{have}'"
        policy = with_compressor(base, target)
    if spec.keep_ratio is not None:
        report = prune_to_ratio(policy, pre, spec, calibrate)
        notes["removed_layers"] = report["removed"] if report else []
    if spec.cache_interval > 1 and set_cache_interval(policy, spec.cache_interval):
        notes["cache_interval"] = spec.cache_interval
    return Prepared(name, policy.eval(), pre, post, source, path, learned, notes)


def save(prepared: Prepared, folder: Path) -> str:
    """Write the prepared policy as a checkpoint folder (what `vla eval` loads)."""
    from vla.checkpoint import save_checkpoint

    save_checkpoint(folder, prepared.policy, prepared.preprocessor, prepared.postprocessor)
    prepared.saved = str(folder.absolute())
    return prepared.saved
