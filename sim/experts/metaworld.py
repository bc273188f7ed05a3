"""Meta-World's own scripted experts (``metaworld.policies``), one per MT50 task, behind the expert protocol.

The class per task is the one lerobot's ``metaworld_config.json`` names (``TASK_POLICY_MAPPING``);
it reads the full 39-D Meta-World observation (``env.unwrapped.raw_obs``, PRIVILEGED: object and
goal positions), not the camera. ``noise`` adds Gaussian noise of that std to the executed action
(clipped to [-1, 1]); ``intended_action`` keeps the noise-free one (DART-style labels).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from sim.metaworld.env import MetaWorldEnv, import_metaworld


class MetaWorldExpert:
    def __init__(self, env: MetaWorldEnv, noise: float = 0.0, seed: int = 0) -> None:
        metaworld = import_metaworld()
        self.env = env
        self.policy = getattr(metaworld.policies, env.spec_task.expert)()
        self.noise = float(noise)
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.rng = np.random.default_rng(seed)
        self.intended_action: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.intended_action = None

    def act(self, obs: Any = None) -> np.ndarray:
        if self.env.raw_obs is None:
            raise RuntimeError("reset the env before asking the expert")
        with warnings.catch_warnings():  # "Constant(s) may be too high": it clips, and so do we
            warnings.simplefilter("ignore", UserWarning)
            action = np.clip(np.asarray(self.policy.get_action(self.env.raw_obs), np.float32), -1.0, 1.0)
        self.intended_action = action.copy()
        if self.noise:
            action = np.clip(action + self.rng.normal(0.0, self.noise, action.shape), -1.0, 1.0).astype(np.float32)
        return action
