"""`vla eval`: closed-loop rollouts of a policy through the ChunkPolicy boundary (vla/runtime.py).

    vla eval checkpoint=outputs/train/<run>/checkpoints/last env=tabletop episodes=20
    vla eval checkpoint=expert env=tabletop episodes=5 tasks=[place_red_on_blue_plate] num_envs=2
    vla eval checkpoint=random env=tabletop episodes=5     # chance level (uniform random actions)
    vla eval checkpoint=<dir> env=libero_spatial episodes=10 replan=4 video=false

* Episode ``i`` of a task starts from ``sim.factory.reset_options(env_cfg, task, i)`` (tabletop:
  layout i of ``split``, held-out by default; LIBERO: init state i) with a seed derived from
  (``seed``, task, i) and torch/numpy seeded with it, so every method sees the same episodes and
  the result does not depend on ``num_envs`` or on which worker ran which episode.
* The policy returns a chunk; the first ``replan`` actions are executed, then it is called again
  (``replan: null`` = the policy's own ``n_action_steps``; the scripted expert re-plans every step).
* ``num_envs`` = K worker processes (forkserver, heavy modules preloaded once), each owning one env
  and its own copy of the policy, running whole episodes. Measured here (tiny model, 2 tasks x 4
  episodes x 40 steps, 80 policy calls, 2 cores shared with other jobs at load ~10, two rounds):
      num_envs=1 (in this process)           wall 34-45 s, rollout only 0.84-1.48 episodes/s
      num_envs=2 (worker pool)               wall 30-34 s, rollout only 1.40-1.52 episodes/s
      AsyncVectorEnv x2, policy in parent    wall 52-62 s, rollout only 0.75-0.92 episodes/s
  (spawn instead of forkserver: K=2 took 68 s, every worker importing torch/lerobot at once).
  The vector env also cannot host the scripted expert, which reads its env's privileged state.
* ``checkpoint`` is a VLA checkpoint or any lerobot policy saved by `lerobot-train` (ACT, Diffusion
  Policy, ...: ``<output_dir>/checkpoints/<step>/pretrained_model``), loaded by vla/runtime.py's
  ``load_policy`` with its saved processors, so baselines are measured by the same loop.
  Policies that condition on past frames get every frame between calls (``observe``).
* Reports per task: success rate with a 95 % Wilson interval, mean episode length; the policy's
  type and parameter count; policy latency p50/p99 per ``infer`` call and mean per stage; MP4
  videos (first ``video_episodes`` episodes per task) with the instruction drawn on every frame.
  Writes ``eval.json`` + ``eval.md`` (+ ``videos/``) to the Hydra run dir ``outputs/eval/<time>/``
  and prints the table and a reproduce command.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

EXPERT = "expert"
RANDOM = "random"
BASELINES = (EXPERT, RANDOM)  # checkpoint= names that are not folders: built per env, no torch
from vla.rollout import STEP_GUARD, episode_seed  # noqa: F401  (the engine's; re-exported)
# Report order of the per-call timings: the adapter's stages, then the model's inside "model".
STAGE_ORDER = ("preprocess", "vision", "compressor", "backbone", "action_head", "model", "postprocess", "total")
# What vla/checkpoint.py and lerobot-train write (checked before workers start; loading checks the rest).
CHECKPOINT_FILES = ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json")


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (default z: 95 %, two-sided).

    Source: E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
    J. Am. Stat. Assoc. 22(158):209-212, 1927; formula as in Brown, Cai & DasGupta, "Interval
    Estimation for a Binomial Proportion", Statistical Science 16(2):101-133, 2001, eq. (4):
        centre = (k + z^2/2) / (n + z^2),   half = z sqrt(n) / (n + z^2) * sqrt(p (1 - p) + z^2 / (4 n))
    with p = k / n. Unlike the normal (Wald) interval it stays inside [0, 1] and is not empty at
    k = 0 or k = n, which matters for the small episode counts of closed-loop evaluation.
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    p = successes / n
    z2 = z * z
    centre = (successes + z2 / 2) / (n + z2)
    half = z * math.sqrt(n) / (n + z2) * math.sqrt(p * (1 - p) + z2 / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


# ── settings ───────────────────────────────────────────────────────────────────────────────


@dataclass
class EvalPlan:
    """The validated command; plain data so it can be sent to worker processes."""

    checkpoint: str  # "expert", "random" or an absolute folder path
    env_cfg: dict
    env_name: str
    tasks: list[str]
    episodes: int
    num_envs: int
    replan: int | None
    seed: int
    device: str
    threads: int | None = None  # torch intra-op threads per process (None = cores // num_envs)
    policy_overrides: dict = field(default_factory=dict)
    accel: dict | None = None  # acceleration preset applied at load (vla/accel.py); None = as trained
    video_episodes: int = 0  # first N episodes of each task get a video
    out_dir: str = ""
    # instruction= / instruction_file=: {task: wordings}, every wording on the same `episodes` layouts;
    # empty = the env's own instruction (vla/instructions.py eval_wordings)
    instructions: dict = field(default_factory=dict)
    # execution=sync|async|rtc delay_ms=...: chunks run by vla/chunking.py's executor with an injected
    # inference delay (asdict of vla.chunking.Execution); None = the plain loop above
    execution: dict | None = None

    @property
    def jobs(self) -> list[tuple[str, int]]:
        return [(task, i) for task in self.tasks for i in range(self.episodes * len(self.instructions.get(task) or [None]))]

    def layout_and_wording(self, task: str, job: int) -> tuple[int, str | None]:
        """Job ``job`` of ``task`` -> (its episode = layout index, the wording to give, None = the env's)."""
        words = self.instructions.get(task) or [None]
        return job % self.episodes, words[job // self.episodes]


def make_plan(cfg: DictConfig, out_dir: str | Path) -> EvalPlan:
    """Check the composed config; every error names the bad value and what is valid."""
    from sim.collect import env_image_size, plain_dict
    from sim.factory import SUITES, select_tasks, task_names
    from vla.training.settings import check_device, number

    # Plain values first: each error names its key, and nothing slow has started yet.
    episodes = number("episodes", cfg.episodes, int, 1)
    num_envs = number("num_envs", cfg.num_envs, int, 1)
    replan = None if cfg.get("replan") is None else number("replan", cfg.replan, int, 1)
    seed = number("seed", cfg.seed, int, 0)
    threads = None if cfg.get("threads") is None else number("threads", cfg.threads, int, 1)
    videos = number("video_episodes", cfg.video_episodes, int, 0) if cfg.video else 0
    env_cfg = OmegaConf.create(OmegaConf.to_container(cfg.env, resolve=True))
    if env_cfg.get("suite") not in SUITES:
        raise ValueError(f"env.suite '{env_cfg.get('suite')}' is not a known suite. Valid suites: {', '.join(SUITES)}")
    env_image_size(env_cfg)
    if cfg.get("split") is not None and "split" in env_cfg:
        env_cfg.split = cfg.split
    requested = cfg.get("tasks")
    if requested is None:
        requested = task_names(env_cfg)  # tasks=null: the env config's selection (env.tasks=[...])
    env_cfg.tasks = "all"  # the task list below is the selection; validate names against the suite
    tasks = select_tasks(requested, task_names(env_cfg))
    checkpoint = str(cfg.checkpoint)
    if checkpoint not in BASELINES and not checkpoint.startswith(("ws://", "wss://")):  # a server: vla/remote.py
        from vla.runtime import VLA_TYPE, checkpoint_type

        path = Path(checkpoint).expanduser().absolute()
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint folder not found: '{checkpoint}' (resolved to {path}); "
                                    f"pass checkpoint=<saved checkpoint dir>, checkpoint={EXPERT} or checkpoint={RANDOM}")
        kind = checkpoint_type(path)  # names the folder's problem if it is not a policy checkpoint
        if kind != VLA_TYPE and (cfg.get("accel") or {}).get("name", "none") != "none":
            raise ValueError(f"accel={cfg.accel.name}: acceleration presets apply to VLA checkpoints only; "
                             f"'{path}' is a lerobot '{kind}' policy. Use accel=none.")
        missing = [f for f in CHECKPOINT_FILES if not (path / f).is_file()]
        if missing:  # caught here, not minutes later inside every worker
            raise FileNotFoundError(f"checkpoint '{path}' is incomplete: missing {', '.join(missing)}")
        from policies.checkpoint_files import check_processor_files, trust_from_env

        check_processor_files(path, trust_code=trust_from_env())  # no torch yet: an unsafe folder fails in 1 s
        checkpoint = str(path)
    # Baselines run no torch; a checkpoint on a missing GPU fails here, not wrapped in a load error.
    device = str(cfg.device) if checkpoint in BASELINES else check_device(cfg.device)
    from vla.instructions import eval_wordings

    instructions = eval_wordings(cfg.get("instruction"), cfg.get("instruction_file"), str(env_cfg.suite), tasks)
    from vla.chunking import parse_execution

    execution = parse_execution(cfg.get("execution"), cfg.get("delay_ms", 0), beta=cfg.get("rtc_beta"))
    if execution is not None and execution.mode == "rtc" and checkpoint in BASELINES:
        raise ValueError(f"execution=rtc guides a flow-matching policy; checkpoint={checkpoint} has none (use sync or async)")
    return EvalPlan(
        checkpoint=checkpoint,
        env_cfg=OmegaConf.to_container(env_cfg),
        env_name=str(env_cfg.suite),
        tasks=tasks,
        episodes=episodes,
        num_envs=min(num_envs, len(tasks) * episodes),
        replan=replan,
        seed=seed,
        device=device,
        threads=threads,
        policy_overrides=plain_dict(cfg.get("policy")),
        accel=plain_dict(cfg.get("accel")) if (cfg.get("accel") or {}).get("name", "none") != "none" else None,
        video_episodes=videos,
        out_dir=str(Path(out_dir).absolute()),
        instructions=instructions,
        execution=asdict(execution) if execution is not None else None,
    )


# ── one episode ────────────────────────────────────────────────────────────────────────────


@dataclass
class EpisodeResult:
    task: str
    episode: int
    seed: int
    success: bool
    length: int  # env steps
    instruction: str
    latency_ms: list[float]  # one per policy call
    stage_ms: dict[str, float]  # summed over calls
    visual_tokens: float  # mean per call
    video: str | None = None
    wall_s: float = 0.0  # time this episode took in its worker (rollout only)
    worker: int = 0  # pid of the process that ran it
    policy: dict = field(default_factory=dict)  # {"type", "params"} of the policy that ran it
    execution: dict = field(default_factory=dict)  # execution=...: boundary jerk, holds (vla/chunking.py ChunkTrace)


def run_episode(env: Any, policy: Any, plan: EvalPlan, task: str, episode: int) -> EpisodeResult:
    """Roll out job ``episode`` of ``task`` through the rollout engine (vla/rollout.py: seeds, reset
    options, re-planning, ``observe``, the action check); records frames only for the first
    ``video_episodes`` episodes."""
    from vla.rollout import Metrics, Video, episode_spec
    from vla.rollout import run_episode as rollout

    job = episode
    episode, wording = plan.layout_and_wording(task, job)  # another wording replays the same layouts
    metrics = Metrics()
    subscribers: list[Any] = [metrics]
    video = None
    if episode < plan.video_episodes:
        path = Path(plan.out_dir) / "videos" / f"{_slug(task)}_ep{episode:03d}{f'_w{job // plan.episodes}' if wording else ''}.mp4"
        video = Video(path, plan.env_cfg.get("fps"))
        subscribers.append(video)
    agent, trace = policy, None
    if plan.execution:  # injected inference delay: the executor is the agent (vla/chunking.py)
        from vla.chunking import executor_for

        agent, trace = executor_for(policy, plan.execution, env, plan.replan)
        subscribers.append(trace)
    r = rollout(env, agent, episode_spec(plan.env_cfg, task, episode, plan.seed, instruction=wording),
                replan=None if trace else plan.replan, subscribers=subscribers)
    return EpisodeResult(task, episode, r.seed, r.success, r.length, r.instruction, metrics.latency_ms,
                         metrics.stage_ms, metrics.visual_tokens, video.written if video else None, r.wall_s,
                         os.getpid(), policy_info(policy), trace.summary if trace else {})


def policy_info(policy: Any) -> dict:
    """{"type", "params"} for the report: what the adapter says (vla/runtime.py), else its class name."""
    params = getattr(policy, "num_params", None)
    return {"type": str(getattr(policy, "policy_type", None) or type(policy).__name__),
            "params": None if params is None else int(params)}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:100]


# ── workers: one env (re-made when the task changes) and one policy per process ────────────

_WORKER: dict[str, Any] = {}


def _init_worker(plan: EvalPlan, threads: int | None = None) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sim  # noqa: F401  (registers the gym ids)

    if threads and plan.checkpoint not in BASELINES:
        import torch

        torch.set_num_threads(threads)
    from vla.rollout import EnvCache

    _WORKER.clear()
    _WORKER.update(plan=plan, policy=None, envs=EnvCache(_build_env))


def _close_worker() -> None:
    if _WORKER.get("envs") is not None:
        _WORKER["envs"].close()


class PolicyLoadError(ValueError):
    """The checkpoint does not load (missing/corrupt/mismatched file, bad override): one line to the user."""


def _loaded_policy() -> Any:
    """This process's copy of the checkpoint's policy (loaded once)."""
    plan: EvalPlan = _WORKER["plan"]
    if _WORKER["policy"] is None:
        from vla.runtime import load_policy

        try:
            _WORKER["policy"] = load_policy(plan.checkpoint, plan.device, accel=plan.accel, **plan.policy_overrides)
        except Exception as e:
            # CheckpointError is a ValueError; draccus wraps config errors in chained ParsingErrors.
            if not isinstance(e, (FileNotFoundError, ValueError)) and not type(e).__module__.startswith("draccus"):
                raise
            raise PolicyLoadError(f"cannot load checkpoint '{plan.checkpoint}': {_cause_message(e)}") from e
    return _WORKER["policy"]


def _cause_message(e: BaseException) -> str:
    """The most specific message of a cause chain: the deepest draccus error (it names the config
    field: "`n_action_steps`: Couldn't parse 'abc' into an int"), else the root cause's."""
    chain = [e]
    while (nxt := e.__cause__ or (None if e.__suppress_context__ else e.__context__)) is not None:
        chain.append(e := nxt)
    for err in reversed(chain):
        if type(err).__module__.startswith("draccus"):
            return str(err)
    root = chain[-1]
    return str(root) if isinstance(root, (ValueError, FileNotFoundError)) else f"{type(root).__name__}: {root}"


def _bound_policy(env: Any) -> Any:
    plan: EvalPlan = _WORKER["plan"]
    if plan.checkpoint in BASELINES:  # bound to this env (the expert reads its privileged state)
        from vla.runtime import ExpertPolicy, RandomPolicy

        return ExpertPolicy(env) if plan.checkpoint == EXPERT else RandomPolicy(env)
    return _loaded_policy()


def _build_env(task: str) -> tuple[Any, Any]:
    """This worker's env for ``task`` and the policy bound to it (EnvCache: rebuilt when the task changes)."""
    from sim.factory import make_env
    from vla.runtime import check_compatible, env_embodiment

    plan: EvalPlan = _WORKER["plan"]
    if plan.checkpoint not in BASELINES:
        # Before the env: a checkpoint that does not load fails in seconds, with no GL
        # context to tear down (that printed two EGL tracebacks after the error).
        _loaded_policy()
    env = make_env(OmegaConf.create(plan.env_cfg), task, cameras=True)
    bound = _bound_policy(env)
    try:  # a policy for another robot: every differing field named, before an episode runs
        check_compatible(bound, env_embodiment(env), where=f"env {plan.env_cfg.get('suite')} ({task})")
    except ValueError as e:
        env.close()
        raise PolicyLoadError(str(e)) from e
    return env, bound


def _worker_job(task: str, episode: int) -> EpisodeResult:
    env, bound = _WORKER["envs"].get(task)
    return run_episode(env, bound, _WORKER["plan"], task, episode)


def _torch_threads(value: int | None = None) -> int | None:
    """Get (or set) torch's intra-op threads, without importing torch if nothing uses it yet."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if value is not None:
        torch.set_num_threads(value)
    return torch.get_num_threads()


def _preload(plan: EvalPlan) -> list[str]:
    """forkserver with the heavy modules preloaded: workers fork from a server that imported
    torch/lerobot once (nothing has run there: no GL context, no torch thread pool, which is why
    plain fork from this process would be unsafe). With spawn, every worker re-imports them, and
    K imports at once on a busy 2-core machine took longer than the whole evaluation."""
    preload = ["sim", "sim.factory", "sim.experts", "sim.video", "vla.runtime", "vla.rollout"]
    if plan.checkpoint not in BASELINES:
        preload += ["torch", "vla.checkpoint", "policies.modeling_vla", "policies.processor_vla"]
    return preload


def _run_jobs(plan: EvalPlan, bar: tqdm) -> list[EpisodeResult]:
    """Every job's result (in job order), through the rollout engine's worker pool."""
    from vla.rollout import Progress, WorkerPool

    progress = Progress(bar)
    # K workers x all cores each would oversubscribe the CPU; on a shared machine even one process
    # with 2 threads was ~8x slower per call than with 1 (see configs/eval.yaml `threads`).
    threads = plan.threads or max(1, (os.cpu_count() or 1) // plan.num_envs)
    before = _torch_threads() if plan.num_envs == 1 else None

    def cleanup() -> None:  # num_envs=1 ran in this process, which may go on (tests, notebooks)
        _close_worker()
        if before is not None:
            _torch_threads(before)

    # Jobs are in task order, so a worker mostly keeps its env across episodes.
    pool = WorkerPool(0 if plan.num_envs == 1 else plan.num_envs, _init_worker, (plan, threads),
                      context="forkserver", preload=_preload(plan), cleanup=cleanup, passthrough=(PolicyLoadError,))
    with pool:
        return pool.map(_worker_job, plan.jobs, on_result=lambda job, r: progress.update(r.success, r.task))


# ── the command ────────────────────────────────────────────────────────────────────────────


def evaluate(cfg: DictConfig, out_dir: str | Path, command: str | None = None, plan: EvalPlan | None = None) -> dict:
    """Run the evaluation described by ``cfg``; writes eval.json / eval.md / videos to ``out_dir``.
    ``plan``: ``make_plan(cfg, out_dir)`` when the caller validated it already."""
    plan = plan or make_plan(cfg, out_dir)
    command = command or reproduce_command(plan, [])
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL's INFO line breaks the progress bar
    start = time.perf_counter()
    with tqdm(total=len(plan.jobs), desc=f"eval {plan.env_name}", unit="ep", dynamic_ncols=True) as bar:
        try:
            results = _run_jobs(plan, bar)
        except PolicyLoadError:
            bar.leave = False  # the error is the whole message: no empty bar left above it
            raise
    wall = time.perf_counter() - start
    report = summarize(plan, results, wall, command)
    paths = write_report(report, Path(plan.out_dir))
    print_report(report, paths)
    return report


def summarize(plan: EvalPlan, results: list[EpisodeResult], wall_s: float, command: str) -> dict:
    def wording(r: EpisodeResult) -> int:  # instruction_file=: the file's order
        words = plan.instructions.get(r.task) or []
        return words.index(r.instruction) if r.instruction in words else 0

    results = sorted(results, key=lambda r: (plan.tasks.index(r.task), wording(r), r.episode))
    rows = [_row(task, [r for r in results if r.task == task]) for task in plan.tasks]
    latencies = [ms for r in results for ms in r.latency_ms]
    calls = max(1, len(latencies))
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    stage_names = sorted({s for r in results for s in r.stage_ms}, key=lambda s: (order.get(s, len(order)), s))
    steps = sum(r.length for r in results)
    busy: dict[int, float] = {}
    for r in results:
        busy[r.worker] = busy.get(r.worker, 0.0) + r.wall_s
    rollout_s = max(busy.values(), default=0.0)  # the busiest worker; the rest of wall_s is start-up
    return {
        "checkpoint": plan.checkpoint,
        "env": plan.env_name,
        "split": plan.env_cfg.get("split"),
        "episodes_per_task": plan.episodes,
        "replan": plan.replan,
        "seed": plan.seed,
        "num_envs": plan.num_envs,
        "device": plan.device,
        "policy_overrides": plan.policy_overrides,
        "accel": plan.accel,
        "policy": results[0].policy if results else {},  # {"type", "params"}; after accel, if any
        "tasks": rows,
        "overall": _row("overall", results),
        "latency_ms": {
            "calls": len(latencies),
            "p50": _pct(latencies, 50),
            "p99": _pct(latencies, 99),
            "mean": float(np.mean(latencies)) if latencies else None,
            "stages_mean": {s: sum(r.stage_ms.get(s, 0.0) for r in results) / calls for s in stage_names},
        },
        "visual_tokens_mean": float(np.mean([r.visual_tokens for r in results])) if results else 0.0,
        **({"execution": _execution_row(plan.execution, results)} if plan.execution else {}),
        "wall_s": round(wall_s, 2),
        "episodes_per_s": round(len(results) / max(wall_s, 1e-9), 3),
        "env_steps_per_s": round(steps / max(wall_s, 1e-9), 1),
        # Without process start-up, policy loading and env building: what a long run converges to.
        "rollout_s": round(rollout_s, 2),
        "rollout_episodes_per_s": round(len(results) / max(rollout_s, 1e-9), 3),
        "episodes": [{k: v for k, v in asdict(r).items()
                      if k not in ("latency_ms", "stage_ms", "wall_s", "worker", "policy")}
                     for r in results],
        "reproduce": command,
    }


def _row(task: str, results: list[EpisodeResult]) -> dict:
    n, k = len(results), sum(r.success for r in results)
    lo, hi = wilson_interval(k, n)
    return {
        "task": task,
        "instruction": results[0].instruction if results and task != "overall" else None,
        "episodes": n,
        "successes": k,
        "success_rate": k / n if n else 0.0,
        "ci95": [round(lo, 4), round(hi, 4)],
        "mean_length": float(np.mean([r.length for r in results])) if results else 0.0,
        "videos": [r.video for r in results if r.video] if task != "overall" else [],
        **({"wordings": _wordings(results)} if len({r.instruction for r in results}) > 1 and task != "overall" else {}),
    }


def _execution_row(execution: dict, results: list[EpisodeResult]) -> dict:
    """execution=...: the settings and the boundary jerk over all episodes (weighted by steps)."""
    from vla.chunking import pool_jerk

    return {**execution, **pool_jerk([r.execution for r in results])}


def _wordings(results: list[EpisodeResult]) -> list[dict]:
    """Success per instruction wording (`vla eval instruction_file=...`), in first-seen order."""
    out: dict[str, list[bool]] = {}
    for r in results:
        out.setdefault(r.instruction, []).append(r.success)
    return [{"instruction": w, "episodes": len(s), "successes": sum(s), "success_rate": sum(s) / len(s)}
            for w, s in out.items()]


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def markdown(report: dict, rel_to: Path | None = None) -> str:
    def video_cell(row: dict) -> str:
        paths = [Path(v) for v in row["videos"]]
        return ", ".join(str(p.relative_to(rel_to)) if rel_to else str(p) for p in paths)

    lines = ["| task | success | 95% CI | episodes | mean length | video |", "|---|---|---|---|---|---|"]
    for row in [*report["tasks"], report["overall"]]:
        name = f"**{row['task']}**" if row["task"] == "overall" else row["task"]
        lo, hi = row["ci95"]
        lines.append(f"| {name} | {row['success_rate']:.2f} ({row['successes']}/{row['episodes']}) | "
                     f"[{lo:.2f}, {hi:.2f}] | {row['episodes']} | {row['mean_length']:.1f} | {video_cell(row)} |")
    worded = [(row["task"], w) for row in report["tasks"] for w in row.get("wordings", [])]
    if worded:  # instruction_file=: success per wording, same layouts for every wording
        lines += ["", "| task | wording | success |", "|---|---|---|"]
        lines += [f"| {t} | {w['instruction']} | {w['success_rate']:.2f} ({w['successes']}/{w['episodes']}) |"
                  for t, w in worded]
    lat = report["latency_ms"]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    stages = ", ".join(f"{k} {v:.1f}" for k, v in lat["stages_mean"].items()) or "-"
    info = report.get("policy") or {}
    params = info.get("params")
    lines += ["", f"policy: {info.get('type', '-')}, "
              f"{'-' if params is None else f'{params / 1e6:.2f} M'} parameters",
              f"policy latency per call (ms): p50 {fmt(lat['p50'])}, p99 {fmt(lat['p99'])}, "
              f"mean {fmt(lat['mean'])} over {lat['calls']} calls; mean per stage: {stages}",
              f"visual tokens per call: {report['visual_tokens_mean']:.1f}; "
              f"throughput: {report['episodes_per_s']} episodes/s, {report['env_steps_per_s']} env steps/s "
              f"with num_envs={report['num_envs']} ({report['wall_s']} s; without start-up "
              f"{report['rollout_episodes_per_s']} episodes/s)"]
    ex = report.get("execution")
    if ex:
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"execution: {ex['mode']}, injected delay {ex['delay_ms']:g} ms ({ex.get('delay_steps')} steps); "
                     f"action jerk |a[t+1]-2a[t]+a[t-1]| at chunk switches {fmt(ex.get('boundary'))} vs elsewhere "
                     f"{fmt(ex.get('other'))}; hold steps per episode {ex.get('holds_per_episode', 0):.1f}")
    return "\n".join(lines)


def write_report(report: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "eval.json", out_dir / "eval.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    header = (f"# Evaluation: `{report['checkpoint']}` on {report['env']} (split {report['split']})\n\n"
              f"- episodes per task: {report['episodes_per_task']}, "
              f"replan: {report['replan'] or "the policy's n_action_steps"}, "
              f"seed: {report['seed']}, device: {report['device']}\n- reproduce: `{report['reproduce']}`\n\n")
    md_path.write_text(header + markdown(report, rel_to=out_dir) + "\n")
    return [json_path, md_path]


def print_report(report: dict, paths: list[Path]) -> None:
    print(f"\n{report['checkpoint']} on {report['env']} (split {report['split']}, "
          f"{report['episodes_per_task']} episodes/task):\n")
    print(markdown(report))
    videos = [v for row in report["tasks"] for v in row["videos"]]
    for v in videos:
        print(f"video:     {v}")
    for p in paths:
        print(f"report:    {p}")
    print(f"reproduce: {report['reproduce']}")


def reproduce_command(plan: EvalPlan, extra_overrides: list[str]) -> str:
    """The resolved command (absolute checkpoint, explicit tasks/seed/split) plus other overrides."""
    args = [f"checkpoint={plan.checkpoint}", f"env={plan.env_name}", f"episodes={plan.episodes}",
            f"tasks=[{','.join(plan.tasks)}]", f"seed={plan.seed}", f"num_envs={plan.num_envs}",
            f"replan={'null' if plan.replan is None else plan.replan}", f"device={plan.device}"]
    if plan.env_cfg.get("split") is not None:
        args.append(f"split={plan.env_cfg['split']}")
    own = {a.split("=", 1)[0] for a in args}
    args += [o for o in extra_overrides if o.split("=", 1)[0].lstrip("+~") not in own]
    return "vla eval " + " ".join(shlex.quote(a) for a in args)


def main(cfg: DictConfig) -> dict:
    """Hydra entry point (`vla eval ...`)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    try:
        plan = make_plan(cfg, hc.runtime.output_dir)  # validates before anything slow starts
    except (ValueError, FileNotFoundError) as e:  # a bad value or a missing file, named: one line
        raise SystemExit(f"vla eval: error: {e}") from None
    try:
        return evaluate(cfg, hc.runtime.output_dir, reproduce_command(plan, list(hc.overrides.task)), plan)
    except (PolicyLoadError, ConnectionError) as e:  # ConnectionError: a policy server that is gone (vla/remote.py)
        raise SystemExit(f"vla eval: error: {e}") from None
