"""Keeping a node honest about its own health: worker threads, log floods, input floods.

Pure Python (no rclpy), unit-tested on its own:

    WorkerThread  a daemon thread whose death is a node failure: an uncaught exception (or an
                  exit while the node still runs) is kept in ``failure`` for the node to report,
                  instead of the thread just stopping (cameras at 0 fps, exit code 0).
    LogLimiter    at most one log line per key per ``interval_s``; the repeats in between are
                  counted and reported with the next line of that key (or by ``flush``), so an
                  input that alternates good/bad every message logs a few lines, not thousands.
    Throttle      accept an event at most once per ``min_interval_s``; one that comes earlier is
                  deferred (coalesced) to the end of the interval, so a flood of N becomes one and
                  a legitimate event is delayed, never lost.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

Clock = Callable[[], float]


class WorkerThread(threading.Thread):
    """Runs ``work()`` (or ``target``) once; ``failure`` says why it is no longer running, if it
    should be. ``stop()`` is the only clean way out: a return or an exception before it is a failure."""

    def __init__(self, name: str, target: Callable[[], None] | None = None,
                 on_failure: Callable[[str], None] | None = None):
        super().__init__(name=name, daemon=True)
        self._work = target
        self._on_failure = on_failure
        self.stopping = threading.Event()
        self.error: str | None = None  # "ExceptionType: message", once it died of one
        self.traceback = ""  # ... and where

    def work(self) -> None:
        if self._work is None:
            raise NotImplementedError("pass target= or override work()")
        self._work()

    def run(self) -> None:
        try:
            self.work()
        except BaseException as e:  # noqa: BLE001 - kept and reported as a node failure
            self.error, self.traceback = f"{type(e).__name__}: {e}", traceback.format_exc(limit=8)
        if self._on_failure is not None and self.failure is not None:
            self._on_failure(self.failure)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=timeout)

    @property
    def failure(self) -> str | None:
        """None while it runs (or after ``stop``), else one line: which thread and why it died."""
        if self.error is not None:
            return f"thread '{self.name}' died: {self.error}"
        if self.ident is not None and not self.is_alive() and not self.stopping.is_set():
            return f"thread '{self.name}' stopped unexpectedly"
        return None


class LogLimiter:
    """Per-key log rate limit, as a gate the caller logs through:

        if (line := limiter.allow("rejected.ee_pose.out_of_workspace", message)) is not None:
            logger.warning(line)

    ``allow`` returns the line to write if the key has not logged within ``interval_s`` (with the
    number of repeats suppressed since its last line appended), else None and counts the repeat.
    ``flush()`` returns one summary line per key whose suppressed repeats have waited a full
    interval (the caller logs them, e.g. from a 1 Hz timer). ``counts`` (every occurrence per key)
    is for diagnostics. The caller writes the lines, not this class: rclpy binds one severity to
    each call site (file and line), so a shared ``emit(...)`` line cannot log warnings and infos."""

    def __init__(self, interval_s: float, clock: Clock = time.monotonic):
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        self.interval_s, self.clock = interval_s, clock
        self.counts: dict[str, int] = {}
        self.written = 0  # occurrences that got their own line (the rest were counted, not logged)
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, tuple[int, str, bool]] = {}  # key -> (repeats, message, summarize)
        self._lock = threading.Lock()  # callbacks, the control thread and the status timer share it

    def allow(self, key: str, message: str, summarize: bool = True) -> str | None:
        """The line to log now, or None (a repeat within the interval: counted). ``summarize=False``
        leaves the key out of ``flush`` (e.g. debug-level keys)."""
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            now = self.clock()
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                n = self._suppressed.get(key, (0, message, summarize))[0]
                self._suppressed[key] = (n + 1, message, summarize)
                return None
            n = self._suppressed.pop(key, (0,))[0]
            self._last[key] = now
            self.written += 1
            return message + (f" ({n} more since the last report {now - last:.0f} s ago)" if n else "")

    def flush(self) -> list[str]:
        """Summary lines for keys with suppressed repeats whose interval has passed."""
        lines = []
        with self._lock:
            now = self.clock()
            for key, (n, message, summarize) in list(self._suppressed.items()):
                if now - self._last[key] >= self.interval_s:
                    del self._suppressed[key]
                    if summarize:
                        lines.append(f"{message} (repeated {n} more times in the last {now - self._last[key]:.0f} s)")
                    self._last[key] = now
        return lines

    @property
    def suppressed(self) -> int:
        """Occurrences counted but not given a line of their own."""
        with self._lock:
            return sum(self.counts.values()) - self.written


class Throttle:
    """At most one accepted event per ``min_interval_s`` (0 = no limit). ``request(value)`` records
    an event; ``poll()`` returns the newest requested value once it may be accepted, else None.
    ``coalesced`` counts the requests superseded by a newer one before acceptance (diagnostics)."""

    _NONE: Any = object()

    def __init__(self, min_interval_s: float, clock: Clock = time.monotonic):
        if min_interval_s < 0:
            raise ValueError(f"min_interval_s must be >= 0, got {min_interval_s}")
        self.min_interval_s, self.clock = min_interval_s, clock
        self.accepted = self.coalesced = 0
        self._last: float | None = None
        self._pending: Any = self._NONE
        self._lock = threading.Lock()  # request() from callbacks, poll() from the control thread

    def request(self, value: Any = True) -> None:
        with self._lock:
            if self._pending is not self._NONE:
                self.coalesced += 1  # an earlier request is superseded: only the newest counts
            self._pending = value

    def poll(self) -> Any:
        with self._lock:
            if self._pending is self._NONE:
                return None
            now = self.clock()
            if self._last is not None and now - self._last < self.min_interval_s:
                return None
            value, self._pending, self._last = self._pending, self._NONE, now
            self.accepted += 1
            return value

    @property
    def pending(self) -> bool:
        return self._pending is not self._NONE
