"""The tabletop task table: each task is one instruction template instance on the shared layouts.

Families (every layout holds all objects, so the instruction alone picks object and target):
    place   "put the <cube> cube on the <plate> plate"
    stack   "stack the <cube> cube on the <cube> cube"
    bowl    "put the <cube> cube in the bowl"
    push    "push the <cube> cube to the <left|right>"   (left = world -y, as seen by agentview)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str  # place | stack | bowl | push
    obj: str  # body name of the object to move, e.g. "red_cube"
    target: str  # target body ("blue_plate", "green_cube", "bowl"), or "left"/"right" for push
    instruction: str


def _place(cube: str, plate: str) -> TaskSpec:
    instruction = f"put the {cube} cube on the {plate} plate"
    return TaskSpec(f"place_{cube}_on_{plate}_plate", "place", f"{cube}_cube", f"{plate}_plate", instruction)


def _stack(cube: str, base: str) -> TaskSpec:
    instruction = f"stack the {cube} cube on the {base} cube"
    return TaskSpec(f"stack_{cube}_on_{base}", "stack", f"{cube}_cube", f"{base}_cube", instruction)


def _bowl(cube: str) -> TaskSpec:
    return TaskSpec(f"{cube}_in_bowl", "bowl", f"{cube}_cube", "bowl", f"put the {cube} cube in the bowl")


def _push(cube: str, side: str) -> TaskSpec:
    return TaskSpec(f"push_{cube}_{side}", "push", f"{cube}_cube", side, f"push the {cube} cube to the {side}")


_ALL = [
    _place("red", "blue"),
    _place("green", "pink"),
    _place("yellow", "blue"),
    _place("red", "pink"),
    _stack("red", "green"),
    _stack("green", "yellow"),
    _stack("yellow", "red"),
    _bowl("green"),
    _bowl("yellow"),
    _bowl("red"),
    _push("red", "left"),
    _push("green", "right"),
    _push("yellow", "left"),
]

TASKS: dict[str, TaskSpec] = {t.name: t for t in _ALL}
assert len(TASKS) == len(_ALL), "task names must be unique"
assert len({t.instruction for t in _ALL}) == len(_ALL), "instructions must be unique"


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown tabletop task '{name}'. Valid tasks: {', '.join(TASKS)}")
    return TASKS[name]
