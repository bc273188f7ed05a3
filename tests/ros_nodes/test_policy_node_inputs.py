"""The policy node's handlers, driven directly (no executor, no DDS traffic): every one of 10,000
malformed inputs reaches its callback, and every command the control tick produces is checked.
The same storm over real DDS is in tests/e2e/test_ros_policy_node.py."""

import time

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from rclpy.context import Context
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from ros_nodes import conversions as conv
from ros_nodes.params import ParamError, write_params_file
from ros_nodes.policy_node import PolicyNode
from ros_nodes.testing import isolated_domain_id

INSTRUCTION = "put the red cube on the blue plate"
STATE = np.array([0.4, 0.0, 0.2, 3.1, 0.0, 0.0, 0.04, -0.04])


@pytest.fixture
def make_node(tmp_path):
    made = []

    def make(policy=None, **params):
        context = Context()
        rclpy.init(context=context, domain_id=isolated_domain_id())
        path = write_params_file(tmp_path / "policy_node.yaml", "policy_node",
                                 {"policy": "ros_nodes.testing:slow_fake_policy", **params})
        try:
            node = PolicyNode(cli_args=["--ros-args", "--params-file", str(path)], context=context, policy=policy)
        except BaseException:
            context.try_shutdown()
            raise
        node._control.stop()  # the test drives the control ticks itself
        made.append((node, context))
        published = []
        node._publish = lambda values: published.append(np.array(values, dtype=np.float64))
        return node, published

    yield make
    for node, context in made:
        node.destroy_node()
        context.try_shutdown()


def feed_valid(node, joints=("left_finger", "right_finger"), positions=(0.04, -0.04)):
    frame = conv.rgb_to_image(np.zeros((48, 64, 3), np.uint8), Time(sec=1), "cam")
    for cam in node.p.camera_names:
        node._on_image(cam, frame)
    node._on_pose(conv.pose_from_state(STATE, Time(), "world"))
    node._on_joint_state(conv.joint_state(joints, positions, Time()))


def run_ticks(node, n, period=0.01):
    for _ in range(n):
        feed_valid(node)
        node._on_control_tick()
        time.sleep(period)


def malformed(i: int):
    kind = i % 10
    if kind == 0:
        return "image", Image(height=4, width=4, encoding=["yuv422", "", "32FC1"][i % 3], step=12, data=bytes(48))
    if kind == 1:
        return "image", Image(height=96, width=128, encoding="rgb8", step=384, data=bytes(i % 997))
    if kind == 2:
        return "image", Image(height=8192, width=8192, encoding="rgb8", step=8192 * 3, data=bytes(8))
    if kind == 3:
        return "image", Image(height=0, width=0, encoding="mono8", step=0, data=b"")
    if kind == 4:
        return "joints", JointState(name=["left_finger", "right_finger"], position=[0.0, [np.nan, np.inf, -np.inf][i % 3]])
    if kind == 5:
        return "joints", JointState(name=["left_finger", "right_finger"], position=[0.0])
    if kind == 6:
        pose = PoseStamped()
        pose.pose.position.y = [np.nan, np.inf][i % 2]
        return "pose", pose
    if kind == 7:
        pose = PoseStamped()
        pose.pose.orientation.w = 0.0
        return "pose", pose
    if kind == 8:
        return "instruction", String(data="y" * 5000)
    return "instruction", String(data="" if i % 2 else "   ")


def test_ten_thousand_malformed_inputs(make_node):
    node, published = make_node(policy_options="chunk=8 min_latency_s=0.0 max_latency_s=0.002 fault_every=7",
                                instruction=INSTRUCTION, replan_remaining=3)
    run_ticks(node, 30)
    assert any(not np.all(v[:6] == 0) for v in published), "actions flow before the storm"
    for i in range(10_000):
        topic, msg = malformed(i)
        if topic == "image":
            node._on_image(node.p.camera_names[i % 2], msg)
        elif topic == "joints":
            node._on_joint_state(msg)
        elif topic == "pose":
            node._on_pose(msg)
        else:
            node._on_instruction(msg)
        if i % 25 == 0:
            node._on_control_tick()
    assert sum(node.rejected.counts.values()) == 9_000  # + 1,000 empty instructions: well-formed, they hold
    node._on_instruction(String(data=INSTRUCTION))
    before = len(published)
    run_ticks(node, 60)
    assert any(not np.all(v[:6] == 0) for v in published[before:]), "actions resume after the storm"
    assert node.stats["inference_failures"] > 0  # injected NaN / exception / shape / huge chunks
    values = np.stack(published)
    assert np.all(np.isfinite(values)) and np.all(np.abs(values) <= 1.0)
    moving = np.any(values[:, :6] != 0, axis=1)
    assert np.all(np.abs(np.diff(values, axis=0))[moving[1:], :6] <= 0.5 + 1e-6)
    assert "no_instruction" in node.hold_counts and "inference_failed" in node.hold_counts


def test_joint_mode_starts_from_the_measured_position(make_node):
    joints = [f"j{i}" for i in range(7)]
    node, published = make_node(policy_options="chunk=4 min_latency_s=0.0 max_latency_s=0.0",
                                instruction=INSTRUCTION, action_mode="joint", joint_names=joints,
                                action_low=[-3.0] * 7, action_high=[3.0] * 7, max_delta_per_period=[0.05] * 7)
    run_ticks(node, 5)
    assert published == []  # never command a joint position before knowing where the arm is
    start = np.linspace(-1, 1, 7)
    node._on_joint_state(conv.joint_state(joints, start, Time()))
    run_ticks(node, 20)
    values = np.stack(published)
    assert np.all(np.abs(values[0] - start) <= 0.05 + 1e-6)  # rate-limited from the measured joints
    assert np.all(np.abs(np.diff(values, axis=0)) <= 0.05 + 1e-6)


def test_bad_parameter_is_a_clear_start_up_error(make_node):
    with pytest.raises(ParamError, match=r"invalid parameter 'control_rate_hz' = 0.0: in \(0, 1000\]"):
        make_node(control_rate_hz=0.0)


class _HistoryPolicy:
    """Conditions on its last 3 frames, like lerobot Diffusion with n_obs_steps=3; records the frame
    numbers (pixel value) each chunk was computed from."""

    n_obs_steps = 3
    n_action_steps = 4

    def __init__(self):
        self.seen: list[int] = []
        self.chunks_from: list[list[int]] = []

    def reset(self):
        self.seen.clear()

    def observe(self, obs):
        self.seen.append(int(obs["images"]["agentview"][0, 0, 0]))

    def infer(self, obs):
        self.observe(obs)
        self.chunks_from.append(self.seen[-3:])
        return {"actions": np.zeros((8, 7), np.float32)}


def test_history_policy_sees_consecutive_frames_not_one_per_chunk(make_node):
    """As in `vla eval`, a policy with an observation history gets the frames between chunks: each
    chunk is computed from the 3 newest camera frames, not from frames a chunk apart."""
    policy = _HistoryPolicy()
    node, _ = make_node(policy=policy, instruction=INSTRUCTION, replan_remaining=2)
    for frame in range(1, 41):
        image = conv.rgb_to_image(np.full((48, 64, 3), frame, np.uint8), Time(sec=frame), "cam")
        for cam in node.p.camera_names:
            node._on_image(cam, image)
        node._on_pose(conv.pose_from_state(STATE, Time(), "world"))
        node._on_joint_state(conv.joint_state(("left_finger", "right_finger"), (0.04, -0.04), Time()))
        node._on_control_tick()
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    while len(policy.chunks_from) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(policy.chunks_from) >= 4, policy.chunks_from
    for frames in policy.chunks_from[1:]:  # the first chunk is at frame 1: no past yet
        assert frames == [frames[-1] - 2, frames[-1] - 1, frames[-1]], policy.chunks_from
