"""Action-chunk broker: one action per control tick from the current chunk, next chunk requested early.

Pure Python, thread-safe: the control timer calls ``tick``/``want_chunk``/``begin_request`` on the
executor thread; the inference worker calls ``deliver``/``fail`` from its own thread.

    if broker.want_chunk():                 # <= replan_remaining actions left, nothing in flight
        token = broker.begin_request(meta)  # hand obs + token to the worker
    action, meta = broker.tick()            # None when the chunk ran out (caller holds)
    ...worker: broker.deliver(token, chunk) # or broker.fail(token)

The current chunk keeps being served while the next one is inferred (openpi / SmolVLA async style).
With ``align=True`` a delivered chunk drops the actions that were served from the previous chunk
since the request was made: action 0 of the new chunk belongs to the observation time, and the
robot has already moved on by that many steps; plus ``lived`` (``begin_request``): actions served
before the request that the observation does not show yet (the policy node counts the ones
published after the frame's capture stamp). At least the last action is always kept.
With ``sync=True`` nothing is served while a request is in flight (the caller holds: stop-and-go,
as `vla eval` runs chunks), so a new chunk always starts at its first action, planned from the
state the robot is still in.
For RTC (``chunk_execution=rtc`` on the policy node), ``executing`` says which actions of the current
chunk the next one must continue (vla/chunking.py ``rtc_guide``).
``reset`` (new episode, new instruction, input loss) drops the chunk and orphans any request in
flight, whose late ``deliver`` is then ignored.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


class ChunkBroker:
    def __init__(self, replan_remaining: int = 0, align: bool = True, sync: bool = False):
        if replan_remaining < 0:
            raise ValueError(f"replan_remaining must be >= 0, got {replan_remaining}")
        self.replan_remaining, self.align, self.sync = replan_remaining, align, sync
        self._lock = threading.Lock()
        self._generation = 0
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self._chunk: np.ndarray | None = None
            self._index = 0
            self._meta: dict[str, Any] | None = None
            self._in_flight: tuple[int, int, dict] | None = None  # (generation, served at request, meta)
            self._served = 0

    @property
    def remaining(self) -> int:
        with self._lock:
            return self._remaining()

    def _remaining(self) -> int:
        return 0 if self._chunk is None else len(self._chunk) - self._index

    def want_chunk(self) -> bool:
        with self._lock:
            return self._in_flight is None and self._remaining() <= self.replan_remaining

    def begin_request(self, meta: dict[str, Any] | None = None, lived: int = 0) -> int:
        """``lived``: actions of the current chunk already served *before* this request that the
        observation does not show yet (published after its frame was captured): also dropped."""
        with self._lock:
            self._in_flight = (self._generation, self._served - max(0, lived), dict(meta or {}))
            return self._generation

    def executing(self, lived: int = 0, ahead: int = 0) -> tuple[np.ndarray, int, int] | None:
        """For real-time chunking, at a request: (the current chunk, the index of the action the
        observation belongs to, how many of its actions execute before a chunk inferred now arrives,
        ``ahead`` ticks from now), or None without a chunk. The index goes back by ``lived`` (actions
        served that the observation does not show yet), as the delivery's alignment does."""
        with self._lock:
            if self._chunk is None:
                return None
            start = max(0, self._index - max(0, lived))
            executing = min(self._index - start + max(0, ahead), len(self._chunk) - start)
            return self._chunk.copy(), start, executing

    def deliver(self, token: int, chunk: np.ndarray) -> bool:
        """Install a new chunk [H, D]; returns False if it was orphaned by a reset."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or chunk.shape[0] < 1:
            raise ValueError(f"a chunk must be [H >= 1, D], got shape {chunk.shape}")
        with self._lock:
            if self._in_flight is None or token != self._generation:
                return False
            _, served_at_request, meta = self._in_flight
            skip = min(self._served - served_at_request, len(chunk) - 1) if self.align else 0
            self._chunk, self._index, self._in_flight = chunk, skip, None
            self._meta = {**meta, "skipped": skip}
            return True

    def fail(self, token: int) -> None:
        with self._lock:
            if token == self._generation:
                self._in_flight = None

    def tick(self) -> tuple[np.ndarray | None, dict[str, Any] | None]:
        """Pop the next action. ``meta`` is returned with the first action of each chunk only."""
        with self._lock:
            if self._remaining() <= 0 or (self.sync and self._in_flight is not None):
                return None, None
            action = self._chunk[self._index]
            self._index += 1
            self._served += 1
            meta, self._meta = self._meta, None
            return action, meta
