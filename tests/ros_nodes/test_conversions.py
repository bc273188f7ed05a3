"""Message <-> numpy conversions, and what they refuse before allocating anything."""

import re

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image, JointState

from ros_nodes import conversions as conv
from sim.tabletop.env import _quat_to_axis_angle

MAX = 4096 * 4096


def image(h, w, encoding, data=None, step=None):
    c = conv.CHANNELS.get(encoding, 3)
    msg = Image(height=h, width=w, encoding=encoding, step=step if step is not None else w * c)
    msg.data = bytes(msg.step * h) if data is None else data
    return msg


def test_rgb_roundtrip_and_encodings():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    msg = conv.rgb_to_image(rgb, Time(sec=1), "cam")
    np.testing.assert_array_equal(conv.image_to_rgb(msg, MAX), rgb)
    bgr = image(5, 7, "bgr8", rgb[:, :, ::-1].tobytes())
    np.testing.assert_array_equal(conv.image_to_rgb(bgr, MAX), rgb)
    mono = image(5, 7, "mono8", rgb[:, :, 0].tobytes())
    np.testing.assert_array_equal(conv.image_to_rgb(mono, MAX), np.repeat(rgb[:, :, :1], 3, axis=2))


def test_padded_rows():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 12), dtype=np.uint8)
    padded[:, :9] = rgb.reshape(2, 9)
    msg = image(2, 3, "rgb8", padded.tobytes(), step=12)
    np.testing.assert_array_equal(conv.image_to_rgb(msg, MAX), rgb)


@pytest.mark.parametrize(
    "msg, reason",
    [
        (image(4, 4, "yuv422"), "unsupported encoding"),
        (image(4, 4, "32FC1"), "unsupported encoding"),
        (image(4, 4, "rgb8", b"\x00" * 47), "data has 47 bytes"),
        (image(4, 4, "rgb8", b""), "data has 0 bytes"),
        (image(0, 0, "rgb8", b""), "empty image"),
        (image(4, 4, "rgb8", step=5), "step 5 < width*channels 12"),
        # An 8k x 8k header with a few bytes: rejected from the header, nothing allocated.
        (image(8192, 8192, "rgb8", b"\x00" * 10), "exceeds max_image_pixels"),
    ],
)
def test_rejects_malformed_images(msg, reason):
    with pytest.raises(conv.BadMessage, match=re.escape(reason)):
        conv.image_to_rgb(msg, MAX)


@pytest.mark.parametrize("shortest", [True, False])
def test_state_roundtrip_matches_the_suites(shortest):
    rng = np.random.default_rng(1)
    for _ in range(200):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = rng.uniform(0, np.pi if shortest else 2 * np.pi - 1e-3)
        state = np.concatenate([rng.normal(size=3), axis * angle, [0.03, -0.03]]).astype(np.float32)
        pose = conv.pose_from_state(state, Time(), "world")
        back = conv.state_from_pose(pose, state[6:], shortest=shortest)
        np.testing.assert_allclose(back, state, atol=1e-5)
    # The tabletop env computes its state with the same convention (shortest rotation).
    q = np.array([-0.3, 0.5, 0.1, -0.8])
    q /= np.linalg.norm(q)
    np.testing.assert_allclose(conv.quat_to_axis_angle(q[1], q[2], q[3], q[0]), _quat_to_axis_angle(q), atol=1e-9)


def test_bad_states_are_rejected():
    pose = conv.pose_from_state(np.zeros(8), Time(), "w")
    pose.pose.position.x = float("nan")
    with pytest.raises(conv.BadMessage, match="NaN"):
        conv.state_from_pose(pose, np.zeros(2))
    pose.pose.position.x = 0.0
    pose.pose.orientation.w = 0.0
    with pytest.raises(conv.BadMessage, match="quaternion"):
        conv.state_from_pose(pose, np.zeros(2))
    js = JointState(name=["a", "b"], position=[0.0, float("inf")])
    with pytest.raises(conv.BadMessage, match="NaN/Inf"):
        conv.joint_positions(js, ["a", "b"])
    with pytest.raises(conv.BadMessage, match="lacks"):
        conv.joint_positions(js, ["c"])
    with pytest.raises(conv.BadMessage, match="2 names but 1"):
        conv.joint_positions(JointState(name=["a", "b"], position=[0.0]), ["a"])


def test_implausible_values_are_rejected_by_kind():
    """1e300 is a finite float64 but Inf as the float32 the policy sees: checked after the cast."""
    pose = conv.pose_from_state(np.zeros(8), Time(), "w")
    pose.pose.position.z = 1e300
    with pytest.raises(conv.BadMessage, match="beyond float32 range") as e:
        conv.state_from_pose(pose, np.zeros(2))
    assert e.value.kind == "float32_overflow"
    pose.pose.position.z = 4.0
    box = ([-1.0, -1.0, 0.0], [1.0, 1.0, 2.0])
    with pytest.raises(conv.BadMessage, match="outside the workspace") as e:
        conv.state_from_pose(pose, np.zeros(2), workspace=box)
    assert e.value.kind == "out_of_workspace"
    pose.pose.position.z = 1.5
    assert conv.state_from_pose(pose, np.zeros(2), workspace=box)[2] == pytest.approx(1.5)
    with pytest.raises(conv.BadMessage) as e:
        conv.joint_positions(JointState(name=["a"], position=[-1e300]), ["a"])
    assert e.value.kind == "float32_overflow"
    with pytest.raises(conv.BadMessage, match="image 8x4 is below min_image_side=16") as e:
        conv.check_image(image(4, 8, "rgb8"), MAX, min_side=16)
    assert e.value.kind == "too_small"
    conv.check_image(image(16, 16, "rgb8"), MAX, min_side=16)


def test_commands():
    action = np.array([0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 1.0], dtype=np.float32)
    twist, gripper = conv.delta_eef_msgs(action, Time(sec=3), "world")
    assert twist.header.frame_id == "world" and gripper.data == 1.0
    np.testing.assert_allclose(conv.delta_eef_action(twist, gripper.data), action, atol=1e-7)
    traj = conv.trajectory_msg(action[:3], ["j1", "j2", "j3"], Time(), dt=1 / 30)
    assert traj.joint_names == ["j1", "j2", "j3"] and len(traj.points) == 1
    assert traj.points[0].time_from_start.nanosec == pytest.approx(33_333_333, abs=1)


def test_keep_mask_overlay():
    rgb = np.full((64, 48, 3), 200, dtype=np.uint8)
    mask = np.zeros((4, 3), dtype=np.float32)
    mask[0, 0] = 1.0
    out = conv.keep_mask_overlay(rgb, mask)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert out[0, 0, 0] == 200 and out[-1, -1, 0] == 60  # dropped patches dimmed to 30 %


def test_joint_cache_merges_messages_by_name_and_never_guesses_a_missing_joint():
    cache = conv.JointCache(["a", "b", "c"])
    assert not cache.update(conv.joint_state(["x"], [1.0], Time(sec=1)), now=0.0)  # another publisher's
    assert cache.update(conv.joint_state(["c", "a", "x"], [3.0, 1.0, 9.0], Time(sec=1)), now=0.0)
    values, problems = cache.read(["a", "b", "c"], now=0.1, max_age=0.25)
    assert values is None and problems == {"b": "never received"}
    cache.update(conv.joint_state(["b"], [2.0], Time(sec=1)), now=0.1)  # the other arm's message
    values, _ = cache.read(["c", "b", "a"], now=0.2, max_age=0.25)
    np.testing.assert_array_equal(values, [3.0, 2.0, 1.0])  # by name, in the order asked for
    cache.update(conv.joint_state(["a"], [-1.0], Time(sec=0, nanosec=5)), now=0.3)  # older stamp, late: ignored
    cache.update(conv.joint_state(["b"], [2.5], Time(sec=2)), now=0.3)
    values, problems = cache.read(["a", "b", "c"], now=0.3, max_age=0.25)
    assert values is None and problems == {"a": "last 0.30 s ago", "c": "last 0.30 s ago"}
    with pytest.raises(conv.BadMessage) as e:
        cache.update(conv.joint_state(["a", "b"], [0.0, float("nan")], Time(sec=3)), now=0.4)
    assert e.value.kind == "non_finite"
    assert cache.read(["b"], now=0.4, max_age=0.25)[0][0] == 2.5  # nothing of the bad message was kept
