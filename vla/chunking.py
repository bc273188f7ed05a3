"""Executing action chunks under an inference delay: sync, async and real-time chunking (RTC).

A policy call takes ``delay`` control steps (d = ceil(delay_ms * fps / 1000)). Three ways to run
chunks of H actions with an execution horizon of s actions per chunk (``horizon``, default the
policy's ``n_action_steps``):

    sync   request, hold the robot d steps while the chunk is computed, execute its first s actions,
           request again: stop-and-go (d hold steps per chunk).
    async  today's async execution (the ROS broker's, openpi/SmolVLA style): the next chunk is
           requested d steps before the current one's s actions are done; while it is computed the
           current chunk keeps executing; on arrival it replaces the current one, dropping the actions
           it planned for the steps that already executed (the broker's ``align``). No guidance: the
           switch can jump between two different plans.
    rtc    async + real-time chunking (Black, Galliker & Levine 2025): the request carries the
           actions that will execute during the delay (pinned) and the rest of the current chunk (a
           soft, exponentially decaying mask), and the flow head's sampling is guided to agree with
           them (policies/action_heads.py ``RTCGuide``), so the new chunk continues the executing one.

With d > s the horizon becomes d (one request in flight at a time, the next one sent as soon as a
chunk arrives); when a chunk runs out before the next arrives the robot holds (zero motion for
delta actions, the last gripper command; the last action for absolute ones), like the ROS node. A
chunk's actions are aligned by the actions executed since its request (holds do not count), as in
``ros_nodes/chunk_broker.py``. With d = 0, sync and async are the plain chunk loop (every s steps).

The delay is injected, not measured: the simulation waits for the model, then d steps pass with the
executing actions, as if the call had taken ``delay_ms``; episodes are as reproducible as `vla eval`.

    executor = ChunkExecutor(policy, mode="rtc", delay=2)        # a ChunkPolicy (vla/runtime.py)
    plan = executor.request(obs)    # the actions to execute from now until the next request [n, A]
    executor.tags                   # per planned step: (chunk number, index in it) or HOLD

The rollout engine (vla/rollout.py) runs it as an agent: ``act`` returns that plan, the loop
executes all of it (``n_action_steps = None``) and asks again; :class:`ChunkTrace` (a subscriber)
records the executed actions and reports the jerk at chunk switches (:func:`boundary_jerk`).
`vla eval execution=rtc delay_ms=100` wraps its policy with :func:`executor_for`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("sync", "async", "rtc")
HOLD = (-1, -1)  # tag of a planned hold step


@dataclass(frozen=True)
class Execution:
    """How chunks are executed (``vla eval execution=... delay_ms=...``)."""

    mode: str = "async"
    delay_ms: float = 0.0
    horizon: int | None = None  # actions executed per chunk (s); None = the runner's replan / the policy's
    beta: float = 5.0  # RTC guidance-weight cap
    soft_horizon: int | None = None  # RTC: soft mask over at most this many steps of the new chunk (None = whole overlap)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"execution '{self.mode}' is not one of: {', '.join(MODES)}")
        if not (isinstance(self.delay_ms, (int, float)) and math.isfinite(self.delay_ms) and self.delay_ms >= 0):
            raise ValueError(f"delay_ms must be a number >= 0, got {self.delay_ms!r}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"execution horizon must be >= 1, got {self.horizon}")
        if self.beta <= 0:
            raise ValueError(f"rtc beta must be > 0, got {self.beta}")

    def delay_steps(self, fps: float) -> int:
        return delay_steps(self.delay_ms, fps)


def delay_steps(delay_ms: float, fps: float) -> int:
    """Control steps a call of ``delay_ms`` spans at ``fps`` (rounded up: an action is usable at a tick
    only if it was computed before it)."""
    if not fps or fps <= 0:
        raise ValueError(f"an injected delay needs the control rate; got fps={fps!r}")
    return int(math.ceil(delay_ms * fps / 1000.0 - 1e-9))


def parse_execution(mode: Any, delay_ms: Any = 0, **extra: Any) -> Execution | None:
    """``execution=null`` -> None (the plain loop); else a checked :class:`Execution`."""
    if mode is None or str(mode).lower() in ("", "none", "null"):
        if delay_ms not in (None, 0, 0.0):
            raise ValueError(f"delay_ms={delay_ms} needs execution=sync|async|rtc (it injects the delay into one of them)")
        return None
    try:
        delay = float(delay_ms or 0)
    except (TypeError, ValueError):
        raise ValueError(f"delay_ms must be a number >= 0, got {delay_ms!r}") from None
    return Execution(str(mode).lower(), delay, **{k: v for k, v in extra.items() if v is not None})


def supports_rtc(policy: Any) -> bool:
    """A VLA chunk policy whose action head samples by flow (RTC guides that sampling)."""
    inner = getattr(policy, "policy", None)
    head = getattr(getattr(inner, "model", None), "head", None)
    return head is not None and hasattr(head, "_sample_guided") and hasattr(policy, "postprocessor")


def action_normaliser(policy: Any):
    """env-unit actions [n, A] -> the policy's normalised action space (the inverse of its postprocessor's
    unnormaliser), as a float tensor."""
    import torch

    steps = getattr(policy.postprocessor, "steps", [])
    unnorm = next((s for s in steps if hasattr(s, "_normalize_action")), None)

    def normalise(actions: np.ndarray):
        t = torch.as_tensor(np.asarray(actions, dtype=np.float32))
        if unnorm is None:  # no normalisation step (identity)
            return t
        return unnorm._normalize_action(t.unsqueeze(0), inverse=False)[0].float().cpu()

    return normalise


def hold_action(last: np.ndarray | None, robot: Any, action_dim: int) -> np.ndarray:
    """What the robot does while it waits: zero motion (delta kinds) with the gripper kept, or the last
    command (absolute kinds: joint/eef positions), or zeros before any action."""
    kind = getattr(robot, "action_kind", "delta_eef")
    if last is None:
        hold = np.zeros(action_dim, np.float32)
    elif kind in ("joint_position", "eef_position", "other"):
        return np.asarray(last, np.float32).copy()
    else:
        hold = np.zeros(action_dim, np.float32)
        for i in getattr(robot, "gripper_dims", ()) or ():
            hold[i] = last[i]
    low, high = getattr(robot, "action_low", ()), getattr(robot, "action_high", ())
    return np.clip(hold, low, high).astype(np.float32) if low else hold


class ChunkExecutor:
    """A ChunkPolicy run in ``mode`` with an injected delay of ``delay`` control steps (module docstring).

    Also an agent of the rollout engine (``act``/``observe``/``reset``; ``n_action_steps = None``: the
    loop executes every planned action before asking again).
    """

    source = "policy"
    n_action_steps = None

    def __init__(self, policy: Any, mode: str = "async", delay: int = 0, horizon: int | None = None,
                 beta: float = 5.0, soft_horizon: int | None = None, robot: Any = None) -> None:
        if mode not in MODES:
            raise ValueError(f"execution '{mode}' is not one of: {', '.join(MODES)}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0 steps, got {delay}")
        self.policy, self.mode, self.delay, self.beta, self.soft_horizon = policy, mode, int(delay), beta, soft_horizon
        self.horizon = int(horizon or getattr(policy, "n_action_steps", None) or 1)
        chunk = getattr(policy, "chunk_size", None)
        if chunk is not None and self.horizon > int(chunk):
            raise ValueError(f"execution horizon {self.horizon} is longer than the policy's chunk ({chunk})")
        if mode == "rtc" and not supports_rtc(policy):
            raise ValueError(f"execution=rtc guides a flow-matching VLA head; '{getattr(policy, 'checkpoint', policy)}' "
                             "is not one (use execution=async or sync)")
        self.embodiment = getattr(policy, "embodiment", None)
        self.robot = robot or self.embodiment
        self._normalise = action_normaliser(policy) if mode == "rtc" else None
        self._observe = getattr(policy, "observe", None)
        self.reset()

    # --- agent API (vla/rollout.py) ---------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        self.policy.reset()
        self.chunk: np.ndarray | None = None  # the executing chunk
        self.index = 0  # its next action
        self.chunks = 0  # chunks received
        self.tags: list[tuple[int, int]] = []  # per planned step
        self.planned: list[np.ndarray] = []
        self._last: np.ndarray | None = None

    def act(self, obs: dict, instruction: str) -> dict:
        from vla.runtime import obs_from_env

        return self.infer(obs_from_env(obs, instruction))

    def observe(self, obs: dict, instruction: str) -> None:
        if self._observe is not None:
            from vla.runtime import obs_from_env

            self._observe(obs_from_env(obs, instruction))

    # --- the schedule --------------------------------------------------------------------------------
    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """One request at this step: the policy's output dict with ``actions`` replaced by the plan."""
        d, s = self.delay, self.horizon
        cur, i = self.chunk, self.index
        during = [] if (cur is None or self.mode == "sync") else list(cur[i: i + d])  # executes while inferring
        k = len(during)
        guide = self.rtc_guide(cur, i, k) if (self.mode == "rtc" and cur is not None) else None
        out = self.policy.infer(obs) if guide is None else self.policy.infer(obs, rtc=guide)
        new = np.asarray(out["actions"], np.float32)
        if new.ndim != 2 or len(new) < 1:
            raise ValueError(f"the policy returned actions of shape {new.shape}, expected a chunk [H >= 1, A]")
        plan, tags = [], []
        for j, a in enumerate(during):
            plan.append(a)
            tags.append((self.chunks - 1, i + j))
        for _ in range(d - k):  # the current chunk ran out (or sync): hold until the new one arrives
            plan.append(hold_action(plan[-1] if plan else self._last, self.robot, new.shape[1]))
            tags.append(HOLD)
        run = s if self.mode == "sync" else max(s - d, 0)  # new-chunk actions before the next request
        run = min(run, len(new) - k)
        for j in range(k, k + run):
            plan.append(new[j])
            tags.append((self.chunks, j))
        self.chunk, self.index = new, k + run
        self.chunks += 1
        if plan:
            self._last = plan[-1]
        self.tags += tags
        self.planned += plan
        return {**out, "actions": np.stack(plan).astype(np.float32), "chunk": new, "skipped": k}

    def rtc_guide(self, cur: np.ndarray, index: int, executing: int):
        """The RTCGuide for a request made at ``cur[index]`` (:func:`rtc_guide`)."""
        return rtc_guide(self._normalise, cur, index, executing, self.beta, self.soft_horizon)


def rtc_guide(normalise: Any, chunk: np.ndarray, index: int, executing: int, beta: float = 5.0,
              soft_horizon: int | None = None):
    """The ``RTCGuide`` for a chunk request made while ``chunk[index]`` is the next action to execute and
    ``executing`` more of its actions will run before the new chunk arrives: ``chunk[index:]`` (env
    units, normalised by ``normalise`` = :func:`action_normaliser`) aligned to the new chunk's steps,
    the first ``executing`` pinned, the rest soft (over at most ``soft_horizon`` steps). Any runner with a
    current chunk and an index (the ROS broker too) can build the request with this."""
    from policies.action_heads import RTCGuide

    executing = max(0, min(int(executing), len(chunk) - index))
    target = normalise(chunk[index:])
    horizon = None if soft_horizon is None else executing + int(soft_horizon)
    return RTCGuide(target, executing, horizon=horizon, beta=beta)


def executor_for(policy: Any, execution: Execution | dict, env: Any, replan: int | None = None) -> tuple[ChunkExecutor, ChunkTrace]:
    """The executor `vla eval` runs for ``execution`` on ``env`` (its embodiment's fps sets the delay in
    steps) and the subscriber that measures it."""
    from vla.runtime import env_embodiment

    ex = execution if isinstance(execution, Execution) else Execution(**execution)
    robot = env_embodiment(env)
    fps = getattr(robot, "fps", None) or (getattr(env, "metadata", {}) or {}).get("render_fps")
    executor = ChunkExecutor(policy, ex.mode, ex.delay_steps(fps) if ex.delay_ms else 0, ex.horizon or replan,
                             ex.beta, ex.soft_horizon, robot=robot)
    return executor, ChunkTrace(executor)


# ── measuring: jerk at chunk switches ──────────────────────────────────────────────────────────


def boundary_jerk(actions: np.ndarray, tags: list[tuple[int, int]], dims: list[int] | None = None) -> dict:
    """Second differences |a[t+1] - 2 a[t] + a[t-1]| (L2 over ``dims``, default all) of an executed
    action sequence, split into boundary steps (centred on either side of a switch: the step whose
    action comes from another chunk, or a hold, than the one before) and the others."""
    a = np.asarray(actions, np.float64)
    if a.ndim != 2 or len(a) < 3:
        return {"boundary": None, "other": None, "all": None, "n_boundary": 0, "n_other": 0, "switches": 0}
    if dims is not None:
        a = a[:, dims]
    jerk = np.linalg.norm(a[2:] - 2 * a[1:-1] + a[:-2], axis=1)  # centred at t = 1..T-2
    source = [tag[0] if tag != HOLD else -1 for tag in tags[: len(a)]]
    switches = [t for t in range(1, len(source)) if source[t] != source[t - 1]]
    near = {c for t in switches for c in (t - 1, t) if 1 <= c <= len(a) - 2}
    centre = np.arange(1, len(a) - 1)
    is_b = np.isin(centre, sorted(near))
    mean = lambda x: float(np.mean(x)) if len(x) else None  # noqa: E731
    return {"boundary": mean(jerk[is_b]), "other": mean(jerk[~is_b]), "all": mean(jerk),
            "n_boundary": int(is_b.sum()), "n_other": int((~is_b).sum()), "switches": len(switches),
            "holds": int(sum(1 for s in source if s == -1))}


def pool_jerk(summaries: list[dict]) -> dict:
    """Episode summaries (:class:`ChunkTrace`) pooled: step-weighted mean jerk at boundaries / elsewhere,
    switches and hold steps per episode."""
    rows = [s for s in summaries if s]
    out: dict[str, Any] = {"delay_steps": rows[0].get("delay_steps") if rows else None,
                           "horizon": rows[0].get("horizon") if rows else None}
    for key in ("boundary", "other", "all"):
        n_key = {"boundary": "n_boundary", "other": "n_other"}.get(key)
        pairs = [(s[key], s[n_key] if n_key else s["n_boundary"] + s["n_other"]) for s in rows if s.get(key) is not None]
        total = sum(n for _, n in pairs)
        out[key] = sum(v * n for v, n in pairs) / total if total else None
    out["ratio"] = out["boundary"] / out["other"] if out["boundary"] is not None and out["other"] else None
    out["switches_per_episode"] = float(np.mean([s["switches"] for s in rows])) if rows else 0.0
    out["holds_per_episode"] = float(np.mean([s.get("holds", 0) for s in rows])) if rows else 0.0
    return out


class ChunkTrace:
    """Subscriber (vla/rollout.py): the actions the env executed, tagged by the executor; at the end of
    the episode ``summary`` has the boundary jerk (arm dims: the robot's gripper dims left out) and
    hold count."""

    def __init__(self, executor: ChunkExecutor) -> None:
        self.executor = executor
        self.actions: list[np.ndarray] = []
        self.summary: dict = {}

    def on_episode_start(self, ctx: Any, obs: dict) -> None:
        self.actions, self.summary = [], {}

    def on_infer(self, ctx: Any, obs: dict, out: dict, ms: float) -> None: ...

    def on_step(self, ctx: Any, obs: dict, action: np.ndarray, next_obs: dict, info: dict) -> None:
        self.actions.append(np.asarray(action, np.float32))

    def on_episode_end(self, ctx: Any, result: Any) -> None:
        ex = self.executor
        dim = len(self.actions[0]) if self.actions else 0
        grippers = set(getattr(ex.robot, "gripper_dims", ()) or ())
        dims = [i for i in range(dim) if i not in grippers] or None
        self.summary = {"mode": ex.mode, "delay_steps": ex.delay, "horizon": ex.horizon,
                        **boundary_jerk(np.stack(self.actions) if self.actions else np.zeros((0, 1)),
                                        ex.tags, dims)}
