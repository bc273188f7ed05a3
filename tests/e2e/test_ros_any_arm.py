"""ROS 2 for any arm, over real DDS: the policy node (its own process, as `ros2 run vla policy_node`)
serves a 6-D SO-100-shaped checkpoint (trained here on the tests/e2e/test_any_robot.py dataset:
cameras front/wrist, 6 joints in degrees) to a 6-joint stand-in robot (ros_nodes.testing.JointRobot:
two cameras + JointState in radians, shuffled joint order, split over two messages, following the
JointTrajectory it receives).

    only the checkpoint and joint_units:=degrees are given: topics, joints and limits come from it
    the control rate holds; every command is finite, inside the joint limits (rad) and within the
    per-period velocity limit
    a JointState without one configured joint -> hold at the last command, logged once, never a guess;
    the joint back -> running again
"""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ros_nodes.nodes import CONFIG_DIR
from ros_nodes.testing import CommandRecorder, JointRobot, isolated_domain_id
from test_any_robot import SO100_JOINTS, make_robot_dataset, vla_train

DOMAIN = isolated_domain_id()
RATE = 30.0
DEG = math.pi / 180


@pytest.fixture(scope="module")
def so100_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("so100_ros")
    # SO-100-shaped (cameras front + wrist in 3:4, 6 joints in degrees, 30 fps) at a quarter of the
    # resolution: the node does not care about the recorded size (the policy resizes), the fixture's time does.
    dataset = make_robot_dataset(root / "data", {"front": (120, 160), "wrist": (120, 160)}, SO100_JOINTS, fps=30,
                                 episodes=2, length=12)
    proc = vla_train(f"dataset={dataset}", "train=debug", f"output_dir={root / 'run'}", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run" / "checkpoints" / "last"


def start_node(checkpoint: Path, log_path: Path, **params) -> subprocess.Popen:
    args = [sys.executable, "-m", "ros_nodes.policy_node", "--ros-args",
            "--params-file", str(CONFIG_DIR / "ros" / "policy_node.yaml"),
            "-p", "policy:=checkpoint", "-p", f"checkpoint:={checkpoint}", "-p", "joint_units:=degrees"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115


def status(recorder: CommandRecorder) -> dict[str, str]:
    found = [d for d in recorder.diagnostics if d["name"] == "policy_node: control"]
    return found[-1] if found else {}


def test_the_node_serves_a_6_joint_checkpoint_to_a_6_joint_robot(so100_checkpoint, tmp_path):
    from vla.runtime import load_policy

    robot_spec = load_policy(so100_checkpoint).embodiment
    low, high = (np.asarray(v) * DEG for v in robot_spec.limits)  # the node's default joint limits, rad
    max_step = (high - low) / RATE  # default velocity limit: each joint's range per second
    start = np.clip(np.array([5.0, -15.0, 25.0, 15.0, 10.0, 10.0]) * DEG, low, high)
    recorder = CommandRecorder(DOMAIN)
    robot = JointRobot(SO100_JOINTS, start, DOMAIN, rate_hz=RATE, cameras={"front": (120, 160), "wrist": (120, 160)},
                       split=True)
    log = tmp_path / "policy_node.log"
    proc = start_node(so100_checkpoint, log, control_rate_hz=RATE, replan_remaining=5, instruction="pick up the cube")
    try:
        assert recorder.wait_for(lambda: len(robot.received()[0]) > 30 or proc.poll() is not None, timeout=120), \
            log.read_text()[-3000:]
        assert proc.poll() is None, log.read_text()[-3000:]
        assert recorder.wait_for(lambda: "commands" in status(recorder), timeout=5)
        before, t0 = status(recorder), time.monotonic()
        time.sleep(4.0)
        times, _ = robot.received(since=t0)
        time.sleep(1.1)  # the next 1 Hz status covers the window
        after = status(recorder)
        overruns = int(after["overruns"]) - int(before["overruns"])
        rate = (len(times) - 1) / (times[-1] - times[0])
        print(f"commands received at {rate:.2f} Hz ({overruns} overruns), chunks {after['chunks']}, "
              f"holds {after['holds']}/{after['commands']}, clipped {after['clipped']}")
        assert (len(times) - 1 + overruns) / (times[-1] - times[0]) >= RATE - 1.0, (rate, overruns)
        assert int(after["chunks"]) >= 5 and int(after["inference_failures"]) == 0

        # One joint goes missing from the JointStates: hold at the last command, logged once.
        robot.drop = {"wrist_roll"}
        dropped = time.monotonic()
        time.sleep(2.5)
        held_times, held = robot.received(since=dropped + 0.4)  # past max_joint_state_age_s (0.25 s)
        assert len(held) >= 40 and np.all(held == held[0]), np.abs(np.diff(held, axis=0)).max()
        assert recorder.wait_for(lambda: "joint_state_stale" in status(recorder).get("hold_reasons", ""), timeout=3)
        robot.drop = set()
        back = time.monotonic()
        assert recorder.wait_for(lambda: status(recorder).get("hold_reasons", "x") == "" and
                                 time.monotonic() - back > 1.1, timeout=10), status(recorder)
    finally:
        robot_commands = robot.received()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        robot.close()
        recorder.close()
    text = log.read_text()
    missing_lines = [line for line in text.splitlines() if "wrist_roll" in line and "no value newer" in line]
    print("\n".join(line for line in text.splitlines() if "cameras:" in line or "wrist_roll" in line))
    assert len(missing_lines) == 1, missing_lines  # once per occurrence, naming the joint
    assert "cameras: front <- /vla/camera/front/image_raw, wrist <- /vla/camera/wrist/image_raw" in text
    assert "(degrees in the policy, radians on ROS)" in text

    # Every command the robot received: the checkpoint's joints by name, finite, inside the joint
    # limits (rad), and within one period's velocity limit of the previous one.
    times, commands = robot_commands
    assert robot.commands[0][1] == SO100_JOINTS
    assert len(commands) > 200 and np.all(np.isfinite(commands))
    assert np.all(commands >= low - 1e-6) and np.all(commands <= high + 1e-6)
    steps = np.abs(np.diff(commands, axis=0))
    gaps = np.maximum(1, np.round(np.diff(times) * RATE))[:, None]  # a late delivery spans several periods
    assert np.all(steps <= max_step * gaps + 1e-6), (steps / max_step).max()
    assert np.abs(commands[0] - start).max() <= max_step.max() + 1e-6  # starts from the measured joints
    print(f"{len(commands)} commands: all finite, inside the joint limits and the velocity limit; "
          f"largest step {(steps / max_step).max():.2f} of the limit")
