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
from pathlib import Path

# Before torch loads OpenMP: with the default ACTIVE wait policy, torch's 2 intra-op threads spin
# at every barrier, and on a CPU shared with other processes (2 cores, load ~5) a tiny-model step
# measured ~10x slower than with 1 thread (uint8 torch.stack: 256 ms vs 0.1 ms). PASSIVE made
# 2 threads as fast as 1 there; on an idle machine the threads still run in parallel.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from omegaconf import DictConfig, OmegaConf

from vla.training.data import DatasetError
from vla.training.loop import TrainResult, fit, setup
from vla.training.settings import TrainConfigError, settings_from

# Errors that are the user's input, not a bug: printed as one line, no traceback.
USER_ERRORS = (TrainConfigError, DatasetError, FileNotFoundError)


def train(cfg: DictConfig, run_dir: str | Path | None = None, check_init_arch: bool = False) -> TrainResult:
    """Run `vla train` from a composed config (also the programmatic entry point used by tests)."""
    import torch

    settings = settings_from(cfg, check_init_arch=check_init_arch)
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

    from policies.modeling_vla import CheckpointError

    hc = HydraConfig.get()
    # With init_from the architecture comes from the checkpoint, unless the user named one.
    named = {o.lstrip("+~").split("=")[0].split(".")[0] for o in hc.overrides.task}
    try:
        train(cfg, run_dir=hc.runtime.output_dir, check_init_arch=bool(named & {"model", "compressor"}))
    except (*USER_ERRORS, CheckpointError) as e:
        raise SystemExit(f"vla train: error: {e}") from None
