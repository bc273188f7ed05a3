"""ROS message <-> plain numpy/dict conversions (the only place that knows message layouts).

Everything that arrives from the wire is checked *before* any large allocation: an Image header
claiming 8192x8192 with 10 bytes of data is rejected from its header fields alone. Bad input raises
``BadMessage`` (a ValueError) with a short reason the node logs (rate-limited) and a ``kind`` it
counts and holds for (e.g. ``too_small``, ``float32_overflow``, ``out_of_workspace``). Numbers are
checked *after* the cast to the float32 the policy sees: 1e300 is finite as a float64 but Inf in float32.

Conventions:
  * Images: encodings rgb8, bgr8, mono8 in, RGB uint8 [H, W, 3] out (mono is repeated to 3
    channels; resizing is the policy processor's job). Rows may be padded (``step`` >= W*C).
  * Orientation in the 8-D state is an axis-angle vector. ``shortest=True`` flips the quaternion
    to w >= 0 first (angle in [0, pi]: the tabletop suite's convention, and the only one that is
    well defined for a quaternion from a real robot, whose sign is arbitrary); ``shortest=False``
    is robosuite/LIBERO's convention (angle in [0, 2 pi), depends on the sign of w).
  * JointState: by joint name, in any order, over any number of messages (``JointCache``).
  * Delta-EEF command (7-D [dx dy dz, drx dry drz, gripper], normalised units in [-1, 1]):
    ``geometry_msgs/TwistStamped`` carries the 6-D delta (linear = dpos, angular = drot; *per
    control step*, not m/s) and ``std_msgs/Float64`` the gripper (-1 open, +1 close).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


class BadMessage(ValueError):
    """A message that must not reach the policy. ``str(e)`` is a short, loggable reason; ``kind`` a
    stable identifier of the reason (diagnostics keys, hold reasons)."""

    def __init__(self, reason: str, kind: str = "malformed"):
        super().__init__(reason)
        self.kind = kind


def finite_float32(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    """``values`` as float32, refused unless every value is finite *in float32* (1e300 -> Inf)."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise BadMessage(f"{what} has NaN/Inf values", "non_finite")
    with np.errstate(over="ignore"):
        out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise BadMessage(f"{what} has values beyond float32 range (|x| > 3.4e38)", "float32_overflow")
    return out


# ---------------------------------------------------------------------------------------- images
def check_image(msg: Image, max_pixels: int, min_side: int = 1) -> None:
    """Validate an Image from its header fields and data length only (no copy, no allocation).
    ``min_side``: smaller images (e.g. 2x2) carry no usable scene; the policy would upsample noise."""
    if msg.encoding not in CHANNELS:
        raise BadMessage(f"unsupported encoding '{msg.encoding[:32]}' (use one of {', '.join(CHANNELS)})", "encoding")
    h, w, c = msg.height, msg.width, CHANNELS[msg.encoding]
    if h == 0 or w == 0:
        raise BadMessage(f"empty image {w}x{h}", "empty")
    if h * w > max_pixels:
        raise BadMessage(f"image {w}x{h} exceeds max_image_pixels={max_pixels}", "too_large")
    if min(h, w) < min_side:
        raise BadMessage(f"image {w}x{h} is below min_image_side={min_side}", "too_small")
    if msg.step < w * c:
        raise BadMessage(f"step {msg.step} < width*channels {w * c}", "bad_step")
    if len(msg.data) != msg.step * h:
        raise BadMessage(f"data has {len(msg.data)} bytes, header says step*height = {msg.step * h}", "data_length")


def image_to_rgb(msg: Image, max_pixels: int, min_side: int = 1) -> np.ndarray:
    """Image -> RGB uint8 [H, W, 3] (a fresh array, safe to keep)."""
    check_image(msg, max_pixels, min_side)
    h, w, c = msg.height, msg.width, CHANNELS[msg.encoding]
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, msg.step)
    img = rows[:, : w * c].reshape(h, w, c)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(img[:, :, ::-1])
    if msg.encoding == "mono8":
        return np.repeat(img, 3, axis=2)
    return img.copy()


def rgb_to_image(rgb: np.ndarray, stamp: Time, frame_id: str = "") -> Image:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got {rgb.shape}")
    msg = Image()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.height, msg.width = rgb.shape[0], rgb.shape[1]
    msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, rgb.shape[1] * 3
    msg.data = rgb.tobytes()
    return msg


def keep_mask_overlay(rgb: np.ndarray, mask: np.ndarray, floor: float = 0.3) -> np.ndarray:
    """Darken the patches the compressor dropped: pixel * (floor + (1 - floor) * mask), mask upsampled
    to the image by nearest neighbour. ``mask`` is [h, w] in [0, 1] on the camera's token grid."""
    mask = np.nan_to_num(np.asarray(mask, dtype=np.float32), nan=0.0).clip(0.0, 1.0)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"keep mask must be a non-empty [h, w] grid, got {mask.shape}")
    h, w = rgb.shape[:2]
    rows = (np.arange(h) * mask.shape[0]) // h
    cols = (np.arange(w) * mask.shape[1]) // w
    gain = floor + (1.0 - floor) * mask[rows][:, cols]
    return (rgb.astype(np.float32) * gain[:, :, None]).astype(np.uint8)


# ----------------------------------------------------------------------------------------- state
def quat_to_axis_angle(x: float, y: float, z: float, w: float, shortest: bool = True) -> np.ndarray:
    q = np.array([w, x, y, z], dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise BadMessage("orientation quaternion is zero or non-finite", "bad_quaternion")
    q /= norm
    if shortest and q[0] < 0:
        q = -q
    angle = 2.0 * math.acos(float(np.clip(q[0], -1.0, 1.0)))
    s = math.sqrt(max(0.0, 1.0 - q[0] * q[0]))
    if s < 1e-9:
        return np.zeros(3)
    return q[1:] / s * angle


def axis_angle_to_quat(vec: Sequence[float]) -> tuple[float, float, float, float]:
    """Axis-angle -> (x, y, z, w) without sign canonicalisation, so any convention round-trips."""
    v = np.asarray(vec, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return 0.0, 0.0, 0.0, 1.0
    axis = v / angle * math.sin(angle / 2.0)
    return float(axis[0]), float(axis[1]), float(axis[2]), math.cos(angle / 2.0)


def joint_positions(msg: JointState, names: Sequence[str]) -> np.ndarray:
    """Positions of ``names`` (in that order) from a JointState; all must be present and finite."""
    if len(msg.position) != len(msg.name):
        raise BadMessage(f"joint state has {len(msg.name)} names but {len(msg.position)} positions", "length_mismatch")
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise BadMessage(f"joint state lacks {missing[:4]}", "missing_joints")
    out = np.array([msg.position[index[n]] for n in names], dtype=np.float64)
    finite_float32(out, "joint state positions")  # the state the policy sees is float32
    return out


class JointCache:
    """The newest position of each joint of interest, merged over JointState messages (drivers that
    publish each arm, or the gripper, apart), with when it arrived and its header stamp.

    ``update(msg, now)`` checks the message (names/positions lengths, our joints float32-finite:
    ``BadMessage`` otherwise, nothing stored) and keeps its values for our joints; a value stamped
    older than the one kept (out-of-order delivery) is ignored. Returns False for a message with
    none of our joints (another publisher's). ``read(names, now, max_age)`` is (values, problems):
    values float64 [len(names)] when every joint has a value no older than ``max_age`` seconds,
    else None and the joints without one ('never' or their age), never an older or guessed value."""

    def __init__(self, names: Sequence[str]):
        self.wanted = frozenset(names)
        self._values: dict[str, tuple[float, float, float]] = {}  # name -> (position, arrival, stamp)

    def update(self, msg: JointState, now: float) -> bool:
        if len(msg.position) != len(msg.name):
            raise BadMessage(f"joint state has {len(msg.name)} names but {len(msg.position)} positions", "length_mismatch")
        ours = [(n, i) for i, n in enumerate(msg.name) if n in self.wanted]
        if not ours:
            return False
        finite_float32([msg.position[i] for _, i in ours], "joint state positions")  # the policy sees float32
        stamp = stamp_seconds(msg.header.stamp)
        for name, i in ours:
            kept = self._values.get(name)
            if kept is not None and stamp > 0 and stamp < kept[2]:
                continue  # an older message delivered late: the newer value stays
            self._values[name] = (float(msg.position[i]), now, stamp)
        return True

    def seen(self) -> bool:
        return bool(self._values)

    def read(self, names: Sequence[str], now: float, max_age: float) -> tuple[np.ndarray | None, dict[str, str]]:
        problems = {}
        for name in names:
            kept = self._values.get(name)
            if kept is None:
                problems[name] = "never received"
            elif now - kept[1] > max_age:
                problems[name] = f"last {now - kept[1]:.2f} s ago"
        if problems:
            return None, problems
        return np.array([self._values[n][0] for n in names], dtype=np.float64), {}


def state_from_pose(pose: PoseStamped, gripper: np.ndarray, shortest: bool = True,
                    workspace: tuple[Sequence[float], Sequence[float]] | None = None) -> np.ndarray:
    """End-effector state: eef position (3), axis-angle (3), then the gripper joint positions
    (the tabletop arm's 8-D state, sim/spaces.py: two fingers).
    ``workspace`` = (low xyz, high xyz): a position outside the box is refused (a broken estimator
    or a spoofed pose, not a place the arm can be)."""
    p, o = pose.pose.position, pose.pose.orientation
    pos = finite_float32([p.x, p.y, p.z], "pose position")
    if workspace is not None:
        low, high = (np.asarray(b, dtype=np.float32) for b in workspace)
        if np.any(pos < low) or np.any(pos > high):
            raise BadMessage(f"pose position {np.array2string(pos, precision=3)} is outside the workspace "
                             f"[{list(map(float, low))}, {list(map(float, high))}]", "out_of_workspace")
    rot = quat_to_axis_angle(o.x, o.y, o.z, o.w, shortest=shortest)
    return np.concatenate([pos, rot, finite_float32(gripper, "gripper")]).astype(np.float32)


def pose_from_state(state: np.ndarray, stamp: Time, frame_id: str) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in state[:3])
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = axis_angle_to_quat(state[3:6])
    return msg


def joint_state(names: Sequence[str], positions: Sequence[float], stamp: Time) -> JointState:
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(names)
    msg.position = [float(v) for v in positions]
    return msg


# --------------------------------------------------------------------------------------- actions
def delta_eef_msgs(action: np.ndarray, stamp: Time, frame_id: str) -> tuple[TwistStamped, Float64]:
    twist = TwistStamped()
    twist.header.stamp, twist.header.frame_id = stamp, frame_id
    lin, ang = twist.twist.linear, twist.twist.angular
    lin.x, lin.y, lin.z, ang.x, ang.y, ang.z = (float(v) for v in action[:6])
    return twist, Float64(data=float(action[6]))


def delta_eef_action(twist: TwistStamped, gripper: float) -> np.ndarray:
    lin, ang = twist.twist.linear, twist.twist.angular
    return np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z, gripper], dtype=np.float32)


def trajectory_msg(action: np.ndarray, joint_names: Sequence[str], stamp: Time, dt: float) -> JointTrajectory:
    """One-point JointTrajectory: reach ``action`` (joint positions) in ``dt`` seconds."""
    msg = JointTrajectory()
    msg.header.stamp = stamp
    msg.joint_names = list(joint_names)
    point = JointTrajectoryPoint()
    point.positions = [float(v) for v in action]
    point.time_from_start.sec = int(dt)
    point.time_from_start.nanosec = int(round((dt - int(dt)) * 1e9))
    msg.points = [point]
    return msg


# ----------------------------------------------------------------------------------- diagnostics
def diagnostic_status(name: str, hardware_id: str, level: bytes, message: str, values: Mapping) -> DiagnosticStatus:
    """``level`` is one of DiagnosticStatus.OK / WARN / ERROR / STALE."""
    status = DiagnosticStatus(name=name, hardware_id=hardware_id, message=message, level=level)
    status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
    return status


def diagnostic_values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def stamp_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9
