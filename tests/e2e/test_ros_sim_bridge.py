"""The sim bridge under bad requests and faults, over real DDS: `vla ros bringup`'s nodes in this
process (ros_nodes.bringup.Bringup), and a test participant of its own that sends /vla/reset and
listens to the cameras, /vla/episode_start and /diagnostics.

    a /vla/reset naming an unknown task -> refused: the episode goes on (frames keep coming), the
    error is in /diagnostics, and the next valid reset works
    the sim thread dies -> a node failure: ERROR diagnostics, `bringup.run` returns exit code 1
"""

import json
import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from ros_nodes import conversions as conv
from ros_nodes.bringup import Bringup, default_params, run
from ros_nodes.testing import Participant, isolated_domain_id

DOMAIN = isolated_domain_id()


class Listener(Participant):
    """Counts camera frames, records episode starts and the sim bridge's diagnostics; sends resets."""

    def __init__(self):
        super().__init__("sim_bridge_listener", DOMAIN)
        self._lock = threading.Lock()
        self.frames: list[float] = []  # receive times of /vla/camera/agentview/image_raw
        self.starts: list[str] = []
        self.status: list[dict[str, str]] = []
        n = self.node
        n.create_subscription(Image, "/vla/camera/agentview/image_raw", self._on_frame, qos_profile_sensor_data)
        n.create_subscription(String, "/vla/episode_start", self._on_start, 10)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 100)
        self.reset = n.create_publisher(String, "/vla/reset", 10)

    def _on_frame(self, _msg) -> None:
        with self._lock:
            self.frames.append(time.monotonic())

    def _on_start(self, msg) -> None:
        with self._lock:
            self.starts.append(msg.data)

    def _on_diag(self, msg) -> None:
        with self._lock:
            self.status += [{"level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
                             "message": s.message, **conv.diagnostic_values(s)}
                            for s in msg.status if s.name == "sim_bridge_node: sim"]

    def frames_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for f in self.frames if f >= t)


def params() -> dict:
    p = default_params()
    p["policy_node"].update(policy="ros_nodes.testing:slow_fake_policy",
                            policy_options="chunk=10 min_latency_s=0.01 max_latency_s=0.03")
    # 64x64 frames are cheaper to render; the episode must outlast the test (slow_fake never succeeds)
    p["sim_bridge_node"].update(task="place_red_on_blue_plate",
                                env_overrides="image_size=[64,64] max_episode_steps=100000")
    return p


@pytest.fixture
def system(tmp_path):
    listener = Listener()
    bringup = Bringup(params(), tmp_path, sim=True, domain_id=DOMAIN).start()
    try:
        bridge = bringup.nodes["sim_bridge_node"]
        assert listener.wait_for(lambda: bridge.running and listener.frames_since(0) > 5, timeout=60)
        assert listener.wait_for(lambda: listener.reset.get_subscription_count() > 0, timeout=10)
        yield bringup, bridge, listener
    finally:
        bringup.shutdown()
        listener.close()


def test_bad_reset_keeps_the_episode_and_the_next_valid_reset_works(system):
    bringup, bridge, listener = system
    episode, instruction = bridge.episode_index, bridge.instruction
    env = bridge.env
    listener.reset.publish(String(data="no_such_task"))
    assert listener.wait_for(lambda: bridge.stats["reset_failures"] == 1, timeout=5)
    t0 = time.monotonic()
    time.sleep(1.0)
    fps = listener.frames_since(t0) / (time.monotonic() - t0)
    assert listener.wait_for(lambda: any("no_such_task" in s["last_reset_error"] for s in listener.status), timeout=3)
    report = [s for s in listener.status if "no_such_task" in s["last_reset_error"]][-1]
    print(f"after the bad reset: {fps:.1f} frames/s on /vla/camera/agentview/image_raw; diagnostics: {report}")
    assert fps >= 10  # rate_hz 30; 0 before the fix (the sim thread died)
    assert bridge.failure() is None and bridge.running and bridge.env is env
    assert (bridge.task, bridge.episode_index, bridge.instruction) == ("place_red_on_blue_plate", episode, instruction)
    assert report["level"] == 1 and "unknown task" in report["message"]  # WARN, naming the problem
    assert "red_in_bowl" in report["last_reset_error"]  # ... and the tasks that exist
    assert report["reset_failures"] == "1"
    # The next valid reset (a different task) starts a new episode, and the warning clears.
    starts = len(listener.starts)
    listener.reset.publish(String(data="red_in_bowl"))
    assert listener.wait_for(lambda: len(listener.starts) > starts, timeout=20), bridge.last_reset_error
    assert bridge.task == "red_in_bowl" and bridge.episode_index == episode + 1 and "bowl" in listener.starts[-1]
    t1 = time.monotonic()
    assert listener.wait_for(lambda: listener.frames_since(t1) >= 10, timeout=5)
    assert listener.wait_for(lambda: listener.status[-1]["level"] == 0 and listener.status[-1]["task"] == "red_in_bowl",
                             timeout=3)
    assert bringup.failures() == {}


def test_a_dead_sim_thread_fails_the_bringup(system, tmp_path, capsys):
    bringup, bridge, listener = system

    def broken_step():
        raise RuntimeError("injected: the simulator crashed")

    bridge._step = broken_step  # the sim thread's next step raises out of its loop
    t0 = time.monotonic()
    code = run(bringup, tmp_path, episodes=1, duration_s=60)  # what `vla ros bringup` exits with
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    print(f"run() returned {code} after {took:.2f} s; stderr: {err.strip()}")
    assert code == 1 and took < 5
    assert "[FATAL] sim_bridge_node: thread 'sim_bridge_node.sim' died: RuntimeError: injected" in err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "injected: the simulator crashed" in summary["failures"]["sim_bridge_node"]
    assert listener.wait_for(lambda: any(s["level"] == 2 for s in listener.status), timeout=3)  # ERROR
    assert "injected" in [s for s in listener.status if s["level"] == 2][-1]["failure"]
