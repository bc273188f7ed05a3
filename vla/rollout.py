"""The one rollout engine: an episode loop, subscribers that watch it, and a worker pool.

Structure after openpi's client runtime (an Environment, an Agent, Subscribers around one loop), our
own code. `vla eval`, `vla collect`, `vla experts`, `vla bench` and LIBERO's expert measurement all
roll out episodes through :func:`run_episode`; what differs between them is the agent and the
subscribers they compose, never the loop.

    spec = episode_spec(env_cfg, task, i, seed)          # reset_options(env_cfg, task, i) + episode_seed(seed, task, i)
    result = run_episode(env, PolicyAgent(policy), spec, replan=4, subscribers=[metrics, video])
    result.success, result.length, result.instruction

The loop, defined once here:
* the global RNGs (python, numpy, torch if loaded) are seeded with the episode seed, then
  ``env.reset(seed=spec.seed, options=spec.options)`` and ``agent.reset(spec.agent_seed)``;
* the instruction is the spec's wording, else the env's (``info["task"]`` / ``task_description``);
* the agent returns a chunk, checked against the robot it was made for (its ``embodiment``, else the
  env's: ``vla.runtime.check_actions``: shape, NaN, clipped into the limits); the first ``replan``
  actions are executed (``replan=None``: the agent's ``n_action_steps``, else the whole chunk), then it
  is asked again; policies that condition on past frames get every frame in between (``observe``);
* an episode ends when the env terminates or truncates, or after ``max_steps`` steps (default
  :data:`STEP_GUARD`, for an env that never truncates); ``success`` is the last step's ``is_success``.

Agents (:class:`PolicyAgent` for any ``ChunkPolicy`` of vla/runtime.py, :class:`ExpertAgent` for a
scripted expert acting on env observations) and subscribers (:class:`Metrics`, :class:`Video`,
:class:`DatasetRecorder`, :class:`KeepMasks`, :class:`Progress`) are small classes here;
:class:`WorkerPool` runs jobs in K spawned (or forkserver) processes, each keeping its own env and
agent (:class:`EnvCache`), that die with their parent, and returns results in job order.

Layering: this is a library module (vla/ and sim/ commands import it; it imports only sim.factory,
sim.video and vla.runtime, each where it is used).
"""

from __future__ import annotations

import inspect
import multiprocessing as mp
import os
import random
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STEP_GUARD = 10_000  # hard cap on steps per episode if an env never truncates


# ── what an episode is ─────────────────────────────────────────────────────────────────────


def episode_seed(seed: int, task: str, episode_index: int) -> int:
    """Seed of episode i of a task: independent of which worker runs it or in which order."""
    return int(np.random.SeedSequence([seed, zlib.crc32(task.encode()), episode_index]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Python's, numpy's and (when something imported it) torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:  # only agents that use torch pay for importing it
        sys.modules["torch"].manual_seed(seed)


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: which task, its index, the reset seed and options, the wording."""

    task: str
    index: int
    seed: int | None  # env.reset(seed=...) and the global RNGs; None = neither
    options: dict | None = None  # env.reset(options=...)
    instruction: str | None = None  # None = the env's own instruction
    agent_seed: int | None = None  # agent.reset(seed) for stochastic experts; None = reset()


def episode_spec(env_cfg: Any, task: str, index: int, seed: int, instruction: str | None = None,
                 seed_agent: bool = True) -> EpisodeSpec:
    """Episode ``index`` of ``task`` as every command runs it: ``sim.factory.reset_options(env_cfg,
    task, index)`` (tabletop: layout i of the split; LIBERO: init state i) and the seed derived from
    (``seed``, task, index), also given to the agent when ``seed_agent``."""
    from omegaconf import DictConfig, OmegaConf

    from sim.factory import reset_options

    cfg = env_cfg if isinstance(env_cfg, DictConfig) else OmegaConf.create(env_cfg)
    s = episode_seed(seed, task, index)
    return EpisodeSpec(task, index, s, reset_options(cfg, task, index), instruction, s if seed_agent else None)


@dataclass
class EpisodeResult:
    """What the loop saw: per-run details (latency, frames, ...) are the subscribers'."""

    task: str
    index: int
    seed: int | None
    success: bool
    length: int  # env steps
    instruction: str
    done: bool  # the env ended it (terminated/truncated), not max_steps
    calls: int  # agent calls
    wall_s: float = 0.0
    info: dict = field(default_factory=dict)  # the last step's info


# ── agents ─────────────────────────────────────────────────────────────────────────────────


class PolicyAgent:
    """A ChunkPolicy (vla/runtime.py: checkpoints, ExpertPolicy, RandomPolicy, remote) as an agent: it
    sees the runtime observation dict (``obs_from_env``)."""

    source = "policy"

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.n_action_steps = getattr(policy, "n_action_steps", None)
        self.embodiment = getattr(policy, "embodiment", None)
        self._observe = getattr(policy, "observe", None)

    def reset(self, seed: int | None = None) -> None:
        self.policy.reset()

    def act(self, obs: dict, instruction: str) -> dict:
        from vla.runtime import obs_from_env

        return self.policy.infer(obs_from_env(obs, instruction))

    def observe(self, obs: dict, instruction: str) -> None:
        if self._observe is not None:
            from vla.runtime import obs_from_env

            self._observe(obs_from_env(obs, instruction))


class ExpertAgent:
    """A scripted expert (``sim.experts``: ``reset(seed=None)``, ``act(env_obs) -> action``) as an agent:
    one action per call, on the env's own observation (it may run without cameras)."""

    source = "expert"
    n_action_steps = 1
    embodiment = None  # built for the env it runs in

    def __init__(self, expert: Any) -> None:
        self.expert = expert
        self._takes_seed = "seed" in inspect.signature(expert.reset).parameters  # a custom `expert=` may not

    def reset(self, seed: int | None = None) -> None:
        if seed is not None and self._takes_seed:
            self.expert.reset(seed=seed)
        else:
            self.expert.reset()

    def act(self, obs: dict, instruction: str) -> dict:
        return {"actions": self.expert.act(obs)}

    def observe(self, obs: dict, instruction: str) -> None:
        pass


def as_agent(policy_or_expert: Any) -> Any:
    """An agent as is; a ChunkPolicy (``infer``) -> PolicyAgent; a scripted expert (``act``) -> ExpertAgent."""
    if isinstance(policy_or_expert, (PolicyAgent, ExpertAgent)) or hasattr(policy_or_expert, "source"):
        return policy_or_expert
    return PolicyAgent(policy_or_expert) if hasattr(policy_or_expert, "infer") else ExpertAgent(policy_or_expert)


# ── subscribers ────────────────────────────────────────────────────────────────────────────


@dataclass
class Context:
    env: Any
    agent: Any
    spec: EpisodeSpec
    instruction: str
    robot: Any  # the env's embodiment


class Subscriber:
    """Watches an episode; every hook is optional. ``obs`` are the env's own observations."""

    def on_episode_start(self, ctx: Context, obs: dict) -> None: ...

    def on_infer(self, ctx: Context, obs: dict, out: dict, ms: float) -> None: ...

    def on_step(self, ctx: Context, obs: dict, action: np.ndarray, next_obs: dict, info: dict) -> None: ...

    def on_episode_end(self, ctx: Context, result: EpisodeResult) -> None: ...


class Metrics(Subscriber):
    """Per agent call: latency (ms), the policy's own stage timings (summed), visual tokens."""

    def __init__(self) -> None:
        self.latency_ms: list[float] = []
        self.stage_ms: dict[str, float] = {}
        self.tokens: list[int] = []

    def on_infer(self, ctx: Context, obs: dict, out: dict, ms: float) -> None:
        self.latency_ms.append(ms)
        for name, t in (out.get("timing_ms") or {}).items():
            self.stage_ms[name] = self.stage_ms.get(name, 0.0) + float(t)
        self.tokens.append(int(out.get("visual_tokens") or 0))

    @property
    def visual_tokens(self) -> float:
        return float(np.mean(self.tokens)) if self.tokens else 0.0


class Video(Subscriber):
    """Every frame of the env's cameras (the reset frame first); written at the end as one MP4 with
    the instruction drawn on every frame (``path``), or kept in ``frames`` (``path=None``)."""

    def __init__(self, path: str | Path | None = None, fps: float | None = None) -> None:
        self.path, self.fps = path, fps
        self.frames: dict[str, list[np.ndarray]] = {}
        self.written: str | None = None

    def on_episode_start(self, ctx: Context, obs: dict) -> None:
        self.frames = {cam: [obs["pixels"][cam].copy()] for cam in ctx.robot.camera_names}

    def on_step(self, ctx: Context, obs: dict, action: np.ndarray, next_obs: dict, info: dict) -> None:
        for cam in ctx.robot.camera_names:
            self.frames[cam].append(next_obs["pixels"][cam].copy())

    def on_episode_end(self, ctx: Context, result: EpisodeResult) -> None:
        if self.path is None:
            return
        from sim.video import write_rollout_video

        fps = float(self.fps or ctx.env.metadata.get("render_fps") or 20)
        label = f"ep {result.index} {'SUCCESS' if result.success else 'fail'}"
        self.written = str(write_rollout_video(self.path, {c: np.stack(v) for c, v in self.frames.items()},
                                               result.instruction, fps, label))


class DatasetRecorder(Subscriber):
    """(observation before the step, action) per step, for a dataset: camera images, state, and the
    action label: the executed action, or with ``label="intended"`` the expert's ``intended_action``
    (before its motion noise; DART-style labels) while the env executes the noisy one."""

    LABELS = ("executed", "intended")

    def __init__(self, label: str = "executed", expert: Any = None) -> None:
        if label not in self.LABELS:
            raise ValueError(f"action_label '{label}' is not one of: {', '.join(self.LABELS)}")
        self.label, self.expert = label, expert
        self.images: dict[str, list[np.ndarray]] = {}
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []

    def on_episode_start(self, ctx: Context, obs: dict) -> None:
        self.images = {cam: [] for cam in ctx.robot.camera_names}
        self.states, self.actions = [], []

    def on_step(self, ctx: Context, obs: dict, action: np.ndarray, next_obs: dict, info: dict) -> None:
        for cam in ctx.robot.camera_names:
            # Copy: a renderer may hand back the same buffer every step.
            self.images[cam].append(np.array(obs["pixels"][cam], dtype=np.uint8, copy=True))
        self.states.append(np.asarray(obs["agent_pos"], dtype=np.float32))
        self.actions.append(action if self.label == "executed" else self._intended(ctx))

    def _intended(self, ctx: Context) -> np.ndarray:
        intended = getattr(self.expert, "intended_action", None)
        if intended is None:
            raise TypeError(f"action_label=intended needs an expert that sets `intended_action` in act(); "
                            f"{type(self.expert).__name__} does not")
        return ctx.robot.check_actions(intended, who="expert (intended action)")[0]

    def arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        return ({cam: np.stack(v) for cam, v in self.images.items()}, np.stack(self.states), np.stack(self.actions))


class KeepMasks(Subscriber):
    """Per policy call: the camera images, the compressor's keep masks and the visual token counts
    (in -> after compression), for the keep-mask overlay video (vla/overlay.py)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict, dict, Any, Any]] = []

    def on_infer(self, ctx: Context, obs: dict, out: dict, ms: float) -> None:
        info = out.get("compression") or {}  # returned with the actions (vla.runtime.VLAChunkPolicy)
        kept = {k: v[0].detach().cpu() for k, v in (info.get("kept") or {}).items()}
        images = {cam: np.asarray(img).copy() for cam, img in obs["pixels"].items()}
        self.calls.append((images, kept, info.get("visual_tokens_in"), info.get("visual_tokens_after")))


class Progress(Subscriber):
    """A tqdm bar advanced per finished episode, with the success count; also usable as a pool's
    ``on_result`` (``progress.update(success, task)``)."""

    def __init__(self, bar: Any) -> None:
        self.bar, self.ok, self.n = bar, 0, 0

    def update(self, success: bool, what: str = "") -> None:
        self.ok, self.n = self.ok + bool(success), self.n + 1
        self.bar.set_postfix_str(f"success {self.ok}/{self.n}" + (f", {what}" if what else ""))
        self.bar.update()

    def on_episode_end(self, ctx: Context, result: EpisodeResult) -> None:
        self.update(result.success, result.task)


# ── the loop ───────────────────────────────────────────────────────────────────────────────


def run_episode(env: Any, agent: Any, spec: EpisodeSpec, *, replan: int | None = None,
                max_steps: int | None = None, subscribers: Sequence[Subscriber] = ()) -> EpisodeResult:
    """Roll out one episode (the module docstring says how); ``agent``: an agent, a ChunkPolicy or
    a scripted expert (:func:`as_agent`)."""
    from vla.runtime import check_actions, env_embodiment

    agent = as_agent(agent)
    started = time.perf_counter()
    if spec.seed is not None:
        seed_everything(spec.seed)
    obs, info = env.reset(seed=spec.seed, options=spec.options)
    agent.reset(spec.agent_seed)
    instruction = spec.instruction or str(info.get("task") or getattr(env.unwrapped, "task_description", spec.task))
    robot = env_embodiment(env)
    limits = agent.embodiment or robot  # a policy's chunk is checked against the robot it was trained for
    ctx = Context(env, agent, spec, instruction, robot)
    for s in subscribers:
        s.on_episode_start(ctx, obs)
    replan = replan or agent.n_action_steps
    limit = max_steps or STEP_GUARD
    steps, calls, success, done = 0, 0, False, False
    info = {}
    while not done and steps < limit:
        start = time.perf_counter()
        out = agent.act(obs, instruction)
        ms = (time.perf_counter() - start) * 1e3
        calls += 1
        for s in subscribers:
            s.on_infer(ctx, obs, out, ms)
        chunk = check_actions(out["actions"], limits, source=agent.source)
        executed = chunk[: replan or len(chunk)]
        for j, action in enumerate(executed):
            next_obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            for s in subscribers:
                s.on_step(ctx, obs, action, next_obs, info)
            obs = next_obs
            success = bool(info.get("is_success", False))
            if terminated or truncated:
                done = True
                break
            if steps >= limit:
                break
            if j + 1 < len(executed):  # the last one goes to the next act()
                agent.observe(obs, instruction)
    result = EpisodeResult(spec.task, spec.index, spec.seed, success, steps, instruction, done, calls,
                           time.perf_counter() - started, dict(info))
    for s in subscribers:
        s.on_episode_end(ctx, result)
    return result


# ── workers ────────────────────────────────────────────────────────────────────────────────


class EnvCache:
    """A worker's env and agent, kept while the task stays the same (jobs come in task order)."""

    def __init__(self, build: Callable[[str], tuple[Any, Any]]) -> None:
        self.build = build  # task -> (env, agent); closes what it made if it fails half-way
        self.task: str | None = None
        self.env = self.agent = None

    def get(self, task: str) -> tuple[Any, Any]:
        if self.task != task:
            self.close()
            self.env, self.agent = self.build(task)
            self.task = task
        return self.env, self.agent

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
        self.task, self.env, self.agent = None, None, None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent(parent_pid: int) -> None:
    """End this worker when the process that started the pool ends, however it ends. A SIGKILLed
    `vla collect` used to leave its workers running the jobs still queued in their pipe (and, since
    they hold its pipe, the multiprocessing resource tracker alive with them). With forkserver the
    direct parent is the server, which exits when ``parent_pid`` does."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the kernel sends the signal when the parent dies
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    watched = os.getppid()
    if not _alive(parent_pid):  # it died before prctl took effect
        os._exit(1)

    def watch() -> None:  # elsewhere (and as a backstop): notice being re-parented or the parent gone
        while os.getppid() == watched and _alive(parent_pid):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _pool_init(parent_pid: int, initializer: Callable | None, initargs: tuple) -> None:
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def _describe(job: Any) -> str:
    if isinstance(job, tuple) and len(job) == 2 and isinstance(job[0], str) and isinstance(job[1], int):
        return f"episode {job[1]} of task '{job[0]}'"
    return f"job {job!r}"


class WorkerPool:
    """Run ``fn(*job)`` for many jobs in ``workers`` processes (0 = in this process), each set up once
    by ``initializer(*initargs)`` (its own env + policy copy, e.g. through :class:`EnvCache`) and
    killed when this process dies. ``context``: "spawn" (a fresh interpreter: MuJoCo/EGL contexts and
    torch threads do not survive a fork) or "forkserver" with ``preload`` (heavy modules imported
    once in the server; falls back to spawn where unavailable). A worker's exception becomes
    ``RuntimeError("episode i of task 't' failed in a worker: ...")`` unless it is one of
    ``passthrough``. In this process, ``cleanup()`` runs at the end."""

    def __init__(self, workers: int, initializer: Callable | None = None, initargs: tuple = (), *,
                 context: str = "spawn", preload: Iterable[str] = (), cleanup: Callable | None = None,
                 passthrough: tuple[type[BaseException], ...] = ()) -> None:
        self.workers, self.initializer, self.initargs = workers, initializer, initargs
        self.context, self.preload, self.cleanup, self.passthrough = context, list(preload), cleanup, passthrough
        self.pool: ProcessPoolExecutor | None = None

    def _mp_context(self) -> mp.context.BaseContext:
        if self.context != "forkserver" or "forkserver" not in mp.get_all_start_methods():
            return mp.get_context("spawn")
        ctx = mp.get_context("forkserver")
        if self.preload:
            ctx.set_forkserver_preload(self.preload)  # only takes effect if the server is not running yet
        return ctx

    def __enter__(self) -> WorkerPool:
        if self.workers <= 0:
            if self.initializer is not None:
                self.initializer(*self.initargs)
        else:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=self._mp_context(), initializer=_pool_init,
                                            initargs=(os.getpid(), self.initializer, self.initargs))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.pool is not None:
            ok = exc_type is None
            self.pool.shutdown(wait=ok, cancel_futures=not ok)
        elif self.cleanup is not None:
            self.cleanup()

    def _result(self, fut: Future, job: Any) -> Any:
        try:
            return fut.result()
        except self.passthrough:
            raise
        except Exception as e:
            raise RuntimeError(f"{_describe(job)} failed in a worker: {e!r}") from e

    def map(self, fn: Callable, jobs: Iterable[tuple], on_result: Callable[[Any, Any], None] | None = None) -> list:
        """Every job's result, in job order; ``on_result(job, result)`` as each finishes."""
        jobs = list(jobs)
        if self.pool is None:
            results = []
            for job in jobs:
                results.append(fn(*job))
                if on_result is not None:
                    on_result(job, results[-1])
            return results
        futures = {self.pool.submit(fn, *job): k for k, job in enumerate(jobs)}
        results: list[Any] = [None] * len(jobs)
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                k = futures[fut]
                results[k] = self._result(fut, jobs[k])
                if on_result is not None:
                    on_result(jobs[k], results[k])
        return results

    def stream(self, fn: Callable, next_jobs: Callable[[], list], on_result: Callable[[Any, Any], None],
               tick: Callable[[], None] | None = None, poll_s: float = 0.5) -> None:
        """Jobs handed out as they become due (``next_jobs()`` is asked again after each result);
        ``on_result(job, result)`` in completion order, ``tick()`` at least every ``poll_s``."""
        if self.pool is None:
            while jobs := next_jobs():
                for job in jobs:
                    on_result(job, fn(*job))
                    if tick is not None:
                        tick()
            return
        futures: dict[Future, Any] = {}
        while True:
            for job in next_jobs():
                futures[self.pool.submit(fn, *job)] = job
            if not futures:
                break
            finished, _ = wait(futures, timeout=poll_s, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = futures.pop(fut)
                on_result(job, self._result(fut, job))
            if tick is not None:
                tick()
