"""Training checkpoints: atomic folders, a ``last`` pointer, and the state needed to resume exactly.

    <output_dir>/checkpoints/
        000500/                         a policy checkpoint folder (vla.checkpoint.save_checkpoint:
            config.json                 config, weights, fingerprint, pre/post processors), usable
            model.safetensors           as-is by `vla eval`, `lerobot-eval --policy.path=...`
            fingerprint.json
            policy_preprocessor.json ...
            train_config.yaml           the resolved `vla train` config of the run
            training_state/
                optimizer_state.safetensors, optimizer_param_groups.json
                scheduler_state.json
                rng_state.safetensors   python / numpy / torch RNGs
                training_step.json      {"step", "batch_size", "num_processes", "seed", "data_position", ...}
        last -> 000500                  symlink, replaced atomically after a complete write

A checkpoint is written to ``tmp-000500/`` and renamed to ``000500/`` only when every file is on
disk; ``last`` is switched (``os.replace`` of a fresh symlink) only after that rename. A kill at any
instant leaves ``last`` pointing at a complete checkpoint (or absent); ``tmp-*`` leftovers are
deleted at the next start. ``resume`` reads ``last`` only, never guesses from folder names.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
LAST = "last"
TRAINING_STATE = "training_state"
STEP_FILE = "training_step.json"
CONFIG_FILE = "train_config.yaml"
TMP_PREFIX = "tmp-"


class RunFolderError(ValueError):
    """A file of the run's output_dir that a resume cannot use (named with the line or key)."""


def checkpoints_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINTS


def step_name(step: int) -> str:
    return f"{step:06d}"


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The folder ``checkpoints/last`` points at, or None when there is no complete checkpoint."""
    link = checkpoints_dir(output_dir) / LAST
    if not link.is_symlink() and not link.exists():
        return None
    target = link.resolve()
    if not (target / TRAINING_STATE / STEP_FILE).is_file():
        raise RuntimeError(f"'{link}' points at '{target}', which is not a complete training checkpoint")
    return target


def clean_partial(output_dir: str | Path) -> list[Path]:
    """Delete ``tmp-*`` folders left by a run killed while writing a checkpoint."""
    root = checkpoints_dir(output_dir)
    removed = sorted(root.glob(f"{TMP_PREFIX}*")) if root.is_dir() else []
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
        logger.info("removed partial checkpoint %s", path)
    return removed


def save(output_dir: str | Path, step: int, policy, preprocessor, postprocessor, optimizer, scheduler,
         meta: dict[str, Any], config_yaml: str, keep_last: int = 3) -> Path:
    """Write checkpoint ``step`` atomically, point ``last`` at it, keep the newest ``keep_last``."""
    from vla.checkpoint import save_checkpoint

    root = checkpoints_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_name(step)
    tmp = root / f"{TMP_PREFIX}{step_name(step)}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, policy, preprocessor, postprocessor)
    (tmp / CONFIG_FILE).write_text(config_yaml)
    save_training_state(tmp / TRAINING_STATE, step, optimizer, scheduler, meta)
    _fsync_tree(tmp)
    if final.exists():  # same step written before (e.g. a rerun that killed just after the rename)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _point_last(root, final.name)
    _prune(root, keep_last)
    return final


def save_training_state(folder: Path, step: int, optimizer, scheduler, meta: dict[str, Any]) -> None:
    from lerobot.optim.optimizers import save_optimizer_state
    from lerobot.optim.schedulers import save_scheduler_state
    from lerobot.utils.random_utils import save_rng_state

    folder.mkdir(parents=True, exist_ok=True)
    save_optimizer_state(optimizer, folder)
    save_scheduler_state(scheduler, folder)
    save_rng_state(folder)
    (folder / STEP_FILE).write_text(json.dumps({"step": step, **meta}, indent=2))


def load_training_state(checkpoint: Path, optimizer, scheduler) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG states in place; returns ``training_step.json``."""
    from lerobot.optim.optimizers import load_optimizer_state
    from lerobot.optim.schedulers import load_scheduler_state
    from lerobot.utils.random_utils import load_rng_state

    folder = checkpoint / TRAINING_STATE
    try:
        load_optimizer_state(optimizer, folder)
        load_scheduler_state(scheduler, folder)
        load_rng_state(folder)
        return json.loads((folder / STEP_FILE).read_text())
    except (KeyError, ValueError, RuntimeError) as e:
        raise RuntimeError(
            f"cannot restore the training state in '{folder}' ({type(e).__name__}: {e}); was the run "
            "started with a different freeze= option? Use a new output_dir or resume with the same options."
        ) from e


def _point_last(root: Path, name: str) -> None:
    tmp_link = root / f"{TMP_PREFIX}{LAST}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(name)  # relative: the run folder can be moved
    os.replace(tmp_link, root / LAST)
    _fsync_dir(root)


def _prune(root: Path, keep_last: int) -> None:
    done = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name.isdigit())
    current = (root / LAST).resolve()
    for path in done[:-keep_last] if keep_last > 0 else []:
        if path.resolve() != current:
            shutil.rmtree(path, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    """Flush file contents before the rename makes the folder visible as complete."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for path in [folder, *[p for p in folder.rglob("*") if p.is_dir()]]:
        _fsync_dir(path)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

