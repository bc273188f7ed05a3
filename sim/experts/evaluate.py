"""`vla experts`: run each task's scripted expert and report per-task success.

    vla experts env=tabletop                                  # 20 episodes/task, held-out layouts
    vla experts env=tabletop episodes_per_task=50 split=train tasks=[stack_red_on_green]
    vla experts env=libero_spatial episodes_per_task=10
    vla experts env=metaworld episodes_per_task=5              # MT50: per task and per difficulty group

Works for any suite through ``sim.factory``; episode i of a task uses
``reset_options(env_cfg, task, i)`` (tabletop: layout i of the split, LIBERO: init state i) and the
reset seed ``seed + i``; the episodes run through the rollout engine (vla/rollout.py).
Writes ``experts.json`` and ``experts.md`` to the Hydra run dir (outputs/experts/<time>/).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sim import factory
from sim.experts import make_expert
from vla.rollout import EpisodeSpec, ExpertAgent, Progress
from vla.rollout import run_episode as rollout


def main(cfg: DictConfig) -> dict:
    env_cfg = _env_config(cfg)
    tasks = factory.task_names(env_cfg)
    if cfg.episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {cfg.episodes_per_task}")
    start = time.perf_counter()
    rows = []
    with tqdm(total=len(tasks) * cfg.episodes_per_task, desc="experts", unit="ep") as bar:
        progress = Progress(bar)
        for task in tasks:
            rows.append(_run_task(cfg, env_cfg, task, progress))
    report = {
        "suite": env_cfg.suite,
        "split": env_cfg.get("split"),
        "episodes_per_task": int(cfg.episodes_per_task),
        "noise": float(cfg.noise),
        "tasks": rows,
        "groups": _groups(env_cfg, rows),
        "overall": _overall(rows),
        "seconds": round(time.perf_counter() - start, 1),
        "command": _command(cfg, env_cfg),
    }
    table = markdown_table(
        ["task", "episodes", "successes", "rate", "mean steps"],
        [[r["task"], r["episodes"], r["successes"], f"{r['success_rate']:.2f}", f"{r['mean_steps']:.1f}"] for r in rows]
        + [[f"**{g['group']}** ({_n_tasks(len(g['tasks']))})", *_overall_cells(g)] for g in report["groups"]]
        + [["**overall**", *_overall_cells(report["overall"])]],
    )
    split = f" (split: {report['split']})" if report["split"] else ""
    print(f"\nScripted experts on {env_cfg.suite}{split}:\n\n{table}", flush=True)
    paths = write_report(run_dir("experts"), "experts", report, _markdown(report, table))
    # Flush: LIBERO/robosuite teardown can end the process before buffered stdout is written.
    print(f"\nwrote {', '.join(map(str, paths))}\nreproduce: {report['command']}", flush=True)
    return report


def _env_config(cfg: DictConfig) -> DictConfig:
    """The env config with the command-level `split` / `tasks` overrides applied."""
    env_cfg = OmegaConf.create(OmegaConf.to_container(cfg.env, resolve=True))
    if cfg.get("split") is not None and "split" in env_cfg:  # suites without layout splits ignore it
        env_cfg.split = cfg.split
    if cfg.get("tasks") is not None:
        env_cfg.tasks = cfg.tasks
    return env_cfg


def _run_task(cfg: DictConfig, env_cfg: DictConfig, task: str, progress: Progress) -> dict:
    env = factory.make_env(env_cfg, task, cameras=bool(cfg.cameras))
    try:
        # The noisy expert draws from one generator per task (seeded once), not one per episode.
        kwargs = {"noise": float(cfg.noise), "seed": int(cfg.seed)} if cfg.noise else {}
        agent = ExpertAgent(make_expert(env, **kwargs))
        steps, successes, failed = [], 0, []
        for i in range(cfg.episodes_per_task):
            spec = EpisodeSpec(task, i, int(cfg.seed) + i, factory.reset_options(env_cfg, task, i))
            r = rollout(env, agent, spec, subscribers=[progress])
            successes += r.success
            steps.append(r.length)
            if not r.success:
                failed.append(i)
        instruction = getattr(env.unwrapped, "task_description", task)
    finally:
        env.close()
    return {
        "task": task,
        "instruction": instruction,
        "episodes": len(steps),
        "successes": successes,
        "success_rate": successes / len(steps),
        "mean_steps": float(np.mean(steps)),
        "failed_episodes": failed,
    }


def run_episode(env: Any, expert: Any, options: dict, seed: int) -> tuple[bool, int]:
    """One expert rollout through the rollout engine (reset with ``seed`` and ``options``, the
    expert reset without a seed); returns (success, control steps taken)."""
    r = rollout(env, ExpertAgent(expert), EpisodeSpec("", 0, seed, options))
    return r.success, r.length


def _overall(rows: list[dict]) -> dict:
    episodes = sum(r["episodes"] for r in rows)
    successes = sum(r["successes"] for r in rows)
    return {
        "episodes": episodes,
        "successes": successes,
        "success_rate": successes / episodes if episodes else 0.0,
        "mean_steps": float(sum(r["mean_steps"] * r["episodes"] for r in rows) / episodes) if episodes else 0.0,
        "min_task_success_rate": min((r["success_rate"] for r in rows), default=0.0),
    }


def _groups(env_cfg: DictConfig, rows: list[dict]) -> list[dict]:
    """Per task group, for suites that group their tasks (``task_groups(env_cfg)`` in the suite module,
    e.g. Meta-World's difficulty groups): the same totals as ``overall`` over the group's tasks."""
    task_groups = getattr(factory.suite_module(env_cfg), "task_groups", None)
    if task_groups is None:
        return []
    by_task = {r["task"]: r for r in rows}
    out = []
    for group, tasks in task_groups(env_cfg).items():
        members = [by_task[t] for t in tasks if t in by_task]
        if members:
            out.append({"group": group, "tasks": [r["task"] for r in members], **_overall(members)})
    return out


def _n_tasks(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


def _overall_cells(o: dict) -> list[str]:
    return [str(o["episodes"]), str(o["successes"]), f"{o['success_rate']:.2f}", f"{o['mean_steps']:.1f}"]


def _command(cfg: DictConfig, env_cfg: DictConfig) -> str:
    parts = [f"vla experts env={env_cfg.suite}", f"episodes_per_task={cfg.episodes_per_task}"]
    if env_cfg.get("split") is not None:
        parts.append(f"split={env_cfg.split}")
    if cfg.get("tasks") is not None:
        parts.append("tasks=[" + ",".join(map(str, cfg.tasks)) + "]")
    if cfg.noise:
        parts.append(f"noise={cfg.noise}")
    return " ".join(parts)


def _markdown(report: dict, table: str) -> str:
    return (
        f"# Scripted experts: {report['suite']}\n\n"
        f"- split: {report['split']}, episodes per task: {report['episodes_per_task']}, noise: {report['noise']}\n"
        f"- wall time: {report['seconds']} s\n- reproduce: `{report['command']}`\n\n{table}\n"
    )


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out_dir: Path, stem: str, report: dict, markdown: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown)
    return [json_path, md_path]


def run_dir(command: str) -> Path:
    """The Hydra run dir when run through `vla`, else outputs/<command> (called from Python)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs") / command
