"""Test helper shared across test folders (tests/ is on sys.path through its conftest.py)."""

from pathlib import Path

import torch
from omegaconf import OmegaConf

from vla.configs import CONFIG_DIR


def save_tiny_checkpoint(path: Path, compressor: str = "none") -> Path:
    """A randomly initialised `tiny` model saved as a checkpoint folder (with processor stats)."""
    from vla.checkpoint import build_policy, save_checkpoint

    torch.manual_seed(0)
    model = OmegaConf.load(CONFIG_DIR / "model" / "tiny.yaml")
    stats = {
        "observation.state": {"mean": torch.zeros(8), "std": torch.ones(8)},
        "action": {"mean": torch.zeros(7), "std": torch.full((7,), 0.5)},
    }
    policy, pre, post = build_policy(model, {"name": compressor}, dataset_stats=stats)
    return save_checkpoint(path, policy, pre, post)
