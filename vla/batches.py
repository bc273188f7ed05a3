"""Model-input batches without an env: synthetic observations and calibration frames from a dataset.

Shared by `vla profile` (vla/profiling.py), `vla prune` (vla/prune.py), the acceleration presets
(vla/accel.py), `vla bench` and the ROS policy node; a library module, so none of them imports another
command to get them.

``synthetic_batches`` (random images + fixed instructions) stands in for a dataset only where no
data exists (``accel=fast`` on an uncalibrated model, profiling with random weights): the ranking
it gives is a rough proxy, so calibrating on real frames (``dataset_batches``) is the recommended path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INSTRUCTION = "put the red cube on the blue plate"
SYNTHETIC_INSTRUCTIONS = (
    "put the red cube on the blue plate",
    "stack the green cube on the red cube",
    "put the blue cube in the bowl",
    "push the red cube to the left",
)


def make_batch(policy, preprocessor=None, instruction: str = INSTRUCTION, seed: int = 0) -> dict[str, Any]:
    """A preprocessed batch-1 observation for ``policy`` (random images/state, a real instruction)."""
    import torch

    from policies.processor_vla import make_vla_pre_post_processors

    cfg = policy.config
    pre = preprocessor or make_vla_pre_post_processors(cfg, dataset_stats=None)[0]
    g = torch.Generator().manual_seed(seed)
    size = cfg.vision.image_size
    obs: dict[str, Any] = {key: torch.rand(3, size, size, generator=g) for key in cfg.camera_keys}
    obs["observation.state"] = torch.randn(cfg.state_dim, generator=g)
    obs["task"] = instruction
    return pre(obs)


def dataset_batches(root: str | Path, preprocessor, camera_keys: list[str], num_batches: int = 8,
                    batch_size: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    """Preprocessed batches of real frames from a LeRobot dataset (seeded sample without replacement)."""
    from vla.training.data import sample_frames

    return [preprocessor(b) for b in sample_frames(root, camera_keys, num_batches, batch_size, seed)]


def synthetic_batches(policy, preprocessor, num_batches: int = 4, seed: int = 0) -> list[dict[str, Any]]:
    """Batch-1 observations with random images/state and a few fixed instructions (no data needed)."""
    return [
        make_batch(policy, preprocessor, instruction=SYNTHETIC_INSTRUCTIONS[i % len(SYNTHETIC_INSTRUCTIONS)],
                   seed=seed + i)
        for i in range(num_batches)
    ]
