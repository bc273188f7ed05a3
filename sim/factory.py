"""One way to build any suite's env from its Hydra `env` config, whatever the simulator.

Every suite module (``sim.tabletop``, ``sim.libero``) exposes the same three functions:
    task_names(env_cfg) -> list[str]                      the tasks the config selects
    make_env(env_cfg, task, cameras=True) -> gym.Env      one env for one task
    reset_options(env_cfg, task, episode_index) -> dict   options for env.reset() that pick the
                                                          episode's layout / init state
and optionally
    task_instruction(suite, task) -> str | None           the task's own instruction, without an env
so collectors, evaluators and benchmarks never branch on the simulator.
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType
from typing import Any

import gymnasium as gym

class MissingExtraError(ImportError):
    """A suite's simulator is not installed; the message names the extra (`pip install -e ".[x]"`).
    The `vla` commands print it as one line, without a traceback."""


SUITES = {
    "tabletop": "sim.tabletop",
    "libero_spatial": "sim.libero",
    "libero_object": "sim.libero",
    "libero_goal": "sim.libero",
    "libero_10": "sim.libero",
    "libero_90": "sim.libero",
    "aloha_transfer_cube": "sim.aloha",
    "aloha_insertion": "sim.aloha",
    "metaworld": "sim.metaworld",
}


def suite_module(env_cfg: Any) -> ModuleType:
    suite = env_cfg.suite
    if suite not in SUITES:
        raise ValueError(f"unknown suite '{suite}'. Valid suites: {', '.join(SUITES)}")
    return importlib.import_module(SUITES[suite])


def task_names(env_cfg: Any) -> list[str]:
    return suite_module(env_cfg).task_names(env_cfg)


def task_instruction(suite: str, task: str) -> str | None:
    """The suite's own instruction of ``task`` without building an env; None if the suite or task
    is unknown or its module does not say (it then has no instruction to match templates against)."""
    if suite not in SUITES:
        return None
    lookup = getattr(importlib.import_module(SUITES[suite]), "task_instruction", None)
    return lookup(suite, task) if lookup is not None else None


def select_tasks(requested: Any, available: list[str]) -> list[str]:
    """The `tasks=` selection of a command: "all"/None, a comma-separated string, a name, an index
    into ``available`` (as in the env configs' own `tasks:`), or a list of names/indices. Unknown
    names, out-of-range indices and duplicates are errors that list the valid tasks."""
    if requested in (None, "all"):
        return list(available)
    if isinstance(requested, str):
        requested = [t.strip() for t in requested.split(",") if t.strip()]
    elif isinstance(requested, int):
        requested = [requested]
    tasks = []
    for t in requested:
        if isinstance(t, int) and not isinstance(t, bool):
            if not 0 <= t < len(available):
                raise ValueError(
                    f"task index {t} out of range 0..{len(available) - 1}. Valid tasks: {', '.join(available)}"
                )
            t = available[t]
        tasks.append(str(t))
    for task in tasks:
        if task not in available:
            close = difflib.get_close_matches(task, available, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown task '{task}'.{hint} Valid tasks for this env: {', '.join(available)}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks lists a task twice: {tasks}")
    return tasks


def make_env(env_cfg: Any, task: str, cameras: bool = True) -> gym.Env:
    return suite_module(env_cfg).make_env(env_cfg, task, cameras=cameras)


def reset_options(env_cfg: Any, task: str, episode_index: int) -> dict:
    return suite_module(env_cfg).reset_options(env_cfg, task, episode_index)


def embodiment(env_cfg: Any) -> Any:
    """The robot the config's envs simulate (a ``policies.embodiment.Embodiment``, what
    ``env.unwrapped.embodiment`` says), without building an env: the suite module's own
    ``embodiment(env_cfg)`` where it has one (ALOHA, Meta-World), else the tabletop/LIBERO arm."""
    module = suite_module(env_cfg)
    if hasattr(module, "embodiment"):
        return module.embodiment(env_cfg)
    from sim.dataset import image_size_of
    from sim.spaces import embodiment as arm

    return arm(image_size_of(env_cfg))
