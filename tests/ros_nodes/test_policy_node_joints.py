"""The policy node for a joint-space arm, its callbacks driven directly (no DDS; the same over real DDS
with a 6-joint stand-in is tests/e2e/test_ros_any_arm.py): JointState by name in any order and over
several messages, degrees <-> radians, a missing joint holds (logged once, never guessed), joint
limits clip (counted), the per-period velocity limit, joint_delta increments."""

import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time

from ros_nodes import conversions as conv
from test_policy_node_inputs import INSTRUCTION, SimClock, log_lines, make_node  # noqa: F401 - fixture

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
DEG = math.pi / 180


def so100(kind: str = "joint_position"):
    from policies.embodiment import Camera, Embodiment

    names = tuple(f"{j}.pos" for j in JOINTS)
    return Embodiment((Camera("front", 480, 640), Camera("wrist", 480, 640)), 6, 6, kind,
                      (-90.0,) * 6 if kind == "joint_position" else (-5.0,) * 6,
                      (90.0,) * 6 if kind == "joint_position" else (5.0,) * 6, names, names, (5,))


class RecordingPolicy:
    """Returns ``actions`` (policy units) as a chunk; records the states it was given."""

    def __init__(self, actions, kind: str = "joint_position"):
        self.embodiment = so100(kind)
        self.actions = np.asarray(actions, np.float32)
        self.states: list[np.ndarray] = []

    def reset(self):
        pass

    def infer(self, obs):
        assert set(obs["images"]) == {"front", "wrist"}
        self.states.append(np.array(obs["state"]))
        return {"actions": np.tile(self.actions, (4, 1))}


def feed(node, positions_rad, split=False, drop=(), rng=None):
    """Both cameras, and the joints (radians) shuffled, in one or two JointState messages."""
    frame = conv.rgb_to_image(np.zeros((48, 64, 3), np.uint8), Time(sec=1), "cam")
    for cam in node.p.camera_names:
        node._on_image(cam, frame)
    names = [j for j in JOINTS if j not in drop]
    (rng or np.random.default_rng()).shuffle(names)
    values = dict(zip(JOINTS, positions_rad))
    for part in ([names[:3], names[3:]] if split else [names]):
        node._on_joint_state(conv.joint_state(part, [values[j] for j in part], Time()))


def tick_until(node, published, n, start_rad, **kw):
    for _ in range(400):
        feed(node, start_rad, **kw)
        node._on_control_tick()
        if len(published) >= n:
            return
        import time

        time.sleep(0.005)
    raise AssertionError(f"{len(published)} commands; holding for {node._last_reasons}")


START_DEG = np.array([10.0, -20.0, 30.0, -40.0, 50.0, 20.0])


@pytest.mark.parametrize("split", [False, True])
def test_state_by_joint_name_in_degrees_and_commands_in_radians(make_node, split):
    target_deg = START_DEG + np.array([1.0, -1.0, 0.5, -0.5, 1.0, 0.0])  # within one period's velocity limit
    policy = RecordingPolicy(target_deg)
    node, published = make_node(policy=policy, instruction=INSTRUCTION, joint_units="degrees")
    assert node.p.state_joint_names == JOINTS and node.p.joint_names == JOINTS
    tick_until(node, published, 10, START_DEG * DEG, split=split, rng=np.random.default_rng(1))
    np.testing.assert_allclose(policy.states[0], START_DEG, atol=1e-4)  # radians in, the policy's degrees
    np.testing.assert_allclose(published[-1], target_deg * DEG, atol=1e-6)  # degrees out, radians published


def test_a_missing_joint_holds_logged_once_never_guessed(make_node, capfd):
    clock = SimClock()
    policy = RecordingPolicy(START_DEG + 1.0)
    node, published = make_node(policy=policy, instruction=INSTRUCTION, joint_units="degrees", log_interval_s=10.0)
    node.clock = clock
    for _ in range(20):
        clock.t += 1 / 30
        feed(node, START_DEG * DEG)
        node._on_control_tick()
        import time

        time.sleep(0.005)
    assert not node._last_reasons and len(published) == 20
    log_lines(capfd)
    moving_before = published[-1]
    for _ in range(90):  # 3 s of JointStates without the wrist_roll joint
        clock.t += 1 / 30
        feed(node, START_DEG * DEG, drop=("wrist_roll",))
        node._on_control_tick()
    assert "joint_state_stale" in node._last_reasons
    held = np.stack(published[-80:])
    assert np.all(held == held[0]) and np.allclose(held[0], moving_before)  # the last safe command
    assert node.hold_counts["joint_state_stale"] >= 90 - 0.25 * 30 - 1  # from max_joint_state_age_s on
    lines = log_lines(capfd)
    print("\n".join(lines))
    assert len([line for line in lines if "wrist_roll" in line]) == 1, lines
    assert len(policy.states) and all(np.all(np.isfinite(s)) for s in policy.states)
    feed(node, START_DEG * DEG)  # the joint is back: the node moves again
    node._on_control_tick()
    assert "joint_state_stale" not in node._last_reasons


def test_commands_outside_the_joint_limits_are_clipped_and_counted(make_node):
    wild = START_DEG.copy()
    wild[1] = 85.0  # beyond the tighter limit set below (20 deg), within the checkpoint's own
    policy = RecordingPolicy(wild)
    low = [-1.5] * 6
    high = [1.5, 20 * DEG, 1.5, 1.5, 1.5, 1.5]
    node, published = make_node(policy=policy, instruction=INSTRUCTION, joint_units="degrees",
                                action_low=low, action_high=high, joint_velocity_limits=[6.0] * 6)
    tick_until(node, published, 40, START_DEG * DEG)
    values = np.stack(published)
    assert np.all(values >= np.array(low) - 1e-9) and np.all(values <= np.array(high) + 1e-9)
    assert values[-1, 1] == pytest.approx(20 * DEG)  # reached the limit, never beyond
    assert np.all(np.abs(np.diff(values, axis=0)) <= 6.0 / 30 + 1e-6)  # velocity limit per period
    assert node.safety.clipped["shoulder_lift"] >= 30 and node.safety.rate_limited > 0


def test_non_finite_state_holds(make_node):
    policy = RecordingPolicy(START_DEG)
    node, published = make_node(policy=policy, instruction=INSTRUCTION, joint_units="degrees")
    tick_until(node, published, 5, START_DEG * DEG)
    node._on_joint_state(conv.joint_state(JOINTS, [0.0] * 5 + [float("nan")], Time()))
    node._on_control_tick()
    assert "joint_state:non_finite" in node._last_reasons


def test_joint_delta_increments_the_last_command(make_node):
    policy = RecordingPolicy([1.0, 0, 0, 0, 0, -1.0], kind="joint_delta")
    node, published = make_node(policy=policy, instruction=INSTRUCTION, joint_units="degrees",
                                action_low=[-3.0] * 6, action_high=[3.0] * 6)
    tick_until(node, published, 12, START_DEG * DEG)
    values = np.stack(published)
    np.testing.assert_allclose(values[0], START_DEG * DEG, atol=1e-6)  # held at the measured joints until a chunk
    moved = values[np.any(np.abs(values - values[0]) > 1e-6, axis=1)]
    assert len(moved) >= 8
    np.testing.assert_allclose(moved[0], START_DEG * DEG + np.array([1, 0, 0, 0, 0, -1]) * DEG, atol=1e-6)
    steps = np.diff(moved, axis=0)
    steps = steps[np.any(steps != 0, axis=1)]  # a tick the broker ran dry holds (repeats the command)
    assert len(steps) >= 6
    np.testing.assert_allclose(steps[:, 0], DEG, atol=1e-6)  # +1 degree per action
    np.testing.assert_allclose(steps[:, 5], -DEG, atol=1e-6)
