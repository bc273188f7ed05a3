"""`vla collect`: record scripted-expert demonstrations as a LeRobot v3.0 dataset.

    vla collect env=tabletop episodes_per_task=50 workers=2
    vla collect env=libero_spatial episodes_per_task=20 tasks=[<task>,<task>] root=/data/spatial

* ``episodes_per_task`` = N is the number of *kept* episodes per task. Episode ``i`` of a task
  starts from ``sim.factory.reset_options(env_cfg, task, i)`` with the seed derived from
  (``seed``, task, i). Indices are tried in order 0, 1, 2, ... until N are kept; failed attempts are
  dropped (unless ``keep_failed=true``) and never retried. A task gives up after
  ``max_attempts_per_task`` attempts. Because a new index is only handed out while
  kept + in-flight < N, the set of (task, episode) pairs is the same for any number of workers.
* Every step is recorded as (observation before the step, action taken): the env's cameras as video
  features, ``observation.state``, ``action`` and ``task`` = the instruction, shaped by the env's
  robot (``env.unwrapped.embodiment``: 2 cameras, 8 / 7 for the tabletop/LIBERO arm; ``top``,
  14 / 14 for ALOHA; ``top``, 4 / 4 for Meta-World); fps comes from the env config. ``action_label=intended`` records instead the action the expert meant
  before its motion noise (``+expert_kwargs.noise``), while the env still executes the noisy one:
  DART-style demos, diverse states with clean labels.
* ``root`` defaults to ``outputs/datasets/<env suite>`` (relative to the working directory) and
  ``repo_id`` to ``local/vla_<env suite>``. Rerunning with the same root resumes: done
  (task, episode) pairs are read from the dataset's ledger and skipped, so the run ends with N
  kept episodes per task. A root recorded with a different env / fps / features / seed / expert is
  an error naming the difference.
* ``workers`` = K simulation processes (spawn context; 0 = in this process) produce episodes into a
  staging area; this process alone writes the dataset, committing every ``commit_interval_s``.
  The process tree may be SIGKILLed at any time: ``root`` always opens with
  ``LeRobotDataset(repo_id, root=root)`` and a rerun completes it (how: ``sim/dataset.py``).
  Ctrl-C / errors stop at once without a final commit; finished episodes stay staged on disk
  and the next run commits them first. Dataset episode order follows completion order; the
  ledger ``<root>/meta/vla_episodes.jsonl`` maps each dataset episode to (task, episode index).
* Throughput: workers simulate + stage in parallel; the single writer encodes (~1 s per 40-frame
  2x128x128 episode on 2 busy cores). Measured on 2 cores shared with other jobs (load ~8):
  tabletop 45 kept episodes/min with workers=1, 51 with workers=2 (writer-bound). LIBERO-Spatial on
  the 2 cores alone: 11.4 kept episodes/min with workers=2 (370 episodes of ~100 steps in 32 min;
  simulation + rendering-bound, so workers are what scales).
* Outputs: the dataset, and in the Hydra run dir and ``<root>/meta/``: ``vla_summary.json|md``
  (episodes/frames per task, instructions, expert success rate, fps, features) and one sample
  rollout MP4 per task (its first kept episode, cameras side by side, instruction on every frame).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import shlex
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sim.dataset import (
    SAMPLE_VIDEO_DIR,
    SUMMARY_JSON,
    SUMMARY_MD,
    Attempt,
    DatasetStore,
    Episode,
    dataset_features,
    default_repo_id,
    episode_frames,
    image_size_of,
    load_staged,
    stage_episode,
)
from vla.rollout import STEP_GUARD, DatasetRecorder, EnvCache, WorkerPool, episode_seed  # noqa: F401  (the engine)
from vla.training.settings import number  # the one "key=value must be an integer in [a, b]" check
# Env config keys that select what to run rather than what an episode is: not part of the fingerprint.
SELECTION_KEYS = ("tasks",)


# ── the plan: validated settings ───────────────────────────────────────────────────────────


@dataclass
class CollectPlan:
    env_cfg: dict
    env_name: str
    tasks: list[str]
    episodes_per_task: int
    max_attempts_per_task: int
    workers: int
    keep_failed: bool
    seed: int
    root: Path
    repo_id: str
    fps: int
    image_size: tuple[int, int]
    expert: str
    expert_kwargs: dict
    action_label: str
    max_steps: int | None
    commit_interval_s: float
    compact: bool
    videos: bool
    features: dict = field(default_factory=dict)
    embodiment: dict | None = None  # the robot as data, written beside the dataset's info.json

    def fingerprint(self) -> dict:
        """What must match for two runs to write into the same dataset."""
        env = {k: v for k, v in self.env_cfg.items() if k not in SELECTION_KEYS}
        if not env.get("start_jitter"):  # the default: datasets recorded before the option still match
            env.pop("start_jitter", None)
        features = {k: {"dtype": v["dtype"], "shape": list(v["shape"])} for k, v in self.features.items()}
        return {
            "repo_id": self.repo_id, "env": self.env_name, "env_config": env, "fps": self.fps,
            "robot_type": f"vla_{self.env_name}", "features": features, "seed": self.seed, "expert": self.expert_spec(),
            # Only when not the default, so datasets recorded before the option existed still match.
            **({"action_label": self.action_label} if self.action_label != "executed" else {}),
        }

    def expert_spec(self) -> str:
        """The expert and its options as one string, e.g. ``sim.experts:make_expert(max_speed=0.5)``
        (no parentheses without options, so datasets recorded before options existed still match)."""
        if not self.expert_kwargs:
            return self.expert
        return f"{self.expert}({', '.join(f'{k}={v!r}' for k, v in sorted(self.expert_kwargs.items()))})"


def plain_dict(value: Any) -> dict:
    """A config node (or None / a mapping) as a plain dict."""
    if value is None:
        return {}
    return dict(OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)


def _env_fps(env_cfg: DictConfig) -> int:
    """The env config's ``fps``; else the env's ``metadata["render_fps"]`` (builds one env, no cameras)."""
    if env_cfg.get("fps") is not None:
        return int(env_cfg.fps)
    from sim.factory import make_env, task_names

    env = make_env(env_cfg, task_names(env_cfg)[0], cameras=False)
    try:
        fps = env.unwrapped.metadata.get("render_fps")
    finally:
        env.close()
    if not fps:
        raise ValueError(f"env '{env_cfg.suite}' declares no fps: add `fps:` to its configs/env/ YAML")
    return int(fps)


def make_plan(cfg: DictConfig) -> CollectPlan:
    """Validate the composed config into a plan; every error names the bad value and the choices."""
    from sim.factory import SUITES, select_tasks, task_names

    env_cfg = cfg.env
    suite = env_cfg.get("suite")
    if suite not in SUITES:
        raise ValueError(f"env.suite '{suite}' is not a known suite. Valid suites: {', '.join(SUITES)}")
    n = number("episodes_per_task", cfg.episodes_per_task, int, 1)
    image_size = env_image_size(env_cfg)
    plan = CollectPlan(
        env_cfg=OmegaConf.to_container(env_cfg, resolve=True),
        env_name=str(suite),
        tasks=select_tasks(cfg.get("tasks"), task_names(env_cfg)),
        episodes_per_task=n,
        max_attempts_per_task=number("max_attempts_per_task", cfg.max_attempts_per_task or 2 * n + 10, int, 1),
        workers=number("workers", cfg.workers, int, 0),
        keep_failed=bool(cfg.keep_failed),
        seed=number("seed", cfg.seed, int, 0),
        root=Path(cfg.root or f"outputs/datasets/{suite}").absolute(),
        repo_id=str(cfg.repo_id or default_repo_id(str(suite))),
        fps=_env_fps(env_cfg),
        image_size=image_size,
        expert=str(cfg.expert),
        expert_kwargs=plain_dict(cfg.get("expert_kwargs")),
        action_label=str(cfg.get("action_label", "executed")),
        max_steps=number("max_steps", cfg.max_steps, int, 1) if cfg.get("max_steps") else None,
        commit_interval_s=number("commit_interval_s", cfg.commit_interval_s, float, 0.0),
        compact=bool(cfg.compact),
        videos=bool(cfg.videos),
    )
    if plan.action_label not in ACTION_LABELS:
        raise ValueError(f"action_label '{plan.action_label}' is not one of: {', '.join(ACTION_LABELS)}")
    if plan.max_attempts_per_task < n:
        raise ValueError(f"max_attempts_per_task ({plan.max_attempts_per_task}) < episodes_per_task ({n})")
    from sim.factory import embodiment

    robot = embodiment(env_cfg)  # the suite's robot
    plan.features, plan.embodiment = dataset_features(robot), robot.to_dict()
    return plan


def env_image_size(env_cfg: Any) -> tuple[int, int]:
    """``env.image_size`` (an int or [height, width]) as positive ints, named when it is not
    (``env.image_size=0`` used to fail deep inside torch, after the env was built)."""
    if "image_size" not in env_cfg:
        return image_size_of(env_cfg)  # its default
    value = env_cfg.get("image_size")
    sizes = value if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else [value]
    if value is None or len(sizes) not in (1, 2):
        raise ValueError(f"env.image_size={value!r} must be an integer or [height, width]")
    for size in sizes:
        number("env.image_size", size, int, 1, 4096)
    return image_size_of(env_cfg)


# ── one episode ────────────────────────────────────────────────────────────────────────────


ACTION_LABELS = DatasetRecorder.LABELS


def record_episode(
    env: Any, expert: Any, env_cfg: Any, task: str, episode_index: int, seed: int,
    keep_failed: bool = False, max_steps: int | None = None, action_label: str = "executed",
) -> Episode:
    """Run the expert for one episode through the rollout engine (vla/rollout.py: episode ``i`` =
    ``reset_options(env_cfg, task, i)`` with the seed derived from (``seed``, task, i), the expert
    reset with it) and return every (observation, action) step; the recorded action is the executed
    one (checked and clipped into the robot's limits), or with ``action_label="intended"`` the
    expert's noise-free one."""
    from vla.rollout import ExpertAgent, episode_spec, run_episode

    recorder = DatasetRecorder(action_label, expert)
    r = run_episode(env, ExpertAgent(expert), episode_spec(env_cfg, task, episode_index, seed),
                    max_steps=max_steps, subscribers=[recorder])
    images, states, actions = recorder.arrays()
    attempt = Attempt(task, episode_index, r.success, r.success or keep_failed, r.seed, r.length, r.instruction)
    return Episode(attempt, images, states, actions)


# ── simulation workers (one env per process, reused while the task stays the same) ─────────

_WORKER: dict[str, Any] = {}


def _init_worker(settings: dict) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sim  # noqa: F401  (registers the gym ids)

    _close_worker_env()
    _WORKER.update(settings, envs=EnvCache(_build_env))


def _close_worker_env() -> None:
    if _WORKER.get("envs") is not None:
        _WORKER["envs"].close()


def _build_env(task: str) -> tuple[Any, Any]:
    from sim.factory import make_env

    module, func = _WORKER["expert"].split(":")
    env = make_env(OmegaConf.create(_WORKER["env_cfg"]), task, cameras=True)
    try:
        expert = getattr(importlib.import_module(module), func)(env, **_WORKER["expert_kwargs"])
    except BaseException:
        env.close()
        raise
    return env, expert


def _worker_job(task: str, episode_index: int) -> tuple[Attempt, str, float]:
    """Record one episode and stage it; returns its attempt, the staged file and the seconds spent."""
    start = time.monotonic()
    env, expert = _WORKER["envs"].get(task)
    episode = record_episode(
        env, expert, _WORKER["env_cfg"], task, episode_index, _WORKER["seed"],
        _WORKER["keep_failed"], _WORKER["max_steps"], _WORKER["action_label"],
    )
    if episode.attempt.kept:
        episode.check(_WORKER["features"])  # fail in the worker, with the episode named
    path = stage_episode(episode, Path(_WORKER["staging"]))
    return episode.attempt, str(path), time.monotonic() - start


# ── scheduling ─────────────────────────────────────────────────────────────────────────────


@dataclass
class _TaskState:
    done: dict[int, Attempt] = field(default_factory=dict)
    inflight: set[int] = field(default_factory=set)

    @property
    def kept(self) -> int:
        return sum(a.kept for a in self.done.values())

    def next_free(self) -> int:
        i = 0
        while i in self.done or i in self.inflight:
            i += 1
        return i


class Scheduler:
    """Hands out (task, episode) jobs: lowest untried index first, while kept + in-flight < N."""

    def __init__(self, tasks: list[str], target: int, max_attempts: int, done: Iterable[Attempt]):
        self.target, self.max_attempts = target, max_attempts
        self.state = {t: _TaskState() for t in tasks}
        for a in done:
            if a.task in self.state:
                self.state[a.task].done[a.episode] = a

    def next_jobs(self) -> list[tuple[str, int]]:
        jobs = []
        for task, st in self.state.items():
            while st.kept + len(st.inflight) < self.target and len(st.done) + len(st.inflight) < self.max_attempts:
                i = st.next_free()
                st.inflight.add(i)
                jobs.append((task, i))
        return jobs

    def record(self, attempt: Attempt) -> None:
        st = self.state[attempt.task]
        st.inflight.discard(attempt.episode)
        st.done[attempt.episode] = attempt

    def kept_capped(self) -> int:
        return sum(min(st.kept, self.target) for st in self.state.values())

    def gave_up(self) -> list[str]:
        return [t for t, st in self.state.items() if st.kept < self.target and not st.inflight]


class _Run:
    """This run's bookkeeping: progress bar, staged-but-uncommitted files, periodic commits."""

    def __init__(self, plan: CollectPlan, store: DatasetStore, sched: Scheduler):
        self.plan, self.store, self.sched = plan, store, sched
        self.pending: list[Path] = store.staged()
        self.attempts: list[Attempt] = []
        self.sim_s = self.write_s = 0.0  # worker time per episode (sim + staging) / writer time in commits
        self.committed_kept = 0  # episodes written this run (includes ones staged by a killed run)
        self.start = time.monotonic()
        self.last_commit = -math.inf  # episodes staged by a killed run go in at the first chance
        self.pbar = tqdm(
            total=plan.episodes_per_task * len(plan.tasks), initial=sched.kept_capped(),
            desc=f"collect {plan.env_name}", unit="ep", dynamic_ncols=True,
        )

    def episode_done(self, attempt: Attempt, path: str, seconds: float) -> None:
        self.sim_s += seconds
        self.sched.record(attempt)
        self.attempts.append(attempt)
        self.pending.append(Path(path))
        self.pbar.n = self.sched.kept_capped()
        self._postfix()

    def _postfix(self) -> None:
        ok = sum(a.success for a in self.attempts)
        self.pbar.set_postfix_str(
            f"success {ok}/{len(self.attempts)}, written {self.committed_kept}, staged {len(self.pending)}"
        )

    def maybe_commit(self, force: bool = False) -> None:
        if not self.pending or (not force and time.monotonic() - self.last_commit < self.plan.commit_interval_s):
            return
        # In slices: when simulation outpaces encoding, a single commit of everything staged ran
        # for minutes with the bar frozen at 100 %; slices show progress and bound a kill's redo.
        while self.pending:
            start, before = time.monotonic(), len(self.pending)
            self.committed_kept += sum(a.kept for a in self.store.commit(self.pending[:COMMIT_MAX_EPISODES]))
            self.write_s += time.monotonic() - start
            # Files still present were not committable yet (dropped failures before the dataset exists).
            self.pending = [p for p in self.pending if p.exists()]
            self._postfix()
            if len(self.pending) == before:
                break
        self.last_commit = time.monotonic()

    def close(self) -> None:
        self.pbar.close()


COMMIT_MAX_EPISODES = 100  # staged episodes written per dataset commit


def _worker_settings(plan: CollectPlan, store: DatasetStore) -> dict:
    return {
        "env_cfg": plan.env_cfg, "expert": plan.expert, "expert_kwargs": plan.expert_kwargs, "seed": plan.seed, "keep_failed": plan.keep_failed,
        "action_label": plan.action_label, "max_steps": plan.max_steps, "image_size": list(plan.image_size), "features": plan.features, "staging": str(store.staging),
    }


def _run_jobs(run: _Run, settings: dict, workers: int) -> None:
    """The scheduler's jobs through the rollout engine's worker pool (``workers`` spawned processes
    that die with this one; 0 = in this process), committing between results."""
    pool = WorkerPool(workers, _init_worker, (settings,), context="spawn", cleanup=_close_worker_env)
    with pool:
        pool.stream(_worker_job, run.sched.next_jobs, lambda job, result: run.episode_done(*result),
                    tick=run.maybe_commit)


# ── the command ────────────────────────────────────────────────────────────────────────────


@dataclass
class CollectResult:
    root: Path
    repo_id: str
    summary: dict
    summary_paths: list[Path]
    video_paths: list[Path]
    attempts: list[Attempt]  # this run's attempts
    wall_s: float


def collect(cfg: DictConfig, run_dir: str | Path, command: str | None = None,
            plan: CollectPlan | None = None) -> CollectResult:
    """Run a collection as described in the module docstring; returns paths and the summary.
    ``plan``: ``make_plan(cfg)`` when the caller validated it already."""
    logging.getLogger("lerobot").setLevel(logging.WARNING)  # per-episode INFO lines drown the bar
    plan = plan or make_plan(cfg)
    run_dir = Path(run_dir)
    command = command or reproduce_command(plan)
    store = DatasetStore(plan.root, plan.repo_id, plan.fps, plan.features, plan.fingerprint(),
                         embodiment=plan.embodiment)
    with store:
        done = store.ledger() + [load_staged(p, frames=False).attempt for p in store.staged()]
        sched = Scheduler(plan.tasks, plan.episodes_per_task, plan.max_attempts_per_task, done)
        run = _Run(plan, store, sched)
        try:
            settings = _worker_settings(plan, store)
            if plan.workers > 0:
                # lerobot + torch take seconds to import; overlap that with the workers' start-up
                # instead of stalling the first commit (the main thread is idle meanwhile).
                threading.Thread(target=importlib.import_module, args=("lerobot.datasets",), daemon=True).start()
            _run_jobs(run, settings, plan.workers)
            run.maybe_commit(force=True)
        except BaseException:
            # No final commit on Ctrl-C / errors: exit fast. Finished episodes are staged on disk.
            tqdm.write(f"\nstopped: {len(store.staged())} finished episode(s) are staged in {store.staging}; "
                       "rerun the same command to commit them and continue")
            raise
        finally:
            run.close()
        wall = time.monotonic() - run.start
        if not store.exists():
            # Nothing to resume into: forget the failures so a rerun (e.g. after fixing the
            # expert) tries these episodes again instead of counting them as done.
            for path in store.staged():
                path.unlink()
            raise RuntimeError(
                f"the expert kept 0 of {len(run.attempts)} attempts (max_attempts_per_task="
                f"{plan.max_attempts_per_task}), so no dataset was written at {plan.root}"
            )
        start = time.monotonic()
        if plan.compact:
            store.compact()
        summary = build_summary(plan, store, _run_stats(run, wall, time.monotonic() - start), command)
        videos = write_sample_videos(plan, store, summary, run_dir) if plan.videos else []
        paths = write_summary(summary, store, run_dir)
    _print_report(plan, summary, sched, run.attempts, paths, videos, command)
    return CollectResult(plan.root, plan.repo_id, summary, paths, videos, run.attempts, wall)


def reproduce_command(plan: CollectPlan) -> str:
    args = [
        f"env={plan.env_name}", f"episodes_per_task={plan.episodes_per_task}", f"workers={plan.workers}",
        f"tasks=[{','.join(plan.tasks)}]", f"root={plan.root}", f"seed={plan.seed}",
        f"keep_failed={str(plan.keep_failed).lower()}", f"action_label={plan.action_label}",
        *(f"+expert_kwargs.{k}={v}" for k, v in sorted(plan.expert_kwargs.items())),
    ]
    return "vla collect " + " ".join(shlex.quote(a) for a in args)


def compose_config(overrides: Iterable[str] = ()) -> DictConfig:
    """The `vla collect` config with Hydra overrides, for calling :func:`collect` from Python."""
    from hydra import compose, initialize_config_dir

    from vla.configs import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("collect", overrides=list(overrides))


def main(cfg: DictConfig) -> None:
    """Hydra entry point (`vla collect ...`)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    command = "vla collect " + " ".join(shlex.quote(o) for o in hc.overrides.task)
    try:
        plan = make_plan(cfg)
    except ValueError as e:  # a bad value, named in the message: one line, no traceback
        raise SystemExit(f"vla collect: error: {e}") from None
    collect(cfg, hc.runtime.output_dir, command, plan)


# ── summary, videos, report ────────────────────────────────────────────────────────────────


def _run_stats(run: _Run, wall_s: float, compact_s: float) -> dict:
    """This run's throughput, with where the time went (simulation in workers vs dataset writing)."""
    n, kept = len(run.attempts), sum(a.kept for a in run.attempts)
    minutes = max(wall_s, 1e-9) / 60
    return {
        "attempted": n, "kept": kept, "workers": run.plan.workers, "wall_s": round(wall_s, 1),
        "attempts_per_min": round(n / minutes, 2), "kept_per_min": round(kept / minutes, 2),
        "sim_s_per_attempt": round(run.sim_s / n, 3) if n else None,
        "commits": run.store.commits, "write_s": round(run.write_s, 1),
        "write_s_per_kept": round(run.write_s / run.committed_kept, 3) if run.committed_kept else None,
        "compact_s": round(compact_s, 1),
    }


def build_summary(plan: CollectPlan, store: DatasetStore, run_stats: dict, command: str) -> dict:
    """Dataset-wide summary from the ledger (all runs), plus this run's throughput."""
    ledger = store.ledger()
    # This run's tasks first (in the order asked for), then any others the dataset holds.
    order = {t: i for i, t in enumerate(plan.tasks)}
    tasks: dict[str, dict] = {}
    for a in sorted(ledger, key=lambda a: (order.get(a.task, len(order)), a.task, a.episode)):
        t = tasks.setdefault(a.task, {"task": a.task, "instruction": a.instruction, "attempted": 0, "successes": 0,
                                      "episodes": 0, "frames": 0, "first_episode": None})
        t["attempted"] += 1
        t["successes"] += a.success
        if a.kept:
            t["episodes"] += 1
            t["frames"] += a.length
            if t["first_episode"] is None:  # lowest kept episode index: the same for any worker count
                t["first_episode"] = a.dataset_episode
    for t in tasks.values():
        t["success_rate"] = round(t["successes"] / t["attempted"], 4)
    attempted, successes = sum(t["attempted"] for t in tasks.values()), sum(t["successes"] for t in tasks.values())
    return {
        "repo_id": plan.repo_id, "root": str(plan.root.absolute()), "env": plan.env_name, "fps": plan.fps,
        "features": plan.fingerprint()["features"],
        "total_episodes": sum(t["episodes"] for t in tasks.values()),
        "total_frames": sum(t["frames"] for t in tasks.values()),
        "expert_success_rate": round(successes / attempted, 4) if attempted else None,
        "tasks": list(tasks.values()),
        "this_run": run_stats,
        "reproduce": command,
    }


def _video_name(task: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in task)[:120] + ".mp4"


def write_sample_videos(plan: CollectPlan, store: DatasetStore, summary: dict, run_dir: Path) -> list[Path]:
    """One MP4 per task (its first kept episode) in <run_dir>/videos and <root>/meta/vla_videos."""
    import shutil

    from lerobot.datasets import LeRobotDatasetMetadata

    from sim.video import write_rollout_video

    meta = LeRobotDatasetMetadata(plan.repo_id, root=plan.root)
    previous = _load_json(plan.root / SUMMARY_JSON) or {}
    old_first = {t["task"]: t.get("first_episode") for t in previous.get("tasks", [])}
    out = []
    for t in tqdm(summary["tasks"], desc="sample videos", unit="task", leave=False):
        if t["first_episode"] is None:
            continue
        name = _video_name(t["task"])
        in_root = plan.root / SAMPLE_VIDEO_DIR / name
        run_path = run_dir / "videos" / name
        if not (in_root.exists() and old_first.get(t["task"]) == t["first_episode"]):
            frames = episode_frames(plan.root, t["first_episode"], meta)
            label = f"dataset episode {t['first_episode']}"
            write_rollout_video(run_path, frames, t["instruction"], plan.fps, label=label)
            store.write_sidecar(f"{SAMPLE_VIDEO_DIR}/{name}", run_path.read_bytes())
        else:
            run_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(in_root, run_path)
        t["sample_video"] = f"{SAMPLE_VIDEO_DIR}/{name}"
        out.append(run_path)
    return out


def _load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary_markdown(summary: dict) -> str:
    lines = [
        f"# Dataset `{summary['repo_id']}`", "",
        f"- root: `{summary['root']}`", f"- env: `{summary['env']}`, fps {summary['fps']}",
        f"- episodes: {summary['total_episodes']}, frames: {summary['total_frames']}",
        f"- expert success rate: {summary['expert_success_rate']}",
        "- this run: {attempted} attempts, {kept} kept, {wall_s} s, {kept_per_min} kept episodes/min with "
        "{workers} workers".format(**summary["this_run"]),
        f"- reproduce: `{summary['reproduce']}`", "",
        "| task | instruction | episodes | frames | attempted | success rate | sample video |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in summary["tasks"]:
        lines.append(
            f"| {t['task']} | {t['instruction']} | {t['episodes']} | {t['frames']} | {t['attempted']} "
            f"| {t['success_rate']:.2f} | {t.get('sample_video', '')} |"
        )
    lines += ["", "| feature | dtype | shape |", "|---|---|---|"]
    lines += [f"| {k} | {v['dtype']} | {v['shape']} |" for k, v in summary["features"].items()]
    return "\n".join(lines) + "\n"


def write_summary(summary: dict, store: DatasetStore, run_dir: Path) -> list[Path]:
    data = {"json": json.dumps(summary, indent=2).encode(), "md": summary_markdown(summary).encode()}
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, blob in data.items():
        (run_dir / f"vla_summary.{ext}").write_bytes(blob)
        paths.append(run_dir / f"vla_summary.{ext}")
        paths.append(store.write_sidecar(SUMMARY_JSON if ext == "json" else SUMMARY_MD, blob))
    return paths


def _print_report(
    plan: CollectPlan, summary: dict, sched: Scheduler, run_attempts: list[Attempt],
    paths: list[Path], videos: list[Path], command: str,
) -> None:
    rows = [("task", "attempted", "successes", "kept", "this run: attempted", "this run: kept")]
    for task in plan.tasks:
        attempts = list(sched.state[task].done.values())
        ran = [a for a in run_attempts if a.task == task]
        rows.append((task, str(len(attempts)), str(sum(a.success for a in attempts)), str(sched.state[task].kept),
                     str(len(ran)), str(sum(a.kept for a in ran))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for j, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for task in sched.gave_up():
        print(f"WARNING: '{task}' has {sched.state[task].kept}/{plan.episodes_per_task} kept episodes after "
              f"{plan.max_attempts_per_task} attempts (raise max_attempts_per_task or check the expert)")
    run = summary["this_run"]
    print(f"\nthis run:  {run['attempted']} attempts, {run['kept']} kept in {run['wall_s']} s "
          f"({run['kept_per_min']} kept episodes/min, workers={run['workers']}; per episode: "
          f"{run['sim_s_per_attempt']} s simulating, {run['write_s_per_kept']} s writing; {run['commits']} commits)")
    print(f"dataset:   {plan.root}  ({summary['total_episodes']} episodes, {summary['total_frames']} frames)")
    print(f"           open with LeRobotDataset('{plan.repo_id}', root='{plan.root}')")
    for p in paths:
        print(f"summary:   {p}")
    if videos:
        print(f"videos:    {videos[0].parent}/ and {plan.root / SAMPLE_VIDEO_DIR}/ ({len(videos)} per dir)")
    print(f"reproduce: {command}")
