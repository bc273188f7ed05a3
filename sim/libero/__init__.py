"""LIBERO suites (libero_spatial/object/goal/10/90) behind the ``sim.factory`` protocol.

Config keys read from ``configs/env/<suite>.yaml``:
    suite              one of sim.libero.suites.SUITES
    tasks              "all" or a list of task names / indices
    image_size         int or [h, w]
    max_episode_steps  null -> the suite's standard horizon
    init_states        which fixed init states episodes cycle through: "all", a list of indices,
                       or {start: a, stop: b}
    settle_steps       no-op steps after loading an init state (default 10, as LIBERO evals do)

The LIBERO simulator itself is imported only when an env is reset (see ``sim.libero.env``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sim.libero.suites import SUITES, check_suite, get_task, load_init_states, suite_tasks


def task_names(env_cfg: Any) -> list[str]:
    suite = check_suite(env_cfg.suite)
    selected = env_cfg.get("tasks", "all")
    if selected in (None, "all"):
        return [t.name for t in suite_tasks(suite)]
    if isinstance(selected, (str, int)):
        selected = [selected]
    return [get_task(suite, t).name for t in selected]


def task_instruction(suite: str, task: str) -> str | None:
    try:
        return get_task(suite, task).language
    except (KeyError, ValueError):
        return None


def make_env(env_cfg: Any, task: str | int, cameras: bool = True):
    from sim.libero.env import LiberoEnv

    return LiberoEnv(
        suite=env_cfg.suite,
        task=task,
        image_size=_image_size(env_cfg.get("image_size", 128)),
        max_episode_steps=env_cfg.get("max_episode_steps", None),
        cameras=cameras,
        settle_steps=int(env_cfg.get("settle_steps", 10)),
    )


def reset_options(env_cfg: Any, task: str | int, episode_index: int) -> dict:
    """Episode ``i`` uses the i-th selected init state (cycling if there are more episodes)."""
    spec = get_task(check_suite(env_cfg.suite), task)
    ids = init_state_ids(env_cfg.get("init_states", "all"), len(load_init_states(spec.suite, spec.index)))
    return {"init_state": ids[episode_index % len(ids)]}


def init_state_ids(selection: Any, n_available: int) -> list[int]:
    """Resolve the config's ``init_states`` selection to a validated list of indices."""
    if selection in (None, "all"):
        ids = list(range(n_available))
    elif isinstance(selection, Mapping):
        start, stop = int(selection.get("start", 0)), selection.get("stop", None)
        ids = list(range(start, n_available if stop is None else min(int(stop), n_available)))
    elif isinstance(selection, int):
        ids = [selection]
    elif isinstance(selection, Sequence) and not isinstance(selection, str):
        ids = [int(i) for i in selection]
    else:
        raise ValueError(f"init_states must be 'all', a list of indices or {{start, stop}}; got {selection!r}")
    bad = [i for i in ids if not 0 <= i < n_available]
    if bad or not ids:
        raise ValueError(f"init_states {selection!r} selects {bad or 'nothing'}; valid indices 0..{n_available - 1}")
    return ids


def _image_size(value: Any) -> int | tuple[int, int]:
    if isinstance(value, int):
        return value
    h, w = value
    return int(h), int(w)


__all__ = ["SUITES", "init_state_ids", "make_env", "reset_options", "task_names"]
