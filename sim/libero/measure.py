"""Measure the scripted LIBERO expert's success per task over the suite's fixed init states.

    python -m sim.libero.measure --suite libero_spatial --init-states 0:50 --workers 2
    python -m sim.libero.measure --suite libero_object --tasks 0,4 --init-states 0,7,9 --json out.json

Cameras are off (the expert reads simulator state), so an episode takes ~2-5 s. The same numbers
come out of ``vla experts env=libero_spatial`` (generic, through ``sim.factory``); this entry point
adds per-init-state failure lists and a process pool, one task per worker. Episodes and the pool
are the rollout engine's (vla/rollout.py).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def run_task(
    suite: str, task: int | str, init_states: list[int] | None = None, max_steps: int | None = None
) -> dict[str, Any]:
    """Run the expert once from each init state of one task (all states if None)."""
    from sim.experts.libero import LiberoExpert
    from sim.libero.env import LiberoEnv

    env = LiberoEnv(suite=suite, task=task, cameras=False, max_episode_steps=max_steps)
    try:
        expert = LiberoExpert(env)
        states = list(range(env.num_init_states)) if init_states is None else init_states
        steps, failed, start = [], [], time.perf_counter()
        for i in states:
            success, n = run_episode(env, expert, i)
            steps.append(n)
            if not success:
                failed.append(i)
        return {
            "task": env.task_name,
            "index": env.spec_task.index,
            "episodes": len(states),
            "successes": len(states) - len(failed),
            "success_rate": (len(states) - len(failed)) / len(states),
            "mean_steps": sum(steps) / len(steps),
            "failed_init_states": failed,
            "seconds": round(time.perf_counter() - start, 1),
        }
    finally:
        env.close()


def run_episode(env: Any, expert: Any, init_state: int) -> tuple[bool, int]:
    """The expert from one fixed init state (no seed: the state is the episode), at most the env's
    ``max_episode_steps``; returns (success, steps)."""
    from vla.rollout import EpisodeSpec, ExpertAgent
    from vla.rollout import run_episode as rollout

    spec = EpisodeSpec(getattr(env.unwrapped, "task_name", ""), init_state, None, {"init_state": init_state})
    r = rollout(env, ExpertAgent(expert), spec, max_steps=env.max_episode_steps)
    return r.success and r.done, r.length


def measure(suite: str, tasks: list[int | str] | None, init_states: list[int] | None, workers: int = 1) -> list[dict]:
    from sim.libero.suites import suite_tasks

    tasks = [t.index for t in suite_tasks(suite)] if tasks is None else tasks
    from vla.rollout import WorkerPool

    # "spawn": each worker builds its own MuJoCo/EGL state from scratch (fork-safe by construction).
    with WorkerPool(workers if workers > 1 else 0, context="spawn") as pool:
        rows = pool.map(run_task, [(suite, t, init_states) for t in tasks],
                        on_result=(lambda job, row: _report(row)) if workers <= 1 else None)
    return rows if workers <= 1 else [_report(r) for r in rows]


def _report(row: dict) -> dict:
    print(
        f"[{row['index']}] {row['task']}: {row['successes']}/{row['episodes']} "
        f"(mean {row['mean_steps']:.0f} steps, failed {row['failed_init_states']}, {row['seconds']} s)",
        flush=True,
    )
    return row


def markdown(suite: str, rows: list[dict]) -> str:
    lines = [f"| {suite} task | success | mean steps | failed init states |", "|---|---|---|---|"]
    for r in rows:
        cells = [f"{r['index']}: {r['task']}", f"{r['successes']}/{r['episodes']}", f"{r['mean_steps']:.0f}"]
        lines.append("| " + " | ".join([*cells, str(r["failed_init_states"] or "-")]) + " |")
    total = sum(r["episodes"] for r in rows)
    ok = sum(r["successes"] for r in rows)
    lines.append(f"| **overall** | {ok}/{total} ({ok / max(total, 1):.1%}) | | |")
    return "\n".join(lines)


def _parse_ids(text: str | None) -> list[int] | None:
    """"all" | "a:b" | "1,4,7"."""
    if text is None or text == "all":
        return None
    if ":" in text:
        a, b = text.split(":")
        return list(range(int(a), int(b)))
    return [int(t) for t in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--tasks", default=None, help="comma-separated task indices (default: all)")
    parser.add_argument("--init-states", default="0:10", help='"all", "a:b" or "1,4,7"')
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = measure(args.suite, _parse_ids(args.tasks), _parse_ids(args.init_states), args.workers)
    print("\n" + markdown(args.suite, rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"suite": args.suite, "tasks": rows}, f, indent=2)


if __name__ == "__main__":
    main()
