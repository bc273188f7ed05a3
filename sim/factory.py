"""One way to build any suite's env from its Hydra `env` config, whatever the simulator.

Every suite module (``sim.tabletop``, ``sim.libero``) exposes the same three functions:
    task_names(env_cfg) -> list[str]                      the tasks the config selects
    make_env(env_cfg, task, cameras=True) -> gym.Env      one env for one task
    reset_options(env_cfg, task, episode_index) -> dict   options for env.reset() that pick the
                                                          episode's layout / init state
so collectors, evaluators and benchmarks never branch on the simulator.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import gymnasium as gym

SUITES = {
    "tabletop": "sim.tabletop",
    "libero_spatial": "sim.libero",
    "libero_object": "sim.libero",
    "libero_goal": "sim.libero",
    "libero_10": "sim.libero",
    "libero_90": "sim.libero",
}


def suite_module(env_cfg: Any) -> ModuleType:
    suite = env_cfg.suite
    if suite not in SUITES:
        raise ValueError(f"unknown suite '{suite}'. Valid suites: {', '.join(SUITES)}")
    return importlib.import_module(SUITES[suite])


def task_names(env_cfg: Any) -> list[str]:
    return suite_module(env_cfg).task_names(env_cfg)


def make_env(env_cfg: Any, task: str, cameras: bool = True) -> gym.Env:
    return suite_module(env_cfg).make_env(env_cfg, task, cameras=cameras)


def reset_options(env_cfg: Any, task: str, episode_index: int) -> dict:
    return suite_module(env_cfg).reset_options(env_cfg, task, episode_index)
