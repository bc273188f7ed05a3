"""The last gate before the robot: every command the policy node publishes passes through here.

Pure Python/numpy (no rclpy), so it is unit-tested on its own. One call per control tick:

    cmd = safety.step(action_or_None, reasons)     # reasons: set of hold conditions seen this tick
    cmd.values   float32 [D], always finite and within [low, high]
    cmd.hold     True when the values are the hold command, not the policy's action
    cmd.reasons  why we hold (sorted tuple), empty when not holding

An action outside [low, high] (a joint's position limits, the delta range) is clipped into them,
counted per dimension in ``clipped`` and logged (rate-limited: one line per log interval, with the
count of repeats); the rate limit (``max_step`` per period: the joints' velocity limits) is counted
in ``rate_limited``. Nothing outside the limits is ever returned.

What a *hold* is (documented choice):
  * Dimensions in ``keep_dims`` repeat the last safe command; every other dimension is 0.
    For delta-EEF (7-D: dpos, drot, gripper) that is keep_dims = (6,): zero motion, gripper stays
    where it is (opening it on a camera glitch would drop the object).
    For joint-position commands keep_dims = all: the last safe command (the arm stays put).
  * A hold bypasses the rate limit: stopping is always allowed. The next real action is
    rate-limited from the hold value, so motion ramps back up.

We hold when the caller reports a reason (camera stale, empty instruction, inference failed, ...)
and, on our own, when there is no action this tick or the action is non-finite / mis-shaped.
Each reason is logged once when it starts and once when it clears (not per message), through a
``health.LogLimiter`` (the node's: at most one line per reason per log_interval_s, so an input that
flickers every tick logs a few lines, with the count of repeats). Reasons in ``quiet`` (by default
``no_action``: a chunk arriving a tick late is routine, not news) go to ``debug`` instead; the node
counts them in its diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ros_nodes.health import LogLimiter

NO_ACTION = "no_action"  # chunk exhausted / no chunk yet
BAD_ACTION = "non_finite_or_bad_shape_action"


@dataclass(frozen=True)
class Command:
    values: np.ndarray
    hold: bool
    reasons: tuple[str, ...]


class SafetyFilter:
    def __init__(
        self,
        low: Iterable[float],
        high: Iterable[float],
        max_step: Iterable[float],
        keep_dims: Iterable[int] = (),
        initial: Iterable[float] | None = None,
        warn: Callable[[str], None] = print,
        info: Callable[[str], None] = print,
        debug: Callable[[str], None] = lambda _msg: None,
        quiet: Iterable[str] = (NO_ACTION,),
        limiter: LogLimiter | None = None,
        names: Iterable[str] = (),
    ):
        self.low = np.asarray(list(low), dtype=np.float64)
        self.high = np.asarray(list(high), dtype=np.float64)
        self.max_step = np.asarray(list(max_step), dtype=np.float64)
        dim = self.low.shape[0]
        for name, arr in (("high", self.high), ("max_step", self.max_step)):
            if arr.shape != (dim,):
                raise ValueError(f"safety limits: '{name}' has {arr.shape[0]} values, 'low' has {dim}")
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high)) and np.all(self.low < self.high)):
            raise ValueError(f"safety limits: need finite low < high, got low={self.low} high={self.high}")
        if not (np.all(np.isfinite(self.max_step)) and np.all(self.max_step > 0)):
            raise ValueError(f"safety limits: max_step must be finite and > 0, got {self.max_step}")
        self.keep = np.zeros(dim, dtype=bool)
        self.keep[list(keep_dims)] = True
        init = np.zeros(dim) if initial is None else np.asarray(list(initial), dtype=np.float64)
        self.initial = np.clip(init, self.low, self.high)
        self._warn, self._info, self._debug = warn, info, debug
        self._quiet = frozenset(quiet)
        self._limiter = limiter if limiter is not None else LogLimiter(0.0)  # default: every transition
        self.names = list(names) or [str(i) for i in range(dim)]
        self.clipped: dict[str, int] = {}  # dimension name -> commands clipped into its [low, high]
        self.rate_limited = 0  # commands limited to max_step from the last one
        self.reset()

    @property
    def dim(self) -> int:
        return self.low.shape[0]

    def reset(self) -> None:
        """New episode: forget the last command and re-arm the once-per-condition logs."""
        self.last = self.initial.copy()
        self._active: set[str] = set()

    def seed(self, values: Iterable[float]) -> None:
        """Set the last command (e.g. measured joint positions before the first joint command)."""
        self.last = np.clip(np.asarray(list(values), dtype=np.float64), self.low, self.high)

    def hold_command(self) -> np.ndarray:
        return np.where(self.keep, self.last, np.clip(0.0, self.low, self.high))

    def step(self, action: np.ndarray | None, reasons: Iterable[str] = ()) -> Command:
        why = set(reasons)
        arr = None
        if action is None:
            why.add(NO_ACTION)
        else:
            arr = np.asarray(action, dtype=np.float64)
            if arr.shape != (self.dim,) or not np.all(np.isfinite(arr)):
                why.add(BAD_ACTION)
        self._log_transitions(why, arr)
        if why:
            values = self.hold_command()
        else:
            values = np.clip(arr, self.low, self.high)
            self._count_clipped(arr, values)
            limited = np.clip(values, self.last - self.max_step, self.last + self.max_step)
            self.rate_limited += int(np.any(limited != values))
            values = limited
            values = np.clip(values, self.low, self.high)  # last is in range, so this is a no-op guard
        # Belt and braces: nothing non-finite or out of range ever leaves this function.
        if not np.all(np.isfinite(values)):  # pragma: no cover - unreachable by construction
            values, why = self.initial.copy(), why | {BAD_ACTION}
        self.last = values
        return Command(values.astype(np.float32), bool(why), tuple(sorted(why)))

    def _count_clipped(self, arr: np.ndarray, values: np.ndarray) -> None:
        """Count (and log, rate-limited) a command the policy asked for outside [low, high]."""
        # Beyond rounding: a policy's float32 action at its limit, converted to radians, is no news.
        out = np.flatnonzero(np.abs(values - arr) > 1e-6 * np.maximum(1.0, self.high - self.low))
        if not out.size:
            return
        for d in out:
            self.clipped[self.names[d]] = self.clipped.get(self.names[d], 0) + 1
        detail = ", ".join(f"{self.names[d]} {arr[d]:.4g} -> {values[d]:.4g}" for d in out[:6])
        line = self._limiter.allow("safety.clipped", f"safety: clipped into the limits: {detail}")
        if line is not None:
            self._warn(line)

    def _log_transitions(self, why: set[str], arr: np.ndarray | None) -> None:
        for reason in sorted(why - self._active):
            detail = f" (got {np.array2string(arr, precision=3)})" if reason == BAD_ACTION and arr is not None else ""
            quiet = reason in self._quiet
            line = self._limiter.allow(f"safety.hold.{reason}", f"safety: holding ({reason}){detail}", not quiet)
            if line is not None and quiet:  # one severity per call site (rclpy insists)
                self._debug(line)
            elif line is not None:
                self._warn(line)
        for reason in sorted(self._active - why):
            quiet = reason in self._quiet
            line = self._limiter.allow(f"safety.clear.{reason}", f"safety: '{reason}' cleared", False)  # the
            # hold's summary counts the flips
            if line is not None and quiet:
                self._debug(line)
            elif line is not None:
                self._info(line)
        self._active = why
