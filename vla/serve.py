"""`vla serve`: a checkpoint as a network policy server, for a robot computer that is not the GPU box.

    vla serve checkpoint=checkpoints/push_red_left_tiny_cvla               # ws://127.0.0.1:8000
    vla serve checkpoint=<dir> host=0.0.0.0 port=8000                       # + $VLA_SERVE_API_KEY set
    vla serve checkpoint=<dir> protocol=lerobot port=8080                   # lerobot's gRPC async inference

``protocol=openpi`` (default) speaks openpi's websocket protocol (openpi ``serving/
websocket_policy_server.py``), so the ``openpi-client`` package (``WebsocketClientPolicy``,
``ActionChunkBroker``, its ``runtime/``) works unchanged, and so does ``vla eval
checkpoint=ws://host:port`` (vla/remote.py):

* One websocket per client, binary frames, msgpack with numpy arrays (openpi's ``msgpack_numpy``:
  an array is the map ``{"__ndarray__": true, "data": <bytes>, "dtype": "<f4", "shape": [..]}``; only
  bool/int/uint/float dtypes are accepted).
* On connect the server sends one metadata map (:meth:`PolicyServer.metadata`): the policy's
  ``embodiment`` (``Embodiment.to_dict()``: cameras, state/action dims, action kind and limits),
  ``cameras``, ``state_dim``, ``action_dim``, ``chunk_size``, ``n_action_steps``, ``policy_type``,
  ``checkpoint``, ``max_message_bytes``, ``auth``.
* Then, per request, the client sends an observation map and gets back
  ``{"actions": float32 [chunk, action_dim], "server_timing": {"infer_ms", "prev_total_ms", "queue_ms"},
  "policy_timing": {stage: ms}, "visual_tokens": int}``. Actions are the runtime's: un-normalised,
  finite, clipped into the robot's limits (vla/runtime.py ``check_actions``).
* Observation keys, the runtime dict (vla/runtime.py) or openpi-style flat keys:

      images: {<camera>: uint8 [H, W, 3]}   or  observation/images/<camera>, observation/<camera>,
                                                observation.images.<camera>   ([3, H, W] is transposed)
      state: float [state_dim]              or  observation/state, observation.state
      instruction: str                      or  prompt, task
      seed: int (optional)                  reseed the flow head's noise for this request

  Camera names are the metadata's ``cameras``; other keys are ignored.
* A request the server cannot answer (not msgpack, not a map, a missing key, a wrong-shape image,
  NaN state, ...) gets a *text* frame ``"error: <what is wrong>"`` (what openpi's client raises as
  ``RuntimeError("Error in inference server: ...")``) and the connection stays open. A message
  over ``max_message_mb`` closes that connection with code 1009 and a reason naming the limit
  (the bytes are never buffered). Either way the server goes on serving every other client.
* ``GET /healthz`` on the same port answers ``200 OK`` (openpi's health check route; no key needed).
* Auth: when ``$VLA_SERVE_API_KEY`` (``api_key_env``) is set, the websocket handshake needs the
  header ``Authorization: Api-Key <key>`` (what ``WebsocketClientPolicy(..., api_key=<key>)``
  sends); a missing or wrong key gets HTTP 401. The key is read from the environment, never from
  the command line (it would be in ``ps`` and in the run dir's .hydra/ copies).
* Several clients: one policy, inference serialised (one forward at a time, first come first
  served) on a worker thread, so the event loop keeps accepting clients and answering health
  checks meanwhile. VLA checkpoints keep no state between ``infer`` calls, so clients cannot see
  each other; a policy with observation history (lerobot Diffusion, ``n_obs_steps`` > 1) is refused.

``protocol=lerobot`` runs lerobot's own gRPC ``PolicyServer`` (``lerobot.async_inference``) with the
vla plugin registered and ``vla`` added to its ``SUPPORTED_POLICIES`` from the outside (lerobot
0.6.1 has a fixed list and never loads plugins there); see :func:`serve_lerobot`.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import logging
import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vla.wire import WireDtypeError, packb, unpackb

log = logging.getLogger(__name__)

PROTOCOLS = ("openpi", "lerobot")
HEALTH_PATH = "/healthz"
API_KEY_HEADER = "Authorization"
API_KEY_PREFIX = "Api-Key "  # openpi-client's WebsocketClientPolicy(api_key=...) sends "Api-Key <key>"
class RequestError(ValueError):
    """A request the server cannot answer; the message goes back to the client as the error reply."""


def decode_request(data: bytes | str) -> dict[str, Any]:
    """One websocket message -> the request map; RequestError naming what is wrong with it."""
    if isinstance(data, str):
        raise RequestError("expected a binary msgpack message (openpi-client's msgpack_numpy), got a text frame")
    try:
        msg = unpackb(data)
    except WireDtypeError as e:
        raise RequestError(str(e)) from None
    except Exception as e:  # msgpack's ExtraData/FormatError/StackError, numpy's buffer errors, ...
        raise RequestError(f"the message ({len(data)} bytes) is not msgpack-numpy: {type(e).__name__} {e}".rstrip()) from None
    if not isinstance(msg, dict):
        raise RequestError(f"the message must be a msgpack map of observation fields, got {type(msg).__name__}")
    return msg


def runtime_obs(msg: dict[str, Any], cameras: list[str]) -> dict[str, Any]:
    """A request map (the runtime dict or openpi-style flat keys, see the module docstring) -> the
    runtime observation dict; RequestError naming a missing or malformed field."""
    images = msg.get("images")
    if images is None:
        images = {}
        for cam in cameras:
            for key in (f"observation/images/{cam}", f"observation/{cam}", f"observation.images.{cam}"):
                if key in msg:
                    images[cam] = msg[key]
                    break
    if not isinstance(images, dict):
        raise RequestError(f"'images' must be a map camera -> uint8 [H, W, 3], got {type(images).__name__}")
    missing = [cam for cam in cameras if cam not in images]
    if missing:
        wanted = ", ".join(f"'{c}': uint8 [H, W, 3]" for c in cameras)
        raise RequestError(f"missing camera image(s) {missing}: send 'images': {{{wanted}}} "
                           "(or flat keys 'observation/images/<camera>')")
    out_images = {}
    for cam in cameras:
        img = images[cam]
        if not isinstance(img, np.ndarray):
            raise RequestError(f"camera '{cam}' must be a numpy uint8 [H, W, 3] array, got {type(img).__name__}")
        if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
            img = img.transpose(1, 2, 0)  # [3, H, W] (openpi's ALOHA clients) -> [H, W, 3]
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
            raise RequestError(f"camera '{cam}' must be uint8 [H, W, 3] (RGB, upright), got {img.dtype} {list(img.shape)}")
        out_images[cam] = np.array(img)  # a writable copy (msgpack's buffer is read-only)
    state = next((msg[k] for k in ("state", "observation/state", "observation.state") if k in msg), None)
    if state is None:
        raise RequestError("missing 'state' (float [state_dim]; or 'observation/state')")
    state = np.asarray(state)
    if state.dtype.kind not in "iuf" or state.ndim != 1:
        raise RequestError(f"'state' must be a 1-D float array, got {state.dtype} {list(state.shape)}")
    instruction = next((msg[k] for k in ("instruction", "prompt", "task") if k in msg), None)
    if instruction is None:
        raise RequestError("missing 'instruction' (str; or openpi's 'prompt')")
    if isinstance(instruction, bytes):
        instruction = instruction.decode("utf-8", "replace")
    if not isinstance(instruction, str):
        raise RequestError(f"'instruction' must be a string, got {type(instruction).__name__}")
    return {"images": out_images, "state": state.astype(np.float32), "instruction": instruction}


def _request_seed(msg: dict[str, Any]) -> int | None:
    seed = msg.get("seed")
    if seed is None:
        return None
    if isinstance(seed, np.generic):
        seed = seed.item()
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise RequestError(f"'seed' must be a non-negative integer, got {seed!r}")
    return seed


# ── the websocket server ──────────────────────────────────────────────────────────────────


class PolicyServer:
    """A ChunkPolicy (vla/runtime.py) behind openpi's websocket protocol (module docstring).

    ``seed``: when set, the flow head's noise is reseeded to it before every request without its own
    ``seed`` (same observation -> same chunk). ``api_key``: required in the handshake when set.
    """

    def __init__(self, policy: Any, host: str = "127.0.0.1", port: int = 8000, *, max_message_bytes: int = 16 << 20,
                 api_key: str | None = None, seed: int | None = None, max_clients: int = 8) -> None:
        if int(getattr(policy, "n_obs_steps", 1) or 1) > 1:
            raise ValueError(f"policy '{getattr(policy, 'checkpoint', '')}' conditions on {policy.n_obs_steps} past "
                             "frames (n_obs_steps); a server shares one policy between clients, so their histories "
                             "would mix. Serve policies with n_obs_steps=1.")
        self.policy, self.host, self.port = policy, host, int(port)
        self.max_message_bytes, self.api_key, self.seed = int(max_message_bytes), api_key or None, seed
        self.max_clients = int(max_clients)
        self.cameras = list(policy.embodiment.camera_names)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-serve-infer")
        self._clients = 0
        self.requests = 0
        self.errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None
        self._thread: threading.Thread | None = None

    def metadata(self) -> dict[str, Any]:
        """The map sent on connect: what a client needs to build observations and use the chunks."""
        p, robot = self.policy, self.policy.embodiment
        return {
            "server": "vla", "protocol": "openpi-websocket", "protocol_version": 1,
            "checkpoint": str(getattr(p, "checkpoint", "")),
            "policy_type": str(getattr(p, "policy_type", type(p).__name__)),
            "num_params": int(getattr(p, "num_params", 0) or 0),
            "embodiment": robot.to_dict(),
            "cameras": [{"name": c.name, "height": c.height, "width": c.width} for c in robot.cameras],
            "state_dim": robot.state_dim, "action_dim": robot.action_dim,
            "chunk_size": int(getattr(p, "chunk_size", 0) or 0),
            "n_action_steps": int(getattr(p, "n_action_steps", 0) or 0),
            "observation_keys": {"images": {c: "uint8 [H, W, 3]" for c in self.cameras},
                                 "state": f"float32 [{robot.state_dim}]", "instruction": "str", "seed": "int (optional)"},
            "max_message_bytes": self.max_message_bytes,
            "auth": self.api_key is not None,
        }

    # ── inference (worker thread) ──
    def infer(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A decoded request -> the reply map; RequestError for what the client got wrong."""
        obs = runtime_obs(msg, self.cameras)
        seed = _request_seed(msg)
        seed = self.seed if seed is None else seed
        with self._lock:
            if seed is not None:
                import torch

                torch.manual_seed(seed)
            try:
                out = self.policy.infer(obs)
            except (ValueError, KeyError, TypeError) as e:  # the runtime/preprocessor's named checks
                raise RequestError(str(e)) from e
        return {"actions": np.asarray(out["actions"], np.float32),
                "policy_timing": {str(k): float(v) for k, v in (out.get("timing_ms") or {}).items()},
                "visual_tokens": int(out.get("visual_tokens") or 0)}

    # ── websocket side (event loop) ──
    def _process_request(self, connection: Any, request: Any) -> Any:
        if request.path.split("?")[0] == HEALTH_PATH:
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.api_key is not None:
            got = request.headers.get(API_KEY_HEADER, "")
            key = got[len(API_KEY_PREFIX):] if got.startswith(API_KEY_PREFIX) else got.removeprefix("Bearer ")
            if not got or not hmac.compare_digest(key.encode(), self.api_key.encode()):
                log.warning("refused %s: %s API key", connection.remote_address, "wrong" if got else "no")
                return connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                          "missing or wrong API key: send the header 'Authorization: Api-Key <key>' "
                                          "(openpi-client: WebsocketClientPolicy(host, port, api_key=<key>))\n")
        if self._clients >= self.max_clients:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"busy: {self._clients} clients connected (max_clients={self.max_clients})\n")
        return None

    async def _handler(self, ws: Any) -> None:
        import websockets
        from websockets.protocol import State

        peer = ws.remote_address
        self._clients += 1
        log.info("client %s connected (%d connected)", peer, self._clients)
        loop = asyncio.get_running_loop()
        prev_total_ms = None
        try:
            await ws.send(packb(self.metadata()))
            while True:
                try:
                    data = await ws.recv()
                except websockets.ConnectionClosed as e:
                    if e.sent is not None and e.sent.code == 1009:  # websockets enforced max_size
                        log.warning("client %s: message over max_message_bytes=%d, connection closed: %s",
                                    peer, self.max_message_bytes, e.sent.reason)
                    break
                start = time.monotonic()
                self.requests += 1
                try:
                    msg = decode_request(data)
                    queued = time.monotonic()
                    reply = await loop.run_in_executor(self._executor, self._timed_infer, msg, queued,
                                                       lambda: ws.state is State.OPEN)
                    if reply is None:  # the client left while the request waited for the policy
                        break
                except RequestError as e:
                    self.errors += 1
                    log.info("client %s: bad request: %s", peer, e)
                    await ws.send(f"error: {e}")
                    continue
                except Exception as e:  # a server-side failure: named to the client, logged here in full
                    self.errors += 1
                    log.error("client %s: inference failed:\n%s", peer, traceback.format_exc())
                    await ws.send(f"error: inference failed on the server: {type(e).__name__}: {e}")
                    continue
                if prev_total_ms is not None:
                    reply["server_timing"]["prev_total_ms"] = prev_total_ms
                await ws.send(packb(reply))
                prev_total_ms = (time.monotonic() - start) * 1e3  # openpi: the previous request's, send included
        except websockets.ConnectionClosed:
            pass
        finally:
            self._clients -= 1
            log.info("client %s disconnected (%d connected)", peer, self._clients)

    def _timed_infer(self, msg: dict[str, Any], queued: float, alive: Any = None) -> dict[str, Any] | None:
        if alive is not None and not alive():
            return None  # nobody waits for this answer any more: do not make the others wait for it
        start = time.monotonic()
        reply = self.infer(msg)
        reply["server_timing"] = {"infer_ms": (time.monotonic() - start) * 1e3, "queue_ms": (start - queued) * 1e3}
        return reply

    async def run(self, ready: Any = None) -> None:
        """Serve until :meth:`stop`; ``ready(port)`` is called once listening (port=0 picks a free one)."""
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._handler, self.host, self.port, compression=None, max_size=self.max_message_bytes,
                         max_queue=4, process_request=self._process_request) as server:
            self.port = int(next(iter(server.sockets)).getsockname()[1])
            if ready is not None:
                ready(self.port)
            await self._stop
        self._executor.shutdown(wait=True)

    def stop(self) -> None:
        """Stop serving (from any thread)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(lambda: self._stop.done() or self._stop.set_result(None))
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def start_in_thread(self, timeout: float = 10.0) -> int:
        """Serve on a background thread (tests, notebooks); returns the port once listening."""
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self.run(lambda _: ready.set())),
                                        name="vla-serve", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"the policy server did not start listening on {self.host}:{self.port} in {timeout} s")
        return self.port

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"


# ── lerobot's gRPC async inference with the vla plugin ──────────────────────────────────────


def lerobot_policy_server(checkpoint: str | Path, trust_checkpoint_code: bool = False, log_dir: str | Path = "."):
    """lerobot 0.6's ``PolicyServer`` class (``lerobot.async_inference.policy_server``) able to serve
    ``vla`` checkpoints, without patching lerobot:

    * the vla plugin is registered (``register_third_party_plugins``; the server never calls it) and
      ``"vla"`` appended to ``SUPPORTED_POLICIES`` (the list object the server module imported);
    * the module is imported with ``log_dir`` as the working directory: it opens
      ``logs/policy_server_<time>.log`` relative to the cwd when imported;
    * the returned subclass serves only ``checkpoint``: a RobotClient asking for another
      ``pretrained_name_or_path`` is refused (INVALID_ARGUMENT naming both), and vla's checkpoint
      checks (processor steps are data, not code) run before lerobot loads it.

    Returns the subclass; build it with a ``lerobot.async_inference.configs.PolicyServerConfig``.
    """
    import grpc

    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    import lerobot_policy_vla  # noqa: F401  (the plugin, in case it is installed without its entry point)

    cwd = os.getcwd()
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    os.chdir(log_dir)
    try:
        from lerobot.async_inference import constants, policy_server
    finally:
        os.chdir(cwd)
    from lerobot.async_inference.helpers import RemotePolicyConfig

    from policies.checkpoint_files import check_processor_files
    from vla.runtime import VLA_TYPE, check_actions, policy_embodiment

    for supported in {id(constants.SUPPORTED_POLICIES): constants.SUPPORTED_POLICIES,
                      id(policy_server.SUPPORTED_POLICIES): policy_server.SUPPORTED_POLICIES}.values():
        if VLA_TYPE not in supported:
            supported.append(VLA_TYPE)
    served = Path(checkpoint).expanduser().resolve()

    class VLAPolicyServer(policy_server.PolicyServer):
        checkpoint = served

        def SendPolicyInstructions(self, request, context):  # noqa: N802  (gRPC method name)
            import pickle  # nosec: lerobot's protocol pickles (trusted clients only; bind loopback)

            specs = pickle.loads(request.data)  # nosec
            if isinstance(specs, RemotePolicyConfig):
                asked = Path(str(specs.pretrained_name_or_path)).expanduser().resolve()
                if asked != served:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"this server serves '{served}'; the client asked for '{specs.pretrained_name_or_path}'"
                                  f" (pass --pretrained_name_or_path={served})")
                try:
                    check_processor_files(served, trust_code=trust_checkpoint_code)
                except ValueError as e:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
            return super().SendPolicyInstructions(request, context)

        def _predict_action_chunk(self, observation_t):
            """lerobot's chunk, checked as every vla chunk is (vla/runtime.py check_actions): NaN/Inf
            raise (lerobot's GetActions then logs it and sends nothing), values are clipped into
            the robot's action limits (lerobot's server does neither)."""
            import torch

            chunk = super()._predict_action_chunk(observation_t)
            if chunk:
                robot = policy_embodiment(self.policy.config)
                actions = check_actions(torch.stack([a.get_action() for a in chunk]).float().numpy(), robot,
                                        source=f"policy '{served}'")
                for timed, row in zip(chunk, actions):
                    timed.action = torch.from_numpy(row.copy())
            return chunk

    return VLAPolicyServer


def serve_lerobot(cfg: Any, out_dir: Path, checkpoint: Path, ready: Any = None) -> None:
    """lerobot's gRPC policy server (``vla serve protocol=lerobot``) until SIGINT/SIGTERM."""
    import signal
    from concurrent import futures

    import grpc

    server_cls = lerobot_policy_server(checkpoint, bool(cfg.trust_checkpoint_code), out_dir)
    from lerobot.async_inference.configs import PolicyServerConfig
    from lerobot.transport import services_pb2_grpc

    lr = cfg.get("lerobot") or {}
    config = PolicyServerConfig(host=str(cfg.host), port=int(cfg.port) or 8080, fps=int(lr.get("fps", 30)),
                                inference_latency=float(lr.get("inference_latency", 0.0)),
                                obs_queue_timeout=float(lr.get("obs_queue_timeout", 2.0)))
    servicer = server_cls(config)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    services_pb2_grpc.add_AsyncInferenceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{cfg.host}:{int(cfg.port)}")
    if not port:
        raise SystemExit(f"vla serve: error: cannot bind {cfg.host}:{cfg.port}")
    server.start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    if ready is not None:
        ready(port)
    try:
        done.wait()
    finally:
        servicer.stop()
        server.stop(grace=1).wait()


# ── the command ────────────────────────────────────────────────────────────────────────────


def _announce(out_dir: Path, protocol: str, host: str, port: int, checkpoint: Path, extra: dict) -> None:
    import json

    url = f"ws://{host}:{port}" if protocol == "openpi" else f"{host}:{port}"
    (out_dir / "serve.json").write_text(json.dumps({"protocol": protocol, "url": url, "host": host, "port": port,
                                                    "checkpoint": str(checkpoint), "pid": os.getpid(), **extra},
                                                   indent=2) + "\n")
    how = (f"openpi-client: WebsocketClientPolicy(host='{host}', port={port}); vla eval checkpoint={url}"
           if protocol == "openpi" else
           f"lerobot RobotClient: --server_address={url} --policy_type=vla --pretrained_name_or_path={checkpoint}")
    print(f"vla serve: listening on {url} ({protocol}); {how}", flush=True)


def main(cfg: Any) -> None:
    """Hydra entry point (`vla serve ...`)."""
    import ipaddress
    import signal

    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    protocol = str(cfg.protocol)
    if protocol not in PROTOCOLS:
        raise SystemExit(f"vla serve: error: protocol={protocol} is not one of {', '.join(PROTOCOLS)}")
    host, port = str(cfg.host), int(cfg.port)
    if not 0 <= port < 65536:
        raise SystemExit(f"vla serve: error: port={port} must be 0..65535 (0 = any free port)")
    max_mb = float(cfg.max_message_mb)
    if not max_mb > 0:
        raise SystemExit(f"vla serve: error: max_message_mb={max_mb} must be > 0")
    api_key = (os.environ.get(str(cfg.api_key_env), "") if cfg.get("api_key_env") else "") or None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and api_key is None:
        log.warning("serving on %s without an API key: anyone who can reach this port can run the policy "
                    "(set $%s to require one)", host, cfg.api_key_env)
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(int(cfg.threads))

    from vla.runtime import checkpoint_type, load_policy

    checkpoint = Path(str(cfg.checkpoint)).expanduser().absolute()
    if not checkpoint.is_dir():
        raise SystemExit(f"vla serve: error: checkpoint folder not found: '{checkpoint}' (pass checkpoint=<a folder "
                         "saved by vla train or lerobot-train>)")
    try:
        checkpoint_type(checkpoint)
        if protocol == "lerobot":  # lerobot's server loads it when a client asks; its files are checked now
            from policies.checkpoint_files import check_processor_files

            check_processor_files(checkpoint, trust_code=bool(cfg.trust_checkpoint_code))
        else:
            policy = load_policy(checkpoint, str(cfg.device), trust_checkpoint_code=bool(cfg.trust_checkpoint_code))
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"vla serve: error: {e}") from None

    if protocol == "lerobot":
        serve_lerobot(cfg, out_dir, checkpoint, ready=lambda p: _announce(out_dir, protocol, host, p, checkpoint, {}))
        return
    log.info("policy %s: %s", checkpoint, policy.embodiment.describe())

    try:
        server = PolicyServer(policy, host, port, max_message_bytes=int(max_mb * 2**20), api_key=api_key,
                              seed=None if cfg.get("seed") is None else int(cfg.seed),
                              max_clients=int(cfg.max_clients))
    except ValueError as e:
        raise SystemExit(f"vla serve: error: {e}") from None

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.run(ready=lambda p: _announce(out_dir, protocol, host, p, checkpoint,
                                                   {"metadata": server.metadata()}))

    try:
        asyncio.run(run())
    except OSError as e:  # address in use, cannot bind
        raise SystemExit(f"vla serve: error: cannot serve on {host}:{port}: {e}") from None
    log.info("stopped after %d requests (%d errors)", server.requests, server.errors)
