"""Shared helpers for the `vla train` tests (compose the Hydra config, small synthetic datasets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vla.configs import CONFIG_DIR


def dataset_root(fixture: Any) -> Path:
    """The root folder of the ``tabletop_dataset`` fixture (a path, or an object with ``.root``)."""
    if isinstance(fixture, (tuple, list)):
        fixture = fixture[0]
    if isinstance(fixture, (str, Path)):
        return Path(fixture)
    return Path(fixture.root)


def compose_train(*overrides: str):
    """The composed `vla train` config, exactly as the CLI would build it."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


# The tiny preset at 32 px (8x8 tokens per camera): ~2.5x cheaper per step than its 64 px, the
# same code paths. The full preset is trained by the `slow` loss test.
FAST_TINY = ("model=tiny", "model.vision.image_size=32")


def small_run(dataset: Path, out: Path, *overrides: str):
    """Tiny model, small batch, every-step logging: the config most tests train with."""
    return compose_train(
        f"dataset={dataset}", *FAST_TINY, "threads=1", "batch_size=4", f"output_dir={out}", "train.log_every=1",
        "train.warmup_steps=2", "data.cache=true", *overrides,
    )


def write_dataset(root: Path, state_dim: int = 8, action_dim: int = 7, cameras=("agentview", "wrist"),
                  episodes: int = 2, length: int = 12, size: int = 32, action_scale: float = 1.0) -> Path:
    """A small synthetic LeRobot v3.0 dataset (PNG image features: no video encoder needed);
    actions uniform in [-action_scale, action_scale]."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    names = ["height", "width", "channels"]
    features = {
        f"observation.images.{cam}": {"dtype": "image", "shape": (size, size, 3), "names": names} for cam in cameras
    }
    features["observation.state"] = {"dtype": "float32", "shape": (state_dim,), "names": None}
    features["action"] = {"dtype": "float32", "shape": (action_dim,), "names": None}
    ds = LeRobotDataset.create("local/synthetic", fps=20, root=root, features=features, use_videos=False)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        for _ in range(length):
            frame = {
                f"observation.images.{cam}": rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for cam in cameras
            }
            frame["observation.state"] = rng.standard_normal(state_dim).astype(np.float32)
            frame["action"] = rng.uniform(-action_scale, action_scale, action_dim).astype(np.float32)
            frame["task"] = "put the red cube on the blue plate"
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return root
