"""The policy node over real DDS, run as its own process exactly as `ros2 run vla policy_node` /
the launch file would (`python -m ros_nodes.policy_node --ros-args --params-file ... -p ...`).
In this test process, a fake robot publishes cameras/state/instruction and a recorder checks every
command the node publishes; the node's counters come back over /diagnostics.

    control rate holds while inference is 3-9x slower than a control period (chunking)
    camera stops -> hold within 2 control periods of going stale; camera resumes -> actions resume
    10,000 malformed messages (+ injected policy faults) -> node stays up, 0 non-finite and 0
    out-of-limit commands
    a flood of /vla/episode_start (each one drops the chunk) -> rate-limited: the robot moves
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from ros_nodes.nodes import CONFIG_DIR
from ros_nodes.testing import CommandRecorder, FakeRobot, Participant, isolated_domain_id

DOMAIN = isolated_domain_id()
RATE = 30.0
PERIOD = 1.0 / RATE
MAX_STEP = np.array([0.5] * 6)


def ros_env() -> dict[str, str]:
    return {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "PYTHONUNBUFFERED": "1"}


def node_command(**params) -> list[str]:
    args = [sys.executable, "-m", "ros_nodes.policy_node", "--ros-args",
            "--params-file", str(CONFIG_DIR / "ros" / "policy_node.yaml")]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    return args


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def system(tmp_path):
    """Start (recorder, fake robot, policy node process) with parameter overrides; tear down."""
    started = []

    def start(**params):
        recorder = CommandRecorder(DOMAIN)
        started.append(recorder.close)
        robot = FakeRobot(DOMAIN, rate_hz=RATE)
        started.append(robot.close)
        params = {"policy": "ros_nodes.testing:slow_fake_policy", "control_rate_hz": RATE, **params}
        log = open(tmp_path / "policy_node.log", "w")  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen(node_command(**params), env=ros_env(), stdout=log, stderr=subprocess.STDOUT)
        started.append(lambda: (stop(proc), log.close()))
        return proc, robot, recorder

    yield start
    for close in reversed(started):
        close()


def control_status(recorder: CommandRecorder) -> dict[str, str]:
    found = [d for d in recorder.diagnostics if d["name"] == "policy_node: control"]
    return found[-1] if found else {}


def moving(deltas: np.ndarray) -> np.ndarray:
    return np.any(deltas != 0, axis=1)


def assert_safe(recorder: CommandRecorder) -> int:
    """Every command finite, inside [-1, 1], and rate-limited between consecutive commands."""
    _, deltas = recorder.commands()
    grippers = np.array(recorder.grippers)
    assert len(deltas) > 0
    assert np.all(np.isfinite(deltas)) and np.all(np.isfinite(grippers))
    assert np.all(np.abs(deltas) <= 1.0) and np.all(np.abs(grippers) <= 1.0)
    steps = np.abs(np.diff(deltas, axis=0))[moving(deltas)[1:]]  # holds may stop at once
    assert np.all(steps <= MAX_STEP + 1e-6), steps.max(axis=0)
    return len(deltas)


def test_action_rate_holds_while_inference_is_slower(system):
    # Inference 100-300 ms (3-9 control periods) per 30-action chunk (1 s); the next chunk is
    # requested with 20 actions (667 ms) left, so the broker does not run dry even when the
    # machine is loaded enough to double the inference time.
    proc, _, recorder = system(policy_options="chunk=30 min_latency_s=0.1 max_latency_s=0.3", replan_remaining=20)
    assert recorder.wait_for(lambda: moving(recorder.commands()[1]).sum() > 5, timeout=30)
    # A status from after the first chunks: the start-up ticks before the first chunk hold for no_action.
    assert recorder.wait_for(lambda: int(control_status(recorder).get("chunks", 0)) >= 2, timeout=10)
    before = control_status(recorder)
    t0 = time.time()
    time.sleep(4.0)
    times, deltas = recorder.published(since_stamp=t0)  # header stamps: when the node published
    rate = (len(times) - 1) / (times[-1] - times[0])
    holds = 1.0 - moving(deltas).mean()
    inference = [d for d in recorder.diagnostics if d["name"] == "policy_node: inference"]
    latency = np.array([float(d["latency_ms"]) for d in inference])
    print(f"action rate {rate:.2f} Hz, holds {holds:.3f}, inference p50 "
          f"{np.median(latency):.0f} ms, {len(latency)} chunks; {control_status(recorder)}")
    # 30 Hz within timer jitter. Ticks the OS starved the node of (its control loop fell more than
    # 5 periods behind: it reports them as overruns) are the machine's, not the node's; they
    # only happen on an overloaded host, and are printed above.
    time.sleep(1.1)
    after = control_status(recorder)
    overruns = int(after["overruns"]) - int(before["overruns"])
    assert (len(times) - 1 + overruns) / (times[-1] - times[0]) >= RATE - 0.5, (rate, overruns)
    # Policy actions, not holds: the broker did not run dry while the next chunk was inferred.
    # Holds are counted by reason: "no_action" is the broker running dry (the node's fault);
    # "camera_stale" is a fake-camera frame arriving > 2 periods late on a loaded host (the input's
    # fault, and holding then is the required behaviour), so only the first is asserted on.
    dry = int(after.get("held_ticks.no_action", 0)) - int(before.get("held_ticks.no_action", 0))
    commands = int(after["commands"]) - int(before["commands"])
    print(f"window: {commands} commands, {dry} broker-dry holds, all holds {holds:.3f}")
    assert dry <= 0.02 * commands, (dry, commands)
    assert holds <= 0.25, holds  # and the robot was not held for most of it for any other reason
    assert np.median(latency) >= 3 * PERIOD * 1e3  # inference really was slower than the control rate
    assert len(latency) >= 8
    assert_safe(recorder)
    # Diagnostics: per-call latency, visual tokens, GFLOPs; and the keep-mask overlay image.
    assert {"latency_ms", "visual_tokens", "gflops", "chunk_len"} <= set(inference[-1])
    assert float(control_status(recorder)["action_rate_hz"]) > 0
    assert recorder.overlays > 0
    assert proc.poll() is None


def test_camera_stop_holds_and_resume_continues(system):
    proc, robot, recorder = system(policy_options="chunk=8 min_latency_s=0.02 max_latency_s=0.05",
                                   replan_remaining=4, stale_periods=2.0)
    assert recorder.wait_for(lambda: moving(recorder.commands()[1]).sum() > 10, timeout=30)
    robot.cameras_on = False
    time.sleep(0.05)  # let an in-progress publish finish before reading the last frame's stamp
    last_frame = robot.last_frame_stamp
    assert recorder.wait_for(lambda: (~moving(recorder.published(last_frame)[1])).any(), timeout=2)
    stamps, deltas = recorder.published(last_frame)
    first_hold = stamps[~moving(deltas)][0]  # when the node published it (header stamp)
    stale_at = last_frame + 2.0 * PERIOD  # stale_periods = 2: the camera counts as stale from here
    print(f"hold published {1e3 * (first_hold - last_frame):.0f} ms after the last frame, "
          f"{1e3 * (first_hold - stale_at):.0f} ms after the camera went stale")
    # "Within 2 control periods" is counted in the node's own control ticks: at most 2 moving
    # commands go out after the camera went stale. (Wall-clock slack is left to the OS scheduler:
    # on a loaded 2-core CI box a tick can be tens of ms late; 0.5 s still catches a missing hold.)
    late_moving = (stamps > stale_at) & (stamps < first_hold)
    assert late_moving.sum() <= 2, f"{late_moving.sum()} commands after the camera went stale"
    assert first_hold - stale_at <= 0.5
    first_hold = time.monotonic()
    time.sleep(0.5)
    _, deltas = recorder.commands(since=first_hold + 2 * PERIOD)
    assert len(deltas) >= 5 and not moving(deltas).any()  # holds as long as the camera is silent
    robot.cameras_on = True
    resumed = time.monotonic()
    assert recorder.wait_for(lambda: moving(recorder.commands(since=resumed)[1]).sum() >= 10, timeout=3)
    assert_safe(recorder)
    assert proc.poll() is None


def _malformed(rng, big: bool):
    """Yield (kind, message) for every kind of bad input the node must survive."""
    img = Image(height=96, width=128, encoding="rgb8", step=128 * 3)
    full = bytes(96 * 128 * 3)
    kinds = {
        "wrong encoding": lambda: Image(height=4, width=4, encoding=rng.choice(["yuv422", "32FC1", "", "rgb16"]),
                                        step=12, data=bytes(48)),
        "short data": lambda: Image(height=96, width=128, encoding="rgb8", step=384, data=full[: rng.integers(0, len(full))]),
        "empty data": lambda: Image(height=96, width=128, encoding="bgr8", step=384, data=b""),
        "zero size": lambda: Image(height=0, width=0, encoding="mono8", step=0, data=b""),
        "8k header": lambda: Image(height=8192, width=8192, encoding="rgb8", step=8192 * 3, data=bytes(16)),
        "bad step": lambda: Image(height=96, width=128, encoding="rgb8", step=7, data=bytes(7 * 96)),
    }
    del img
    bad_floats = [float("nan"), float("inf"), -float("inf")]
    while True:
        for kind, make in kinds.items():
            yield "image", kind, make()
        js = JointState(name=["finger_left", "finger_right"], position=[0.01, rng.choice(bad_floats)])
        yield "joints", "non-finite joints", js
        yield "joints", "length mismatch", JointState(name=["finger_left", "finger_right"], position=[0.0])
        pose = PoseStamped()
        pose.pose.position.x = rng.choice(bad_floats)
        yield "pose", "non-finite pose", pose
        yield "pose", "zero quaternion", PoseStamped()  # w = 1 by default: make it all zero
        yield "instruction", "empty", String(data="")
        yield "instruction", "huge", String(data="x" * (20_000 if not big else 1_000_000))


def test_malformed_message_storm(system):
    proc, robot, recorder = system(policy_options="chunk=8 min_latency_s=0.01 max_latency_s=0.03 fault_every=5",
                                   replan_remaining=4)
    assert recorder.wait_for(lambda: moving(recorder.commands()[1]).sum() > 5, timeout=30)
    attacker = Participant("attacker", DOMAIN)
    try:
        n = attacker.node
        pubs = {
            "image": [n.create_publisher(Image, f"/vla/camera/{c}/image_raw", qos_profile_sensor_data)
                      for c in ("agentview", "wrist")],
            "joints": [n.create_publisher(JointState, "/vla/joint_states", qos_profile_sensor_data)],
            "pose": [n.create_publisher(PoseStamped, "/vla/ee_pose", qos_profile_sensor_data)],
            "instruction": [n.create_publisher(String, "/vla/instruction", 10)],
        }
        everyone = [p for group in pubs.values() for p in group]
        assert recorder.wait_for(lambda: all(p.get_subscription_count() > 0 for p in everyone), timeout=10)
        rng = np.random.default_rng(0)
        sent = 0
        for i, (topic, kind, msg) in enumerate(_malformed(rng, big=False)):
            if kind == "zero quaternion":
                msg.pose.orientation.w = 0.0
            pubs[topic][i % len(pubs[topic])].publish(msg)
            sent += 1
            if sent % 20 == 0:
                time.sleep(0.01)  # ~1.5k msg/s: fast, yet most get through best-effort sensor QoS
            if sent >= 10_000:
                break
        # One real 8192 x 8192 frame (64 MB mono8): rejected by its size, not processed.
        pubs["image"][0].publish(Image(height=8192, width=8192, encoding="mono8", step=8192, data=bytes(8192 * 8192)))
        time.sleep(1.0)
    finally:
        attacker.close()
    time.sleep(1.0)  # one more 1 Hz status
    status = control_status(recorder)
    rejected = {k: int(v) for k, v in status.items() if k.startswith("rejected.")}
    print(f"sent {sent} malformed messages (+1 real 8k frame); the node rejected {rejected}")
    assert proc.poll() is None, "the policy node died"
    # Best-effort sensor QoS (depth 5) lets a slow reader drop most of a flood, by design; every
    # input path must still have seen its share. (tests/ros_nodes/test_policy_node_inputs.py feeds
    # all 10,000 through the node's callbacks without DDS.)
    assert sent == 10_000
    for topic in ("camera_agentview", "camera_wrist", "joint_state", "ee_pose", "instruction"):
        assert rejected.get(f"rejected.{topic}", 0) >= 10, (topic, rejected)
    # Still up: a valid instruction (the storm's empty/huge ones cleared it) brings actions back.
    # Storm messages still queued may land after it, so repeat it until actions flow.
    resumed = time.monotonic()

    def recovered():
        robot.pub_instruction.publish(String(data="put the red cube on the blue plate"))
        return moving(recorder.commands(since=resumed)[1]).sum() >= 40

    assert recorder.wait_for(recovered, timeout=20), control_status(recorder)
    time.sleep(1.2)  # the next 1 Hz status
    assert proc.poll() is None
    assert int(control_status(recorder)["inference_failures"]) > 0  # NaN / raise / shape / huge chunks
    count = assert_safe(recorder)
    print(f"{count} commands checked: all finite, within limits and rate-limited")


def test_episode_start_flood_is_rate_limited(system):
    """Any participant on the domain can publish /vla/episode_start; each accepted one drops the
    current chunk, so the robot holds until the next is inferred. Unlimited, a flood held it 100 %
    of the time; with min_episode_start_interval_s = 1 s it is one reset per second."""
    proc, _, recorder = system(policy_options="chunk=10 min_latency_s=0.02 max_latency_s=0.05", replan_remaining=4)
    assert recorder.wait_for(lambda: moving(recorder.commands()[1]).sum() > 10, timeout=30)
    attacker = Participant("attacker", DOMAIN)
    try:
        pub = attacker.node.create_publisher(String, "/vla/episode_start", 10)
        assert recorder.wait_for(lambda: pub.get_subscription_count() > 0, timeout=10)
        t0, sent = time.time(), 0
        while time.time() - t0 < 4.0:  # ~500 msg/s for 4 s
            pub.publish(String(data="put the red cube on the blue plate"))
            sent += 1
            if sent % 10 == 0:
                time.sleep(0.02)
        t1 = time.time()
        time.sleep(1.2)  # the next 1 Hz status
    finally:
        attacker.close()
    stamps, deltas = recorder.published(since_stamp=t0 + 0.5)  # from the flood's second 0.5 s on
    deltas = deltas[stamps <= t1]
    held = 1.0 - moving(deltas).mean()
    status = control_status(recorder)
    merged = int(status["rate_limited.episode_start"])
    print(f"{sent} episode starts in 4 s ({merged} merged by the rate limit): {len(deltas)} commands, "
          f"{held:.1%} held; held ticks {({k: v for k, v in status.items() if k.startswith('held_ticks.')})}")
    assert proc.poll() is None
    assert merged >= 0.8 * sent - 10  # at most ~1 per second accepted (DDS may drop a few of the flood)
    # Each accepted start holds for about one inference (20-50 ms); the bound leaves room for a loaded host.
    assert len(deltas) >= 60 and held <= 0.25, held
    assert_safe(recorder)
