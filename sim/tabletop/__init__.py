"""Fast built-in MuJoCo tabletop suite behind the ``sim.factory`` protocol.

Config keys read from ``configs/env/tabletop.yaml``:
    tasks              "all" or a list of task names / indices into TASKS
    split              "train" | "heldout": which layout seed range episodes draw from
    layout_offset      episode i of a run uses layout ``layout_offset + i`` of the split
    num_layouts        null: every episode a new layout; N: episode i uses layout
                       ``layout_offset + i % N`` (many demos on a few layouts, e.g. a specialist)
    image_size         int or [h, w]
    max_episode_steps  truncation horizon (control steps at 20 Hz)
    start_jitter       m; the gripper starts up to this far from home along x and y, per layout (0 = home)

MuJoCo is imported only when an env is built (``sim.tabletop.env``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sim.tabletop.tasks import TASKS, TaskSpec, get_task


def task_names(env_cfg: Any) -> list[str]:
    selected = env_cfg.get("tasks", "all")
    if selected in (None, "all"):
        return list(TASKS)
    if isinstance(selected, (str, int)):
        selected = [selected]
    if not isinstance(selected, Sequence):
        raise ValueError(f"tasks must be 'all' or a list of task names/indices, got {selected!r}")
    return [_resolve(t) for t in selected]


def task_instruction(suite: str, task: str) -> str | None:
    return TASKS[task].instruction if task in TASKS else None


def make_env(env_cfg: Any, task: str | int, cameras: bool = True):
    from sim.tabletop.env import TabletopEnv

    size = env_cfg.get("image_size", 128)
    return TabletopEnv(
        task=_resolve(task),
        split=env_cfg.get("split", "train"),
        image_size=(size, size) if isinstance(size, int) else (int(size[0]), int(size[1])),
        cameras=cameras,
        max_episode_steps=int(env_cfg.get("max_episode_steps", 200)),
        start_jitter=float(env_cfg.get("start_jitter", 0.0)),
    )


def reset_options(env_cfg: Any, task: str | int, episode_index: int) -> dict:
    """Episode ``i`` uses layout ``layout_offset + i`` (or ``+ i % num_layouts``) of the configured
    split, the same for every task."""
    _resolve(task)
    num_layouts = env_cfg.get("num_layouts", None)
    if num_layouts is not None:
        if int(num_layouts) < 1:
            raise ValueError(f"num_layouts must be null (a new layout per episode) or >= 1, got {num_layouts}")
        episode_index %= int(num_layouts)
    return {"layout": int(env_cfg.get("layout_offset", 0)) + episode_index, "split": env_cfg.get("split", "train")}


def _resolve(task: str | int) -> str:
    if isinstance(task, int):
        names = list(TASKS)
        if not 0 <= task < len(names):
            raise ValueError(f"task index {task} out of range 0..{len(names) - 1}. Valid tasks: {', '.join(names)}")
        return names[task]
    return get_task(task).name


__all__ = ["TASKS", "TaskSpec", "make_env", "reset_options", "task_names"]
