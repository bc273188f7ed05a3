"""`vla serve`'s websocket server (vla/serve.py) and its client (vla/remote.py), in this process.

The server runs on a background thread (``PolicyServer.start_in_thread``) on a free loopback port;
clients are the real ``openpi-client`` package (installed with --no-deps: it pins numpy<2) and
``RemoteChunkPolicy``. The subprocess `vla serve` + a remote `vla eval` + lerobot's gRPC path are in
tests/e2e/test_serve_openpi_client.py."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from sim import spaces
from tiny_models import save_tiny_checkpoint
from vla.remote import RemoteChunkPolicy, RemotePolicyError, RemotePolicyTimeout, RemoteRequestError
from vla.runtime import load_policy
from vla.serve import PolicyServer
from vla.wire import packb

# openpi's own client (make install: pip install --no-deps openpi-client): missing fails, never skips.
from openpi_client import websocket_client_policy
from openpi_client import action_chunk_broker

SEED = 3
CAMS = ("agentview", "wrist")


def make_obs(size: int = 128, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": {cam: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for cam in CAMS},
            "state": rng.normal(size=8).astype(np.float32), "instruction": "push the red cube to the left"}


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    torch.set_num_threads(1)
    return load_policy(save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny"), "cpu")


@pytest.fixture(scope="module")
def server(policy):
    srv = PolicyServer(policy, "127.0.0.1", 0, seed=SEED, max_message_bytes=4 << 20)
    srv.start_in_thread()
    yield srv
    srv.stop()


def local_chunk(policy, obs: dict, seed: int = SEED) -> np.ndarray:
    torch.manual_seed(seed)
    return policy.infer(obs)["actions"]


_OPENED: list = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _OPENED:  # openpi's client never closes its socket; the server counts open ones (max_clients)
        _OPENED.pop().close()


def client(srv: PolicyServer, **kw) -> websocket_client_policy.WebsocketClientPolicy:
    c = websocket_client_policy.WebsocketClientPolicy("127.0.0.1", srv.port, **kw)
    _OPENED.append(c._ws)
    return c


def test_openpi_client_gets_metadata_then_the_local_actions(server, policy):
    c = client(server)
    meta = c.get_server_metadata()
    assert meta["embodiment"] == policy.embodiment.to_dict()
    assert [cam["name"] for cam in meta["cameras"]] == list(CAMS) and meta["action_dim"] == 7
    assert meta["chunk_size"] == policy.chunk_size and meta["n_action_steps"] == policy.n_action_steps
    obs = make_obs()
    out = c.infer(obs)
    np.testing.assert_array_equal(out["actions"], local_chunk(policy, obs))
    assert out["actions"].dtype == np.float32 and out["actions"].shape == (policy.chunk_size, 7)
    assert out["server_timing"]["infer_ms"] > 0 and "total" in out["policy_timing"]
    assert "prev_total_ms" in c.infer(obs)["server_timing"]  # openpi's: from the second request on
    # openpi's ActionChunkBroker slices every array of the reply: one action per call.
    broker = action_chunk_broker.ActionChunkBroker(c, action_horizon=4)
    np.testing.assert_array_equal(broker.infer(obs)["actions"], out["actions"][0])


def test_openpi_flat_keys_and_chw_images_mean_the_same_observation(server, policy):
    obs = make_obs(seed=1)
    flat = {"observation/images/agentview": obs["images"]["agentview"].transpose(2, 0, 1),  # [3, H, W]
            "observation/wrist": obs["images"]["wrist"], "observation/state": obs["state"],
            "prompt": obs["instruction"], "extra": "ignored"}
    np.testing.assert_array_equal(client(server).infer(flat)["actions"], local_chunk(policy, obs))


def test_health_check_route(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as r:
        assert r.status == 200 and r.read() == b"OK\n"


BAD = {
    "garbage bytes": (b"\xc1\x00\xffnot msgpack", "not msgpack"),
    "a text frame": ("hello", "binary msgpack"),
    "not a map": (packb([1, 2, 3]), "msgpack map"),
    "missing state": (packb({k: v for k, v in make_obs().items() if k != "state"}), "missing 'state'"),
    "missing camera": (packb({**make_obs(), "images": {"agentview": make_obs()["images"]["agentview"]}}), "wrist"),
    "missing instruction": (packb({k: v for k, v in make_obs().items() if k != "instruction"}), "instruction"),
    "wrong-shape image": (packb({**make_obs(), "images": {**make_obs()["images"],
                                                          "wrist": np.zeros((128, 128, 4), np.uint8)}}),
                          r"camera 'wrist' must be uint8 \[H, W, 3\].*\[128, 128, 4\]"),
    "float image": (packb({**make_obs(), "images": {**make_obs()["images"], "agentview": np.zeros((128, 128, 3))}}),
                    "agentview.*uint8.*float64"),
    "wrong state size": (packb({**make_obs(), "state": np.zeros(5, np.float32)}), "observation.state"),
    "NaN state": (packb({**make_obs(), "state": np.full(8, np.nan, np.float32)}), "NaN"),
    "bad seed": (packb({**make_obs(), "seed": -1}), "seed"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_request_gets_a_named_error_and_the_server_keeps_serving(server, policy, case):
    import re

    data, match = BAD[case]
    c = client(server)
    c._ws.send(data)  # raw, as a buggy client would
    reply = c._ws.recv(timeout=10)
    assert isinstance(reply, str) and reply.startswith("error: ") and re.search(match, reply), reply
    obs = make_obs()
    # the same connection goes on, and so does another client
    np.testing.assert_array_equal(c.infer(obs)["actions"], local_chunk(policy, obs))
    assert client(server).infer(obs)["actions"].shape == (policy.chunk_size, 7)


def test_openpi_client_raises_the_servers_error(server):
    with pytest.raises(RuntimeError, match="missing 'state'"):
        client(server).infer({"images": make_obs()["images"], "instruction": "x"})


def test_a_100_mb_message_is_refused_unbuffered_and_others_are_served(server, policy):
    from websockets.exceptions import ConnectionClosed

    c = client(server)
    other = client(server)
    with pytest.raises(ConnectionClosed) as err:
        c.infer({**make_obs(), "padding": np.zeros(100 << 20, np.uint8)})
    close = err.value.rcvd
    assert close.code == 1009 and "exceeds limit of 4194304 bytes" in close.reason  # message too big, named
    assert other.infer(make_obs())["actions"].shape == (policy.chunk_size, 7)
    assert client(server).infer(make_obs())["actions"].shape == (policy.chunk_size, 7)


def test_several_clients_at_once_each_get_their_own_answers(server, policy):
    observations = [make_obs(seed=i) for i in range(3)]
    expected = [local_chunk(policy, o) for o in observations]
    got: dict[int, list[np.ndarray]] = {}
    clients = [client(server) for _ in observations]

    def run(i: int) -> None:
        got[i] = [clients[i].infer(observations[i])["actions"] for _ in range(3)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, chunks in got.items():
        for chunk in chunks:
            np.testing.assert_array_equal(chunk, expected[i])
    assert len(got) == 3


def test_api_key_is_required_when_set(policy, monkeypatch):
    from websockets.exceptions import InvalidStatus

    srv = PolicyServer(policy, "127.0.0.1", 0, api_key="s3cret")
    srv.start_in_thread()
    try:
        with pytest.raises(InvalidStatus, match="401"):
            client(srv)
        with pytest.raises(InvalidStatus, match="401"):
            client(srv, api_key="wrong")
        assert client(srv, api_key="s3cret").infer(make_obs())["actions"].shape[1] == 7  # openpi-client's api_key
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=5) as r:
            assert r.status == 200  # health needs no key
        with pytest.raises(RemotePolicyError, match="HTTP 401"):
            RemoteChunkPolicy(srv.url, api_key="wrong")
        monkeypatch.setenv("VLA_SERVE_API_KEY", "s3cret")
        assert RemoteChunkPolicy(srv.url).infer(make_obs())["actions"].shape[1] == 7
    finally:
        srv.stop()


def test_policy_with_observation_history_is_refused(policy, monkeypatch):
    monkeypatch.setattr(policy, "n_obs_steps", 2, raising=False)
    with pytest.raises(ValueError, match="n_obs_steps"):
        PolicyServer(policy)


# ── RemoteChunkPolicy (vla/remote.py) ──────────────────────────────────────────────────────


def test_load_policy_ws_is_a_remote_chunk_policy_with_the_local_interface(server, policy):
    remote = load_policy(server.url, "cpu", send_seed=False)
    _OPENED.append(remote)
    assert isinstance(remote, RemoteChunkPolicy)
    assert remote.embodiment == policy.embodiment and remote.n_action_steps == policy.n_action_steps
    assert remote.chunk_size == policy.chunk_size and remote.num_params == policy.num_params
    remote.reset()
    obs = make_obs()
    out = remote.infer(obs)
    np.testing.assert_array_equal(out["actions"], local_chunk(policy, obs))  # server seed, no request seed
    assert {"total", "network", "round_trip"} <= set(out["timing_ms"]) and 0 < out["age_s"] < remote.timeout_s
    # with send_seed (the default) the episode's chunks follow numpy's global seed: reproducible
    seeded = load_policy(server.url)
    _OPENED.append(seeded)
    runs = []
    for _ in range(2):
        np.random.seed(0)
        seeded.reset()
        runs.append([seeded.infer(obs)["actions"] for _ in range(2)])
    np.testing.assert_array_equal(np.stack(runs[0]), np.stack(runs[1]))
    with pytest.raises(RemoteRequestError, match="missing 'state'"):
        remote.infer({"images": obs["images"], "instruction": "x"})
    assert remote.infer(obs)["actions"].shape == (policy.chunk_size, 7)  # the connection stayed


def test_load_policy_ws_rejects_server_side_options(server):
    with pytest.raises(ValueError, match="accel"):
        load_policy(server.url, accel="fast")
    with pytest.raises(ValueError, match="n_action_steps"):
        load_policy(server.url, n_action_steps=2)


def test_no_server_is_a_clear_connection_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(RemotePolicyError, match=f"no policy server answered at ws://127.0.0.1:{port}.*refused"):
        load_policy(f"ws://127.0.0.1:{port}")
    assert time.monotonic() - start < 5
    assert issubclass(RemotePolicyError, ConnectionError)  # what `vla eval` turns into one error line


class CountingPolicy:
    """Chunk i (1, 2, ...) is all i / 100; ``delays[i]`` seconds before answering call i."""

    n_action_steps, chunk_size, policy_type = 2, 4, "counting"

    def __init__(self, delays: dict[int, float] | None = None) -> None:
        self.embodiment = spaces.embodiment(32)
        self.calls, self.delays = 0, delays or {}

    def reset(self) -> None:
        pass

    def infer(self, obs: dict) -> dict:
        self.calls += 1
        time.sleep(self.delays.get(self.calls, 0.0))
        return {"actions": np.full((self.chunk_size, 7), self.calls / 100, np.float32), "timing_ms": {}}


def small_obs() -> dict:
    return make_obs(size=32)


def test_a_late_reply_is_never_used_for_a_later_observation():
    srv = PolicyServer(CountingPolicy(delays={1: 1.5}), "127.0.0.1", 0)
    srv.start_in_thread()
    try:
        remote = RemoteChunkPolicy(srv.url, timeout_s=0.4)
        _OPENED.append(remote)
        start = time.monotonic()
        with pytest.raises(RemotePolicyTimeout, match="did not answer within timeout_s=0.4"):
            remote.infer(small_obs())
        assert time.monotonic() - start < 1.0
        remote.timeout_s = 5.0
        out = remote.infer(small_obs())  # reconnects; call 2 waits for call 1 (serialised), then answers
        assert np.allclose(out["actions"], 0.02), "the stale chunk of call 1 was returned"
        assert remote.reconnects == 1
    finally:
        srv.stop()


def test_server_restart_reconnects_with_backoff_and_fails_fast_meanwhile():
    srv = PolicyServer(CountingPolicy(), "127.0.0.1", 0)
    port = srv.start_in_thread()
    remote = RemoteChunkPolicy(srv.url, timeout_s=0.3, backoff_s=0.5, backoff_max_s=0.5)
    _OPENED.append(remote)
    assert remote.infer(small_obs())["actions"].shape == (4, 7)
    srv.stop()
    for _ in range(2):  # the next reconnect is after the call's deadline: fails at once (a ROS node holds)
        start = time.monotonic()
        with pytest.raises(RemotePolicyError, match=r"ws://127.0.0.1:\d+ unreachable.*next reconnect in 0.[345]"):
            remote.infer(small_obs())
        assert time.monotonic() - start < 0.25
    srv2 = PolicyServer(CountingPolicy(), "127.0.0.1", port)
    srv2.start_in_thread()
    remote.timeout_s = 5.0  # a busy machine: the reconnect + handshake + answer within one call's deadline
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                out = remote.infer(small_obs())
                break
            except RemotePolicyError:
                assert time.monotonic() < deadline, "did not reconnect to the restarted server"
                time.sleep(0.1)
        assert np.allclose(out["actions"], 0.01) and remote.reconnects == 1
    finally:
        srv2.stop()
