"""`vla train`: train or fine-tune the VLA policy on a LeRobot dataset (configs/train.yaml).

    vla train dataset=<root|repo_id> model=tiny|cpu|gpu compressor=<name> [train.steps=N batch_size=..
              lr=.. seed=.. device=cpu|cuda output_dir=..]
    vla train dataset=... train=debug                       # 2 steps + checkpoints: a smoke run
    vla train init_from=<checkpoint> dataset=<teleop> train=finetune freeze=vision|vision_backbone|none
    accelerate launch --multi_gpu --num_processes=2 -m vla.cli train dataset=... device=cuda output_dir=runs/a
    torchrun --nproc_per_node=2 -m vla.cli train dataset=... output_dir=runs/a   # DDP on CPU (gloo)

Rerunning a command with the same ``output_dir`` resumes from ``checkpoints/last`` (``resume=auto``).
The work is in ``vla/training/``: settings (config checks), data (dataset, frame cache, sampler),
build (policy, freezing, optimizer), checkpointing (atomic folders) and loop (step/eval/save).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Before torch loads OpenMP: with the default ACTIVE wait policy, torch's 2 intra-op threads spin
# at every barrier, and on a CPU shared with other processes (2 cores, load ~5) a tiny-model step
# measured ~10x slower than with 1 thread (uint8 torch.stack: 256 ms vs 0.1 ms). PASSIVE made
# 2 threads as fast as 1 there; on an idle machine the threads still run in parallel.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from omegaconf import DictConfig, OmegaConf

# Only light modules here: torch, lerobot and the policy load after the config, the dataset and
# the init_from checkpoint passed the checks below, so a bad value answers in about a second.
from vla.training.checkpointing import RunFolderError
from vla.training.dataset_files import DatasetError, read_info, resolve_dataset
from vla.training.settings import TrainConfigError, TrainSettings, settings_from

if TYPE_CHECKING:
    from vla.training.loop import TrainResult

# Errors that are the user's input, not a bug: printed as one line, no traceback.
USER_ERRORS = (TrainConfigError, DatasetError, RunFolderError, FileNotFoundError)
# What a checkpoint folder must hold to be loaded as init_from (vla.checkpoint.save_checkpoint).
INIT_FILES = ("config.json", "model.safetensors")


def preflight(s: TrainSettings) -> None:
    """The checks that need no heavy import: the dataset's files, the init_from folder's files."""
    read_info(resolve_dataset(s.dataset))
    if s.init_from:
        path = Path(s.init_from).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"init_from='{s.init_from}': checkpoint folder not found (resolved to {path.absolute()})")
        missing = [f for f in INIT_FILES if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(f"init_from='{s.init_from}' is not a checkpoint folder: missing {', '.join(missing)}")


def train(cfg: DictConfig, run_dir: str | Path | None = None, check_init_arch: bool = False) -> TrainResult:
    """Run `vla train` from a composed config (also the programmatic entry point used by tests)."""
    settings = settings_from(cfg, check_init_arch=check_init_arch)
    preflight(settings)

    import torch

    from vla.training.loop import fit, setup

    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        run = setup(settings, OmegaConf.to_yaml(cfg, resolve=True), run_dir)
        return fit(run)
    finally:
        torch.set_num_threads(threads)  # leave the caller's process as it was (tests, notebooks)


def main(cfg: DictConfig) -> None:
    """Hydra entry point (`vla train ...`)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    # With init_from the architecture comes from the checkpoint, unless the user named one.
    named = {o.lstrip("+~").split("=")[0].split(".")[0] for o in hc.overrides.task}
    try:
        train(cfg, run_dir=hc.runtime.output_dir, check_init_arch=bool(named & {"model", "compressor"}))
    except Exception as e:
        if not is_user_error(e):
            raise
        raise SystemExit(f"vla train: error: {e}") from None


def is_user_error(e: BaseException) -> bool:
    """Bad input (config, dataset, checkpoint) rather than a bug: one line, no traceback."""
    modeling = sys.modules.get("policies.modeling_vla")  # a CheckpointError needs it imported: no import here
    return isinstance(e, USER_ERRORS) or (modeling is not None and isinstance(e, modeling.CheckpointError))
