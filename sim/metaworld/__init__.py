"""lerobot's Meta-World (metaworld 3.0, MT50) behind the ``sim.factory`` protocol: suite ``metaworld``.

Config keys read from ``configs/env/metaworld.yaml``:
    tasks              "all" (the 50 MT50 tasks), a difficulty group ("easy", "medium", "hard",
                       "very_hard", lerobot's), or a list of task names / indices / groups
    split              "train" | "heldout": which layout seed range episodes draw from
    layout_offset      episode i of a run uses layout ``layout_offset + i`` of the split
    image_size         int or [h, w] of the camera (rendered at that size)
    max_episode_steps  truncation horizon (control steps; lerobot's episode_length is 400, Meta-World's cap 500)

``task_groups(env_cfg)`` maps each difficulty group to its selected tasks (what `vla experts`
reports per group). metaworld is imported only when an env is built; without it the error names
the extra to install (``pip install -e ".[metaworld]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sim.metaworld.tasks import GROUPS, all_tasks, get_task, groups


def task_names(env_cfg: Any) -> list[str]:
    selected = env_cfg.get("tasks", "all")
    if selected in (None, "all"):
        return list(all_tasks())
    if isinstance(selected, (str, int)):
        selected = [selected]
    if not isinstance(selected, Sequence) and not hasattr(selected, "__iter__"):
        raise ValueError(f"tasks must be 'all', a group or a list of task names/indices, got {selected!r}")
    out: list[str] = []
    for t in selected:
        names = groups()[t] if t in GROUPS else [get_task(t).name]
        out += [n for n in names if n not in out]
    return out


def task_groups(env_cfg: Any) -> dict[str, list[str]]:
    """lerobot's difficulty group -> the selected tasks in it (groups with none left out)."""
    selected = set(task_names(env_cfg))
    return {g: [t for t in names if t in selected] for g, names in groups().items() if selected & set(names)}


def make_env(env_cfg: Any, task: str | int, cameras: bool = True):
    from sim.metaworld.env import MetaWorldEnv

    return MetaWorldEnv(
        task=get_task(task).name,
        split=env_cfg.get("split", "train"),
        image_size=_image_size(env_cfg),
        cameras=cameras,
        max_episode_steps=int(env_cfg.get("max_episode_steps", 400)),
    )


def embodiment(env_cfg: Any):
    """The Sawyer (``env.unwrapped.embodiment``) without building an env."""
    from sim.metaworld.env import embodiment as sawyer

    return sawyer(_image_size(env_cfg))


def reset_options(env_cfg: Any, task: str | int, episode_index: int) -> dict:
    """Episode ``i`` uses layout ``layout_offset + i`` of the configured split: Meta-World's
    object and goal positions drawn with that layout's seed."""
    get_task(task)
    return {"layout": int(env_cfg.get("layout_offset", 0)) + episode_index, "split": env_cfg.get("split", "train")}


def _image_size(env_cfg: Any) -> tuple[int, int]:
    size = env_cfg.get("image_size", [128, 128])
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


__all__ = ["embodiment", "GROUPS", "make_env", "reset_options", "task_groups", "task_names"]
