"""Meta-World MT50 as lerobot ships it: task names, instructions, difficulty groups, expert classes.

Read from lerobot's own ``lerobot/envs/metaworld_config.json`` (no metaworld import needed), so the
instructions and groups are exactly the ones lerobot's Meta-World env and eval use:
    easy 28, medium 11, hard 6, very_hard 5 tasks (50 in all).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

GROUPS = ("easy", "medium", "hard", "very_hard")


@dataclass(frozen=True)
class MetaWorldTask:
    name: str  # e.g. "reach-v3"
    instruction: str
    group: str  # lerobot's difficulty group
    expert: str  # class name in metaworld.policies


def config_path() -> Path:
    spec = importlib.util.find_spec("lerobot")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lerobot is not installed (it ships the Meta-World task list)")
    return Path(spec.submodule_search_locations[0]) / "envs" / "metaworld_config.json"


@cache
def all_tasks() -> dict[str, MetaWorldTask]:
    """All MT50 tasks in lerobot's group order (easy, medium, hard, very_hard; within a group as listed)."""
    data = json.loads(config_path().read_text())
    out = {}
    for group in GROUPS:
        for name in data["DIFFICULTY_TO_TASKS"][group]:
            out[name] = MetaWorldTask(name, data["TASK_DESCRIPTIONS"][name], group, data["TASK_POLICY_MAPPING"][name])
    missing = set(data["TASK_DESCRIPTIONS"]) - set(out)
    if missing:
        raise ValueError(f"{config_path()}: tasks without a difficulty group: {sorted(missing)}")
    return out


def groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {g: [] for g in GROUPS}
    for t in all_tasks().values():
        out[t.group].append(t.name)
    return out


def get_task(name: str | int) -> MetaWorldTask:
    known = all_tasks()
    names = list(known)
    if isinstance(name, int) and not isinstance(name, bool):
        if not 0 <= name < len(names):
            raise ValueError(f"task index {name} out of range 0..{len(names) - 1}")
        return known[names[name]]
    key = str(name).removeprefix("metaworld-")
    if key not in known and f"{key}-v3" in known:
        key = f"{key}-v3"
    if key not in known:
        import difflib

        close = difflib.get_close_matches(key, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown Meta-World task '{name}'.{hint} Valid tasks: {', '.join(names)}")
    return known[key]
