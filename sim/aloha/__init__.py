"""lerobot's ALOHA sim (gym-aloha) behind the ``sim.factory`` protocol: suites ``aloha_transfer_cube``
and ``aloha_insertion`` (one task each), the bimanual 14-joint robot (``sim.aloha.env``).

Config keys read from ``configs/env/aloha_*.yaml``:
    suite              aloha_transfer_cube | aloha_insertion
    tasks              "all" or a list of task names / indices (the suite's one task)
    split              "train" | "heldout": which layout seed range episodes draw from
    layout_offset      episode i of a run uses layout ``layout_offset + i`` of the split
    image_size         int or [h, w] of the ``top`` camera (default 120x160; gym-aloha renders 480x640)
    max_episode_steps  truncation horizon (control steps at 50 Hz; ACT and lerobot use 400)

gym-aloha and dm_control are imported only when an env is built; without them the error names the
extra to install (``pip install -e ".[aloha]"``).
"""

from __future__ import annotations

from typing import Any

SUITE_TASKS = {"aloha_transfer_cube": "transfer_cube", "aloha_insertion": "insertion"}


def _suite_task(env_cfg: Any) -> str:
    suite = env_cfg.get("suite")
    if suite not in SUITE_TASKS:
        raise ValueError(f"unknown ALOHA suite '{suite}'. Valid suites: {', '.join(SUITE_TASKS)}")
    return SUITE_TASKS[suite]


def task_names(env_cfg: Any) -> list[str]:
    task = _suite_task(env_cfg)
    selected = env_cfg.get("tasks", "all")
    if selected in (None, "all"):
        return [task]
    if isinstance(selected, (str, int)):
        selected = [selected]
    return [_resolve(env_cfg, t) for t in selected]


def make_env(env_cfg: Any, task: str | int, cameras: bool = True):
    from sim.aloha.env import AlohaEnv

    return AlohaEnv(
        task=_resolve(env_cfg, task),
        split=env_cfg.get("split", "train"),
        image_size=_image_size(env_cfg),
        cameras=cameras,
        max_episode_steps=int(env_cfg.get("max_episode_steps", 400)),
    )


def embodiment(env_cfg: Any):
    """The robot (``env.unwrapped.embodiment``) without building an env (joint limits from the XML)."""
    from sim.aloha.env import scene_embodiment

    return scene_embodiment(_suite_task(env_cfg), _image_size(env_cfg))


def reset_options(env_cfg: Any, task: str | int, episode_index: int) -> dict:
    """Episode ``i`` uses layout ``layout_offset + i`` of the configured split (object poses drawn
    from gym-aloha's ranges with that layout's seed)."""
    _resolve(env_cfg, task)
    return {"layout": int(env_cfg.get("layout_offset", 0)) + episode_index, "split": env_cfg.get("split", "train")}


def _image_size(env_cfg: Any) -> tuple[int, int]:
    size = env_cfg.get("image_size", [120, 160])
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _resolve(env_cfg: Any, task: str | int) -> str:
    name = _suite_task(env_cfg)
    if task in (name, 0):
        return name
    raise ValueError(f"unknown task {task!r} for suite '{env_cfg.get('suite')}'. Valid tasks: {name}")


__all__ = ["SUITE_TASKS", "embodiment", "make_env", "reset_options", "task_names"]
