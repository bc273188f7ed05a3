"""`vla serve` as a user runs it (a subprocess on a free port, the committed checkpoint), with the
clients users have: openpi's `openpi-client` package from PyPI (installed --no-deps next to numpy 2,
see the Makefile), `vla eval checkpoint=ws://...`, and lerobot's own async-inference gRPC calls
(what lerobot's RobotClient sends: Ready, SendPolicyInstructions, SendObservations, GetActions)."""

from __future__ import annotations

import json
import pickle  # nosec: lerobot's async-inference protocol
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "checkpoints" / "push_red_left_tiny_cvla"
SEED = 3

# openpi's own client (make install: pip install --no-deps openpi-client): missing fails, never skips.
from openpi_client import websocket_client_policy
from serve_helpers import ENV, start_server, stop_server


@pytest.fixture(scope="module")
def openpi_server(tmp_path_factory):
    proc, info = start_server(CHECKPOINT, tmp_path_factory.mktemp("serve") / "run", f"seed={SEED}")
    yield info
    out = stop_server(proc)
    assert proc.returncode == 0, out[-3000:]


def make_obs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": {cam: rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for cam in ("agentview", "wrist")},
            "state": rng.normal(scale=0.1, size=8).astype(np.float32), "instruction": "push the red cube to the left"}


def test_openpi_client_gets_the_same_actions_as_local_inference(openpi_server):
    import torch

    from vla.runtime import load_policy

    client = websocket_client_policy.WebsocketClientPolicy("127.0.0.1", openpi_server["port"])
    meta = client.get_server_metadata()
    assert meta["embodiment"]["action_dim"] == 7 and meta["policy_type"] == "vla"
    observations = [make_obs(i) for i in range(2)]
    remote = [client.infer(obs) for obs in observations]
    client._ws.close()
    torch.set_num_threads(1)  # as the server (threads=1): same kernels, same sums
    local = load_policy(CHECKPOINT, "cpu")
    for obs, out in zip(observations, remote):
        torch.manual_seed(SEED)
        np.testing.assert_array_equal(out["actions"], local.infer(obs)["actions"])
        assert out["server_timing"]["infer_ms"] > 0
    assert urlopen_ok(f"http://127.0.0.1:{openpi_server['port']}/healthz")


def urlopen_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status == 200


def test_remote_vla_eval_episode_succeeds(openpi_server, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vla.cli", "eval", f"checkpoint={openpi_server['url']}", "env=tabletop",
                           "tasks=[push_red_left]", "episodes=1", "threads=1", "video=false", f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "eval.json").read_text())
    assert [e["success"] for e in report["episodes"]] == [True]  # the local run of this episode succeeds too
    assert "network" in proc.stdout and "remote vla" in proc.stdout


def test_remote_vla_eval_without_a_server_is_one_error_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "vla.cli", "eval", f"checkpoint=ws://127.0.0.1:{port}", "env=tabletop",
                           "tasks=[push_red_left]", "episodes=1", "video=false", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=ENV)
    assert proc.returncode == 1
    assert f"vla eval: error: no policy server answered at ws://127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_lerobot_async_inference_client_calls_get_a_7d_chunk(tmp_path):
    import grpc
    import torch

    from lerobot.async_inference.helpers import RemotePolicyConfig, TimedObservation
    from lerobot.transport import services_pb2, services_pb2_grpc
    from lerobot.transport.utils import grpc_channel_options, send_bytes_in_chunks
    from lerobot.utils.feature_utils import hw_to_dataset_features
    from sim import spaces

    run = tmp_path / "run"
    proc, info = start_server(CHECKPOINT, run, "protocol=lerobot")
    try:
        channel = grpc.insecure_channel(info["url"], grpc_channel_options())
        stub = services_pb2_grpc.AsyncInferenceStub(channel)
        # What RobotClient.start() sends: the handshake, then the policy instructions (pickled).
        stub.Ready(services_pb2.Empty(), timeout=30)
        hw = {**{name: float for name in spaces.STATE_NAMES}, "agentview": (128, 128, 3), "wrist": (128, 128, 3)}
        features = hw_to_dataset_features(hw, "observation", use_video=False)  # map_robot_keys_to_lerobot_features
        setup = RemotePolicyConfig("vla", str(CHECKPOINT), features, actions_per_chunk=6, device="cpu")
        stub.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(setup)), timeout=60)
        # What RobotClient.control_loop_observation() sends: the robot's raw observation + task, timed.
        obs = make_obs()
        raw = {**dict(zip(spaces.STATE_NAMES, obs["state"].tolist())), **obs["images"], "task": obs["instruction"]}
        timed = TimedObservation(timestamp=time.time(), timestep=0, observation=raw, must_go=True)
        stub.SendObservations(send_bytes_in_chunks(pickle.dumps(timed), services_pb2.Observation, silent=True),
                              timeout=30)
        reply = stub.GetActions(services_pb2.Empty(), timeout=60)  # RobotClient.receive_actions()
        actions = pickle.loads(reply.data)  # nosec: list[TimedAction]
        assert [a.get_timestep() for a in actions] == list(range(6))
        chunk = torch.stack([a.get_action() for a in actions]).numpy()
        assert chunk.shape == (6, 7) and np.all(np.isfinite(chunk)) and np.abs(chunk).max() <= 1.0
        # Only the served checkpoint: another path is refused, named.
        other = RemotePolicyConfig("vla", str(tmp_path), features, actions_per_chunk=6, device="cpu")
        with pytest.raises(grpc.RpcError) as err:
            stub.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(other)), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and str(CHECKPOINT) in err.value.details()
        channel.close()
    finally:
        out = stop_server(proc)
    assert proc.returncode == 0, out[-3000:]
    assert list((run / "logs").glob("policy_server_*.log"))  # lerobot's log inside the run dir
    assert not (tmp_path / "logs").exists() and not (run.parent / "logs").exists()
