"""LIBERO suite metadata: names, standard episode lengths, task lookup and fixed init states."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from sim.libero.offline import ensure_libero

# Standard evaluation horizons (OpenVLA / openpi LIBERO eval scripts: longest training demo plus
# margin). lerobot's wrapper uses 280 for libero_spatial; we keep the widely reported 220.
MAX_EPISODE_STEPS: dict[str, int] = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
SUITES: tuple[str, ...] = tuple(MAX_EPISODE_STEPS)


@dataclass(frozen=True)
class TaskSpec:
    suite: str
    index: int
    name: str  # LIBERO's task name (the bddl file stem), e.g. "pick_up_the_ketchup_and_place_it_in_the_basket"
    language: str  # the instruction shown to the policy
    bddl_file: Path
    init_states_file: Path


def check_suite(suite: str) -> str:
    if suite not in MAX_EPISODE_STEPS:
        raise ValueError(f"unknown LIBERO suite '{suite}'. Valid suites: {', '.join(SUITES)}")
    return suite


@cache
def suite_tasks(suite: str) -> tuple[TaskSpec, ...]:
    """All tasks of a suite in LIBERO's standard order (task_order_index=0)."""
    check_suite(suite)
    ensure_libero()
    from libero.libero import benchmark, get_libero_path

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "[info] using task orders ..."
        bench = benchmark.get_benchmark_dict()[suite]()
    bddl_root = Path(get_libero_path("bddl_files"))
    init_root = Path(get_libero_path("init_states"))
    return tuple(
        TaskSpec(
            suite=suite,
            index=i,
            name=t.name,
            language=t.language,
            bddl_file=bddl_root / t.problem_folder / t.bddl_file,
            init_states_file=init_root / t.problem_folder / t.init_states_file,
        )
        for i, t in enumerate(bench.tasks)
    )


def get_task(suite: str, task: str | int) -> TaskSpec:
    """Resolve a task given by name, by instruction, or by index (int or digit string)."""
    tasks = suite_tasks(suite)
    if isinstance(task, (int, np.integer)) or (isinstance(task, str) and task.isdigit()):
        idx = int(task)
        if 0 <= idx < len(tasks):
            return tasks[idx]
        raise ValueError(f"task index {idx} out of range for {suite} (0..{len(tasks) - 1})")
    for spec in tasks:
        if task in (spec.name, spec.language):
            return spec
    valid = "\n  ".join(f"{t.index}: {t.name}" for t in tasks)
    raise ValueError(f"unknown task '{task}' in suite {suite}. Valid tasks:\n  {valid}")


@cache
def load_init_states(suite: str, task_index: int) -> np.ndarray:
    """The task's fixed benchmark init states, [n_states, state_dim] flattened MuJoCo states."""
    import torch

    spec = suite_tasks(suite)[task_index]
    # These files are numpy arrays pickled by torch.save; weights_only=False is required (trusted,
    # installed package data).
    states = torch.load(spec.init_states_file, weights_only=False)  # nosec B614
    return np.asarray(states, dtype=np.float64)
