"""A policy server (`vla serve`, or any openpi websocket policy server) as a ChunkPolicy.

    policy = load_policy("ws://gpu-box:8000")                    # vla/runtime.py dispatches here
    policy = RemoteChunkPolicy("ws://gpu-box:8000", timeout_s=0.5, api_key=...)
    out = policy.infer(obs)          # the runtime dict in (vla/runtime.py), the same out dict back

    vla eval checkpoint=ws://127.0.0.1:8000 env=tabletop 'tasks=[push_red_left]'
    vla eval checkpoint=ws://127.0.0.1:8000 ... +policy.timeout_s=5     # client options via policy.*

Same ``infer``/``reset`` interface as a local checkpoint: ``embodiment``, ``n_action_steps``,
``chunk_size``, ``policy_type`` and ``num_params`` come from the server's metadata message, so
runners check compatibility and choose ``replan`` exactly as for a local policy. ``timing_ms`` has the
server's stages (preprocess, model, ... as the server measured them) plus ``network`` (round trip
minus the server's inference time) and ``round_trip``.

Failure handling, built so that a chunk is never executed past its time:

* Every ``infer`` has a deadline ``timeout_s`` after it was called. A reply that has not arrived by
  then raises :class:`RemotePolicyTimeout` and the connection is dropped, so that late reply can
  never be read as the answer to a later observation. The observation is not re-sent after a
  timeout (it is stale by then); the caller decides (``vla eval`` stops with the error; a ROS node
  holds and calls again with a fresh observation, which reconnects).
* A dropped connection (server restarted, network blip) is reconnected with exponential back-off
  (``backoff_s`` doubling up to ``backoff_max_s``) and the same observation re-sent, but only while
  the deadline allows; otherwise :class:`RemotePolicyError` naming the server, the attempts and the
  last cause. The back-off state survives across calls: a caller that retries every control period
  does not hammer a server that is down (calls inside the back-off window fail at once).
* An error reply from the server (a malformed observation, ...) raises :class:`RemoteRequestError`
  (a ValueError, like a local policy's input checks) with the server's message; the connection stays.
* ``out["obs_time"]`` is the ``time.monotonic()`` at which ``infer`` was called (when the observation
  was taken, for an async broker that aligns the chunk to its clock), ``out["age_s"]`` how old the
  chunk's observation is when it is returned (< ``timeout_s``).

Not thread-safe: one caller at a time (a ROS node calls it from its single inference worker).
Each request carries a ``seed`` drawn at ``reset`` from numpy's global RNG (which ``vla eval`` seeds
per episode), so a remote evaluation is reproducible run to run (``send_seed=False`` to leave the
server's noise alone).
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import weakref
from typing import Any

import numpy as np

SCHEMES = ("ws://", "wss://")
API_KEY_ENV = "VLA_SERVE_API_KEY"
log = logging.getLogger(__name__)


class RemotePolicyError(ConnectionError):
    """The policy server cannot be reached, went away, or did not answer in time."""


class RemotePolicyTimeout(RemotePolicyError, TimeoutError):
    """No reply within ``timeout_s``; the connection was dropped (no late reply is ever used)."""


class RemoteRequestError(ValueError):
    """The server answered with an error message about the request (the connection stays open)."""


def is_remote(checkpoint: Any) -> bool:
    return isinstance(checkpoint, str) and checkpoint.startswith(SCHEMES)


_OPEN: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Before interpreter shutdown: closing a websocket joins its (daemon) reader thread, which
    # hangs forever once finalization has frozen daemon threads (what a close in __del__ did).
    for policy in list(_OPEN):
        policy.close()


class RemoteChunkPolicy:
    """A websocket policy server as a ChunkPolicy (module docstring)."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, connect_timeout_s: float = 5.0, backoff_s: float = 0.2,
                 backoff_max_s: float = 5.0, api_key: str | None = None, send_seed: bool = True,
                 max_reply_mb: float = 64.0) -> None:
        if not is_remote(url):
            raise ValueError(f"a policy server url starts with ws:// or wss://, got {url!r}")
        for name, value in (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s),
                            ("backoff_s", backoff_s), ("backoff_max_s", backoff_max_s), ("max_reply_mb", max_reply_mb)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"RemoteChunkPolicy {name} must be a number > 0, got {value!r}")
        self.url = self.checkpoint = url
        self.timeout_s, self.connect_timeout_s = float(timeout_s), float(connect_timeout_s)
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self.api_key = api_key if api_key is not None else (os.environ.get(API_KEY_ENV) or None)
        self.send_seed, self.max_reply_bytes = bool(send_seed), int(max_reply_mb * 2**20)
        self._ws: Any = None
        self._delay = self.backoff_s  # the next back-off step
        self._next_attempt = 0.0  # monotonic time before which no reconnect is tried
        self._failures = 0
        self._last_error: BaseException | None = None
        self.reconnects = 0
        self._rng = np.random.default_rng(0)
        self._connect(time.monotonic() + self.connect_timeout_s, first=True)
        _OPEN.add(self)

    # ── what the server said about its policy ──
    def _read_metadata(self, metadata: Any) -> None:
        from policies.embodiment import Embodiment

        if not isinstance(metadata, dict) or "embodiment" not in metadata:
            raise RemotePolicyError(f"{self.url} is a websocket server but not a vla policy server: its first "
                                    f"message has no 'embodiment' (got {str(metadata)[:200]})")
        self.metadata = metadata
        self.embodiment = Embodiment.from_dict(metadata["embodiment"])
        self.policy_type = f"remote {metadata.get('policy_type') or 'policy'}"
        self.num_params = metadata.get("num_params") or None
        self.chunk_size = int(metadata.get("chunk_size") or 0) or None
        self.n_action_steps = int(metadata.get("n_action_steps") or 0) or None
        self.cameras = [c["name"] for c in metadata.get("cameras") or []] or self.embodiment.camera_names

    # ── connection ──
    def _connect(self, deadline: float, first: bool = False) -> None:
        """Connect and read the metadata, retrying with back-off until ``deadline``."""
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
        from websockets.sync.client import connect

        from vla.wire import unpackb

        while self._ws is None:
            now = time.monotonic()
            if self._next_attempt > now:
                if self._next_attempt >= deadline:
                    raise RemotePolicyError(
                        f"policy server {self.url} unreachable ({self._failures} failed attempts; last: "
                        f"{self._describe(self._last_error)}); next reconnect in {self._next_attempt - now:.2f} s")
                time.sleep(self._next_attempt - now)
            headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
            try:
                ws = connect(self.url, compression=None, max_size=self.max_reply_bytes, additional_headers=headers,
                             open_timeout=max(0.05, min(self.connect_timeout_s, deadline - time.monotonic())))
                try:
                    metadata = unpackb(ws.recv(timeout=max(0.05, deadline - time.monotonic())))
                except BaseException:
                    ws.close()
                    raise
            except InvalidURI as e:
                raise ValueError(f"not a policy server url: {self.url!r} ({e})") from None
            except InvalidStatus as e:
                status = e.response.status_code
                body = e.response.body.decode("utf-8", "replace").strip() if e.response.body else ""
                if status in (401, 403):  # retrying cannot fix a key
                    raise RemotePolicyError(f"policy server {self.url} refused the connection: HTTP {status} {body} "
                                            f"(set ${API_KEY_ENV} or pass api_key=)") from None
                self._failed(e)
            except (OSError, TimeoutError, InvalidHandshake, EOFError) as e:
                self._failed(e)
            except Exception as e:  # e.g. ConnectionClosed before the metadata, undecodable metadata
                self._failed(e)
            else:
                self._ws = ws
                if not first:
                    self.reconnects += 1
                    log.info("reconnected to policy server %s (after %d failed attempts)", self.url, self._failures)
                self._read_metadata(metadata)
                self._delay, self._next_attempt, self._failures = self.backoff_s, 0.0, 0
                return
            if time.monotonic() >= deadline or first and self._failures >= 3:
                hint = " (start one with `vla serve checkpoint=<dir>`)" if first else ""
                raise RemotePolicyError(f"no policy server answered at {self.url} after {self._failures} attempts; "
                                        f"last: {self._describe(self._last_error)}{hint}")

    def _failed(self, e: BaseException) -> None:
        if self._failures == 0:
            log.warning("policy server %s: %s", self.url, self._describe(e))
        self._failures += 1
        self._last_error = e
        self._next_attempt = time.monotonic() + self._delay
        self._delay = min(2 * self._delay, self.backoff_max_s)

    @staticmethod
    def _describe(e: BaseException | None) -> str:
        return "none" if e is None else f"{type(e).__name__}: {e}"

    def _drop(self, reason: BaseException | None = None) -> None:
        ws, self._ws = self._ws, None
        if reason is not None:
            self._last_error = reason
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001  (already broken)
                pass

    def close(self) -> None:
        self._drop()

    @property
    def connected(self) -> bool:
        """False as soon as the connection is known to be lost (the websocket's reader thread saw it
        close: a server that vanished), before any call notices; a ROS node then stops executing
        the server's last chunk. The next ``infer`` reconnects."""
        from websockets.protocol import State

        ws = self._ws
        return ws is not None and ws.state is State.OPEN

    # ── ChunkPolicy ──
    def reset(self) -> None:
        """The server keeps no per-client state; draws this episode's noise seed (see the module docstring)."""
        self._rng = np.random.default_rng(int(np.random.randint(2**31)))

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        from vla.runtime import check_actions
        from vla.wire import packb, unpackb

        called = time.monotonic()
        deadline = called + self.timeout_s
        request: dict[str, Any] = {
            "images": {cam: np.asarray(img) for cam, img in dict(obs.get("images") or {}).items()},
            "state": np.asarray(obs.get("state"), dtype=np.float32) if obs.get("state") is not None else None,
            "instruction": obs.get("instruction"),
        }
        request = {k: v for k, v in request.items() if v is not None}
        if self.send_seed:
            request["seed"] = int(self._rng.integers(2**31))
        payload = packb(request)
        while True:
            self._connect(deadline)
            sent = time.monotonic()
            try:
                self._ws.send(payload)
                reply = self._ws.recv(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                self._drop()  # a reply that arrives later must never answer a later observation
                raise RemotePolicyTimeout(f"policy server {self.url} did not answer within timeout_s={self.timeout_s} s; "
                                          "connection dropped (it reconnects on the next call)") from None
            except ConnectionClosed as e:
                self._drop(e)
                close = e.rcvd or e.sent
                if close is not None and close.code == 1009:
                    raise RemotePolicyError(f"policy server {self.url} refused the observation as too big: "
                                            f"{close.reason}") from None
                self._failed(e)  # reconnect with back-off, re-send while the deadline allows
                continue
            except OSError as e:
                self._drop(e)
                self._failed(e)
                continue
            break
        received = time.monotonic()
        if isinstance(reply, str):
            raise RemoteRequestError(f"policy server {self.url}: {reply.removeprefix('error: ')}")
        out = unpackb(reply)
        if not isinstance(out, dict) or "actions" not in out:
            raise RemotePolicyError(f"policy server {self.url} replied without 'actions': {str(out)[:200]}")
        server = out.get("server_timing") or {}
        timing = {str(k): float(v) for k, v in (out.get("policy_timing") or {}).items()}
        round_trip = (received - sent) * 1e3
        timing["network"] = max(0.0, round_trip - float(server.get("infer_ms", 0.0)))
        timing["round_trip"] = round_trip
        return {
            "actions": check_actions(out["actions"], self.embodiment, source=f"policy server {self.url}"),
            "timing_ms": timing,
            "visual_tokens": int(out.get("visual_tokens") or 0),
            "keep_masks": {},
            "server_timing": server,
            "obs_time": called,
            "age_s": received - called,
        }


def load_remote_policy(url: str, device: str = "cpu", accel: Any = None, trust_checkpoint_code: bool | None = None,
                       **options: Any) -> RemoteChunkPolicy:
    """``load_policy("ws://...")``: the server loaded the checkpoint (its device, its accel); ``options``
    are RemoteChunkPolicy's (timeout_s, connect_timeout_s, backoff_s, backoff_max_s, api_key, send_seed)."""
    if accel is not None:
        raise ValueError(f"accel applies where the policy runs: start the server with it, not the client ({url})")
    known = {"timeout_s", "connect_timeout_s", "backoff_s", "backoff_max_s", "api_key", "send_seed", "max_reply_mb"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"a remote policy ({url}) takes only the client options {sorted(known)}; got {unknown} "
                         "(policy config overrides belong to the server's checkpoint)")
    return RemoteChunkPolicy(url, **options)
