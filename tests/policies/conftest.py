"""Fixtures of the policy tests (helpers live in _policy_helpers.py)."""

from __future__ import annotations

import pytest
import torch

from _policy_helpers import CAMERAS
from lerobot.utils.constants import OBS_STATE


@pytest.fixture
def raw_obs() -> dict:
    """One un-batched observation as an env/dataset gives it (float [3, H, W] in [0, 1])."""
    g = torch.Generator().manual_seed(0)
    obs = {key: torch.rand(3, 64, 64, generator=g) for key in CAMERAS}
    obs[OBS_STATE] = torch.randn(8, generator=g)
    obs["task"] = "put the red cube on the blue plate"
    return obs


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run policy tests on one intra-op thread.

    The CI machines have 2 cores shared by several jobs; with 2 OpenMP threads a tiny model spends
    most of its time spinning on a busy core (measured: 10 training steps 1.2 s with 1 thread vs
    18.6 s with 2 under load). Restored after each test.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
