"""Scripted experts: one per simulator suite, all with the same small protocol.

    expert = make_expert(env)          # env from sim.factory.make_env (wrappers are fine)
    expert.reset()                     # after every env.reset()
    action = expert.act(obs)           # float32 [A], the env's action (env.unwrapped.embodiment)

Experts read privileged sim state from ``env.unwrapped``; `obs` is passed for suites that need it.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np


class Expert(Protocol):
    def reset(self, seed: int | None = None) -> None: ...  # seed: the episode's (for stochastic experts)

    def act(self, obs: Any) -> np.ndarray: ...


def make_expert(env: gym.Env, **kwargs: Any) -> Expert:
    """The scripted expert for `env`'s suite; `kwargs` (e.g. noise, seed) go to its constructor."""
    base = env.unwrapped
    # Imports are lazy so a missing optional simulator only matters to the suite that needs it.
    from sim.tabletop.env import TabletopEnv

    if isinstance(base, TabletopEnv):
        from sim.experts.tabletop import TabletopExpert

        return TabletopExpert(base, **kwargs)
    if type(base).__module__.startswith("sim.libero"):
        from sim.experts.libero import LiberoExpert

        return LiberoExpert(base, **kwargs)
    if type(base).__module__ == "sim.aloha.env":
        from sim.experts.aloha import AlohaExpert

        return AlohaExpert(base, **kwargs)
    if type(base).__module__ == "sim.metaworld.env":
        from sim.experts.metaworld import MetaWorldExpert

        return MetaWorldExpert(base, **kwargs)
    raise TypeError(f"no scripted expert for env type {type(base).__name__} ({type(base).__module__})")
