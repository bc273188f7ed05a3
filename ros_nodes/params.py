"""Node parameters: one dataclass per node is the schema (names, defaults, help, validation).

The node declares every field as a ROS parameter (so `ros2 param list/describe` shows them), reads
the values the params file / launch overrides gave, and builds the dataclass, which coerces types
(an int where a float is expected is fine) and checks cross-field rules in ``__post_init__``. Any
problem is a ``ParamError`` at start-up naming the node, the parameter, the bad value and what is
allowed; an unknown parameter name (a typo in the YAML) is an error with a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

ROS_BUILTIN_PARAMS = {"use_sim_time", "start_type_description_service"}


class ParamError(ValueError):
    pass


def param(default: Any, help: str):  # noqa: A002 - mirrors argparse
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _check(ok: bool, who: str, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ParamError(f"{who}: invalid parameter '{name}' = {value!r}: {expected}")


@dataclass
class PolicyNodeParams:
    NODE = "policy_node"
    # --- policy ------------------------------------------------------------------------------
    policy: str = param("checkpoint", "'checkpoint' = vla.runtime.load_policy(checkpoint), 'remote' = a policy "
                        "server at server_url (`vla serve`, openpi's protocol), or 'module:factory' returning a "
                        "ChunkPolicy (test doubles: ros_nodes.testing)")
    checkpoint: str = param("", "checkpoint folder (policy='checkpoint')")
    server_url: str = param("", "policy='remote': ws://host:port of the policy server")
    remote_timeout_s: float = param(0.5, "policy='remote': a reply later than this is dropped (the robot holds and "
                                    "the node asks again with a fresh observation; reconnects back off)")
    trust_checkpoint_code: bool = param(False, "also load a checkpoint whose processor steps vla did not write "
                                        "(they run code from the folder; docs/security.md)")
    compressor: str = param("", "visual-token compressor override ('' = the checkpoint's own)")
    accel: str = param("none", "acceleration preset from configs/accel/ applied at load (none | fast: "
                       "Compressor-VLA tokens + layer pruning + head step cache, vla/accel.py)")
    device: str = param("cpu", "torch device for inference")
    policy_options: str = param("", "extra factory options, 'key=value key=value'")
    # --- inputs (what a checkpoint reads comes from its embodiment: [] / auto = derived) ------
    camera_names: list[str] = param([], "the policy's cameras ([] = the checkpoint's embodiment's; naming other "
                                    "cameras than the checkpoint's is a start-up error)")
    camera_topics: list[str] = param([], "sensor_msgs/Image topic per camera, in camera_names order (sensor-data "
                                     "QoS; [] = <camera_topic_prefix>/<camera>/image_raw)")
    camera_topic_prefix: str = param("/vla/camera", "prefix of the default camera topics")
    state_source: str = param("auto", "'ee_pose' (PoseStamped + gripper joints), 'joint_state' (the whole state "
                              "from JointState by name) or 'auto' (ee_pose for a delta_eef checkpoint, else joint_state)")
    ee_pose_topic: str = param("/vla/ee_pose", "geometry_msgs/PoseStamped of the end effector")
    joint_state_topic: str = param("/vla/joint_states", "sensor_msgs/JointState, mapped by joint name (any order; "
                                   "joints may come in several messages, e.g. one per arm: the newest value per joint is kept)")
    gripper_joint_names: list[str] = param([], "ee_pose source: the JointState joints after the 6 pose channels of "
                                           "the state ([] = the checkpoint's state names after the pose)")
    state_joint_names: list[str] = param([], "joint_state source: the JointState joint per state channel, in order "
                                         "([] = the checkpoint's state names, a '.pos' suffix stripped)")
    joint_units: str = param("radians", "units of the checkpoint's joints: radians or degrees (lerobot SO-100/SO-101 "
                             "recordings). ROS JointState in and JointTrajectory out are radians: converted both ways")
    max_joint_state_age_s: float = param(0.25, "a configured joint whose newest JointState value is older than this "
                                         "-> hold (logged, naming the joints), never a guess")
    axis_angle_shortest: bool = param(True, "quaternion -> axis-angle with angle in [0, pi] (tabletop); "
                                      "false = robosuite/LIBERO convention")
    instruction_topic: str = param("/vla/instruction", "std_msgs/String task instruction")
    instruction: str = param("", "initial instruction, until one arrives on the topic")
    reset_topic: str = param("/vla/episode_start", "any std_msgs/String here resets policy, broker, filter")
    max_image_pixels: int = param(4096 * 4096, "reject images with more pixels (from the header)")
    min_image_side: int = param(16, "reject images narrower or lower than this (pixels): the node holds")
    max_instruction_chars: int = param(1000, "reject longer instructions (the node then holds)")
    workspace_low: list[float] = param([-3.0] * 3, "ee_pose: reject (and hold on) positions below this "
                                       "x, y, z (m, in the pose's frame); set it to your robot's reach")
    workspace_high: list[float] = param([3.0] * 3, "ee_pose: reject (and hold on) positions above this x, y, z")
    # --- rate limits on commands from the network (a flood must not hold the robot) -------------
    min_episode_start_interval_s: float = param(1.0, "accept at most one reset_topic message per this "
                                                "many seconds; earlier ones are merged into the next (0 = off)")
    min_instruction_interval_s: float = param(1.0, "accept at most one instruction change per this many "
                                              "seconds; the newest pending one is applied then (0 = off)")
    log_interval_s: float = param(10.0, "log each input problem / hold reason at most once per this many "
                                  "seconds, with the count of repeats (all are counted in /diagnostics)")
    # --- outputs -----------------------------------------------------------------------------
    action_mode: str = param("auto", "'delta_eef' (TwistStamped + Float64 gripper), 'joint' (JointTrajectory) or "
                             "'auto' (from the checkpoint's action_kind: delta_eef, or joint for joint_position/joint_delta)")
    delta_topic: str = param("/vla/cmd/delta_eef", "geometry_msgs/TwistStamped: dpos (linear), drot (angular)")
    gripper_topic: str = param("/vla/cmd/gripper", "std_msgs/Float64: -1 open .. +1 close")
    trajectory_topic: str = param("/vla/cmd/joint_trajectory", "trajectory_msgs/JointTrajectory (joint mode)")
    joint_names: list[str] = param([], "joint mode: the commanded joint per action dimension ([] = the checkpoint's "
                                   "action names, a '.pos' suffix stripped)")
    command_frame_id: str = param("world", "header.frame_id of commands")
    overlay_topic: str = param("~/keep_mask_overlay", "sensor_msgs/Image: camera frame with dropped patches dimmed")
    overlay_camera: str = param("", "camera drawn on the overlay ('' = the first camera)")
    diagnostics_topic: str = param("/diagnostics", "diagnostic_msgs/DiagnosticArray")
    # --- timing ------------------------------------------------------------------------------
    control_rate_hz: float = param(30.0, "command publish rate")
    replan_remaining: int = param(2, "request the next chunk when this many actions remain")
    align_chunks: bool = param(True, "drop the actions of a new chunk that the robot already lived through")
    chunk_execution: str = param("async", "async: the current chunk keeps executing while the next one is "
                                 "inferred (aligned on arrival); sync: hold (no motion) from the request until the "
                                 "chunk arrives, then execute it from its first action, as `vla eval` runs chunks; "
                                 "rtc: async with real-time chunking (the next chunk's flow sampling is guided to "
                                 "continue the actions that execute while it is inferred; flow-matching VLA heads)")
    rtc_delay_ticks: int = param(-1, "rtc: control periods one inference spans, the actions pinned in the next chunk "
                                 "(-1 = estimated from the p90 of the last 20 inference latencies)")
    rtc_beta: float = param(5.0, "rtc: cap of the guidance weight (Black et al. 2025)")
    stale_periods: float = param(2.0, "camera older than this many control periods -> hold")
    camera_stale_periods: float = param(2.0, "... or, if longer, this many of the camera's own measured frame "
                                        "periods (a camera a little slower than control_rate_hz does not "
                                        "flicker the hold), capped at max_frame_age_s")
    max_frame_age_s: float = param(0.5, "cap of the camera-period allowance above (s)")
    max_chunk_pause_s: float = param(0.5, "a chunk paused by an input hold resumes if the hold is shorter; "
                                     "longer holds drop it (re-plan from a fresh observation)")
    # --- safety limits, one value per action dimension, in the published command's units -------
    action_low: list[float] = param([], "lower clamp per dimension: delta_eef normalised units, joint mode the "
                                    "joint's lower position limit (rad) ([] = the checkpoint's action limits)")
    action_high: list[float] = param([], "upper clamp per dimension ([] = the checkpoint's action limits)")
    max_delta_per_period: list[float] = param([], "max change per control period per dimension ([] = a quarter of "
                                              "the range, the whole range for gripper dims; joint mode: see "
                                              "joint_velocity_limits)")
    joint_velocity_limits: list[float] = param([], "joint mode: max speed per joint (rad/s; [] = "
                                               "max_delta_per_period if given, else one full range per second)")

    @property
    def action_dim(self) -> int:
        """Command dimensions (known once ``resolve`` filled the limits from the checkpoint)."""
        return len(self.joint_names) if self.action_mode == "joint" else len(self.action_low)

    @property
    def joint_scale(self) -> float:
        """Policy joint units -> ROS radians."""
        return JOINT_UNITS[self.joint_units]

    @property
    def period(self) -> float:
        return 1.0 / self.control_rate_hz

    def __post_init__(self) -> None:
        who = self.NODE
        _check(bool(self.policy), who, "policy", self.policy, "'checkpoint' or 'module:factory'")
        _check(self.policy != "checkpoint" or bool(self.checkpoint), who, "checkpoint", self.checkpoint,
               "set a checkpoint folder, or choose a test double: policy:=ros_nodes.testing:slow_fake_policy")
        _check(self.policy in ("checkpoint", "remote") or ":" in self.policy, who, "policy", self.policy,
               "'checkpoint', 'remote' or 'package.module:factory'")
        _check(self.policy != "remote" or self.server_url.startswith(("ws://", "wss://")), who, "server_url",
               self.server_url, "ws://host:port of a policy server (policy:=remote)")
        _check(math.isfinite(self.remote_timeout_s) and self.remote_timeout_s > 0, who, "remote_timeout_s",
               self.remote_timeout_s, "> 0 (seconds)")
        _check(len(set(self.camera_names)) == len(self.camera_names) and all(self.camera_names), who,
               "camera_names", self.camera_names, "unique, non-empty names ([] = the checkpoint's cameras)")
        _check(not (self.camera_names and self.camera_topics) or len(self.camera_topics) == len(self.camera_names),
               who, "camera_topics", self.camera_topics, f"one topic per camera {self.camera_names}")
        _check(all(self.camera_topics), who, "camera_topics", self.camera_topics, "non-empty topics")
        _check(self.state_source in STATE_SOURCES, who, "state_source", self.state_source,
               " or ".join(f"'{v}'" for v in STATE_SOURCES))
        _check(self.action_mode in ACTION_MODES, who, "action_mode", self.action_mode,
               " or ".join(f"'{v}'" for v in ACTION_MODES))
        _check(self.joint_units in JOINT_UNITS, who, "joint_units", self.joint_units, " or ".join(JOINT_UNITS))
        _check(math.isfinite(self.max_joint_state_age_s) and self.max_joint_state_age_s > 0, who,
               "max_joint_state_age_s", self.max_joint_state_age_s, "> 0 (seconds)")
        _check(0 < self.control_rate_hz <= 1000, who, "control_rate_hz", self.control_rate_hz, "in (0, 1000]")
        _check(self.replan_remaining >= 0, who, "replan_remaining", self.replan_remaining, ">= 0")
        _check(self.chunk_execution in CHUNK_EXECUTIONS, who, "chunk_execution", self.chunk_execution,
               " or ".join(CHUNK_EXECUTIONS))
        _check(self.rtc_delay_ticks >= -1, who, "rtc_delay_ticks", self.rtc_delay_ticks, ">= 0, or -1 (estimated)")
        _check(math.isfinite(self.rtc_beta) and self.rtc_beta > 0, who, "rtc_beta", self.rtc_beta, "> 0")
        _check(self.stale_periods >= 1.0, who, "stale_periods", self.stale_periods, ">= 1")
        _check(self.max_chunk_pause_s >= 0.0, who, "max_chunk_pause_s", self.max_chunk_pause_s, ">= 0")
        _check(self.max_image_pixels >= 1, who, "max_image_pixels", self.max_image_pixels, ">= 1")
        _check(self.min_image_side >= 1, who, "min_image_side", self.min_image_side, ">= 1")
        _check(self.camera_stale_periods >= 1.0, who, "camera_stale_periods", self.camera_stale_periods, ">= 1")
        _check(self.max_frame_age_s > 0.0, who, "max_frame_age_s", self.max_frame_age_s, "> 0")
        for name in ("min_episode_start_interval_s", "min_instruction_interval_s", "log_interval_s"):
            _check(math.isfinite(getattr(self, name)) and getattr(self, name) >= 0.0, who, name,
                   getattr(self, name), ">= 0 (seconds)")
        for name in ("workspace_low", "workspace_high"):
            values = getattr(self, name)
            _check(len(values) == 3 and all(math.isfinite(v) for v in values), who, name, values,
                   "3 finite numbers (x, y, z)")
        _check(all(lo < hi for lo, hi in zip(self.workspace_low, self.workspace_high)), who, "workspace_low",
               self.workspace_low, f"each < workspace_high {self.workspace_high}")
        _check(self.max_instruction_chars >= 1, who, "max_instruction_chars", self.max_instruction_chars, ">= 1")
        self._check_limits()

    def _check_limits(self) -> None:
        """The given per-dimension lists agree with each other (and, once resolved, with the checkpoint)."""
        who = self.NODE
        given = {name: getattr(self, name) for name in PER_DIM if getattr(self, name)}
        if self.action_mode == "joint" and self.joint_names:
            given = {"joint_names": self.joint_names, **given}
        dim = len(next(iter(given.values()))) if given else 0
        first = next(iter(given), "")
        for name, values in given.items():
            _check(len(values) == dim, who, name, values, f"{dim} values (one per action dimension, as {first})")
            if name != "joint_names":
                _check(all(math.isfinite(v) for v in values), who, name, values, "finite numbers")
        _check(bool(self.action_low) == bool(self.action_high), who, "action_low", self.action_low,
               f"given together with action_high ({self.action_high})")
        _check(all(lo < hi for lo, hi in zip(self.action_low, self.action_high)), who, "action_low",
               self.action_low, f"each < action_high {self.action_high}")
        for name in ("max_delta_per_period", "joint_velocity_limits"):
            _check(all(v > 0 for v in getattr(self, name)), who, name, getattr(self, name), "all > 0")


STATE_SOURCES = ("auto", "ee_pose", "joint_state")
ACTION_MODES = ("auto", "delta_eef", "joint")
JOINT_UNITS = {"radians": 1.0, "degrees": math.pi / 180.0}  # -> radians
PER_DIM = ("action_low", "action_high", "max_delta_per_period", "joint_velocity_limits")
POSE_DIMS = 6  # ee_pose source: position (3) + axis-angle (3), then the gripper joints
TWIST_DIMS = 6  # delta_eef command: TwistStamped linear (3) + angular (3), then one gripper Float64


def joint_name(name: str) -> str:
    """A dataset's channel name as a ROS joint name: lerobot's 'shoulder_pan.pos' -> 'shoulder_pan'."""
    return name.removesuffix(".pos")


def resolve(p: PolicyNodeParams, robot: Any, policy: str = "") -> PolicyNodeParams:
    """``p`` with every derived value filled in from the checkpoint's embodiment ``robot``
    (policies.embodiment.Embodiment): cameras and their topics, state source and joints, command
    mode, joints and limits (converted to the ROS units). A parameter that contradicts the
    checkpoint, or a value the checkpoint cannot supply, is a ParamError naming both."""
    who = p.NODE
    if robot is None:
        raise ParamError(f"{who}: policy {policy or p.policy!r} has no 'embodiment' (the robot it was trained for): "
                         "the node derives its topics, joints and limits from it")
    import dataclasses

    cams = list(robot.camera_names)
    if p.camera_names and sorted(p.camera_names) != sorted(cams):
        raise ParamError(f"{who}: invalid parameter 'camera_names' = {p.camera_names}: the checkpoint's cameras "
                         f"are {cams} ({robot.describe()})")
    camera_names = list(p.camera_names or cams)
    camera_topics = list(p.camera_topics) or [f"{p.camera_topic_prefix.rstrip('/')}/{c}/image_raw" for c in camera_names]
    _check(len(camera_topics) == len(camera_names), who, "camera_topics", p.camera_topics,
           f"one topic per camera {camera_names}")
    overlay = p.overlay_camera or camera_names[0]
    _check(overlay in camera_names, who, "overlay_camera", p.overlay_camera, f"one of {camera_names}")

    kind = robot.action_kind
    auto_mode = {"delta_eef": "delta_eef", "joint_position": "joint", "joint_delta": "joint"}.get(kind)
    mode = auto_mode if p.action_mode == "auto" else p.action_mode
    if mode is None or mode != auto_mode:
        raise ParamError(f"{who}: invalid parameter 'action_mode' = {p.action_mode!r}: the checkpoint's actions "
                         f"are {kind} ({robot.describe()}); the node commands delta_eef (TwistStamped + gripper) "
                         "or joint_position / joint_delta (JointTrajectory)")
    source = p.state_source if p.state_source != "auto" else ("ee_pose" if kind == "delta_eef" else "joint_state")
    names = [joint_name(n) for n in robot.state_names]
    state_joints, gripper_joints = list(p.state_joint_names), list(p.gripper_joint_names)
    if source == "joint_state":
        state_joints = state_joints or names
        _check(len(state_joints) == robot.state_dim, who, "state_joint_names", p.state_joint_names,
               f"{robot.state_dim} joint names, one per state channel of the checkpoint"
               + ("" if names else " (it records no state names: list them)"))
    else:
        gripper_joints = gripper_joints or names[POSE_DIMS:]
        _check(POSE_DIMS + len(gripper_joints) == robot.state_dim and (p.gripper_joint_names or names), who,
               "gripper_joint_names", p.gripper_joint_names,
               f"{robot.state_dim - POSE_DIMS} joint names: the checkpoint's state is {robot.state_dim}-D and the "
               f"pose gives {POSE_DIMS} (state_source=ee_pose)")

    dim, scale = robot.action_dim, JOINT_UNITS[p.joint_units] if mode == "joint" else 1.0
    joints = list(p.joint_names) or ([joint_name(n) for n in robot.action_names] if mode == "joint" else [])
    if mode == "joint":
        _check(len(joints) == dim, who, "joint_names", p.joint_names,
               f"{dim} joint names, one per action dimension of the checkpoint"
               + ("" if robot.action_names else " (it records no action names: list them)"))
    else:
        _check(dim == TWIST_DIMS + 1 and list(robot.gripper_dims) == [TWIST_DIMS], who, "action_mode", mode,
               f"a delta_eef command is {TWIST_DIMS} deltas + 1 gripper (the last dim); the checkpoint's actions are "
               f"{dim}-D with gripper dims {list(robot.gripper_dims)}")
    for name in PER_DIM:
        values = getattr(p, name)
        _check(not values or len(values) == dim, who, name, values,
               f"{dim} values (one per action dimension of the checkpoint: {robot.describe()})")
    low, high = list(p.action_low), list(p.action_high)
    if not low:
        if kind == "joint_delta" or robot.limits is None:
            why = ("its limits bound the joint increments, not the positions" if kind == "joint_delta"
                   else "it records none")
            raise ParamError(f"{who}: set 'action_low' and 'action_high' (the joints' position limits in rad): "
                             f"the checkpoint cannot supply them ({why})")
        lo, hi = robot.limits
        low, high = [float(v) * scale for v in lo], [float(v) * scale for v in hi]
        if mode == "joint" and p.joint_units == "radians" and max(map(abs, low + high)) > 2 * math.pi + 0.5:
            raise ParamError(f"{who}: invalid parameter 'joint_units' = 'radians': the checkpoint's joint limits reach "
                             f"{max(map(abs, low + high)):.1f}, beyond a turn in radians. lerobot SO-100 data is in "
                             "degrees: set joint_units:=degrees (or give action_low/action_high in rad to keep radians)")
    span = [h - l for l, h in zip(low, high)]
    if p.joint_velocity_limits and mode == "joint":
        max_step = [v * p.period for v in p.joint_velocity_limits]
    elif p.max_delta_per_period:
        max_step = list(p.max_delta_per_period)
    elif mode == "joint" and kind == "joint_delta":
        if robot.limits is None:
            raise ParamError(f"{who}: set 'joint_velocity_limits' (rad/s): the checkpoint records no limits")
        max_step = [max(abs(a), abs(b)) * scale for a, b in zip(*robot.limits)]  # its largest increment
    elif mode == "joint":
        max_step = [s * p.period for s in span]  # one full range per second
    else:
        max_step = [s if i in robot.gripper_dims else 0.25 * s for i, s in enumerate(span)]
    return dataclasses.replace(
        p, camera_names=camera_names, camera_topics=camera_topics, overlay_camera=overlay, state_source=source,
        state_joint_names=state_joints, gripper_joint_names=gripper_joints, action_mode=mode, joint_names=joints,
        action_low=low, action_high=high, max_delta_per_period=max_step,
        joint_velocity_limits=[s / p.period for s in max_step] if mode == "joint" else [])


CHUNK_EXECUTIONS = ("async", "sync", "rtc")


@dataclass
class SimBridgeParams:
    NODE = "sim_bridge_node"
    env: str = param("tabletop", "env config: a name in configs/env/ or a path to a YAML file")
    env_overrides: str = param("", "env config overrides, 'key=value key=value'")
    task: str = param("", "task name ('' = the suite's first task)")
    episode_index: int = param(0, "layout / init-state index of the first episode (then +1 per reset)")
    rate_hz: float = param(30.0, "the sim period: with no command for command_timeout_periods of it, a hold "
                           "step (otherwise the sim steps on each command as it arrives)")
    start_on_launch: bool = param(True, "start the first episode at launch")
    wait_for_policy: bool = param(True, "start the first episode only once a command publisher (the "
                                  "policy node, after loading its checkpoint) is seen on delta_topic")
    auto_reset: bool = param(False, "start the next episode when one ends")
    command_timeout_periods: float = param(2.0, "no delta command for this many sim periods -> a hold step "
                                           "(zero delta, gripper kept); every command is applied once, on arrival")
    camera_topic_prefix: str = param("/vla/camera", "publishes <prefix>/<camera>/image_raw")
    ee_pose_topic: str = param("/vla/ee_pose", "geometry_msgs/PoseStamped")
    joint_state_topic: str = param("/vla/joint_states", "sensor_msgs/JointState (gripper fingers)")
    gripper_joint_names: list[str] = param(["finger_left", "finger_right"], "names for state[6:8] (the "
                                           "tabletop arm's state names, sim/spaces.py STATE_NAMES)")
    instruction_topic: str = param("/vla/instruction", "std_msgs/String (latched) at every episode start")
    episode_start_topic: str = param("/vla/episode_start", "std_msgs/String instruction, once per episode")
    episode_success_topic: str = param("/vla/episode_success", "std_msgs/Bool when an episode ends")
    reset_topic: str = param("/vla/reset", "std_msgs/String: start a new episode ('' = same task)")
    delta_topic: str = param("/vla/cmd/delta_eef", "geometry_msgs/TwistStamped commands in")
    gripper_topic: str = param("/vla/cmd/gripper", "std_msgs/Float64 gripper command in")
    frame_id: str = param("world", "frame of the published pose")
    diagnostics_topic: str = param("/diagnostics", "diagnostic_msgs/DiagnosticArray: 1 Hz status, reset errors")
    log_interval_s: float = param(10.0, "log each problem (bad command, failed reset) at most once per this "
                                  "many seconds, with the count of repeats")

    @property
    def period(self) -> float:
        return 1.0 / self.rate_hz

    def __post_init__(self) -> None:
        who = self.NODE
        _check(bool(self.env), who, "env", self.env, "an env config name (e.g. tabletop) or YAML path")
        _check(0 < self.rate_hz <= 1000, who, "rate_hz", self.rate_hz, "in (0, 1000]")
        _check(self.episode_index >= 0, who, "episode_index", self.episode_index, ">= 0")
        _check(self.command_timeout_periods >= 1.0, who, "command_timeout_periods", self.command_timeout_periods, ">= 1")
        _check(len(self.gripper_joint_names) == 2, who, "gripper_joint_names", self.gripper_joint_names, "two names")
        _check(math.isfinite(self.log_interval_s) and self.log_interval_s >= 0, who, "log_interval_s",
               self.log_interval_s, ">= 0 (seconds)")
        for item in self.env_overrides.split():
            _check("=" in item, who, "env_overrides", self.env_overrides, "'key=value' items")


PARAMS_BY_NODE = {cls.NODE: cls for cls in (PolicyNodeParams, SimBridgeParams)}


# ------------------------------------------------------------------------------- building values
def _coerce(value: Any, kind: str, who: str, name: str) -> Any:
    def bad(expected: str) -> ParamError:
        return ParamError(f"{who}: invalid parameter '{name}' = {value!r}: expected {expected}")

    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad("an integer")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad("a number")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise bad("a string")
    if kind.startswith("list["):
        items = list(value) if isinstance(value, (list, tuple)) else None
        if items is None:  # rclpy gives arrays as list or array.array
            try:
                items = list(value)
            except TypeError:
                raise bad(f"a list ({kind})") from None
            if isinstance(value, (str, bytes)):
                raise bad(f"a list ({kind})")
        inner = kind[5:-1]
        return [_coerce(v, inner, who, name) for v in items]
    raise AssertionError(kind)


def build(cls, values: dict[str, Any]):
    """Coerce ``values`` (name -> raw value) into ``cls``; unknown names raise with a hint."""
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(names) - ROS_BUILTIN_PARAMS)
    if unknown:
        hints = [f"'{u}'" + (f" (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(u, names, 1)) else "")
                 for u in unknown]
        raise ParamError(f"{cls.NODE}: unknown parameter(s) {', '.join(hints)}. Valid: {', '.join(names)}")
    kwargs = {}
    for f in fields(cls):
        if f.name in values and values[f.name] is not None:
            kwargs[f.name] = _coerce(values[f.name], str(f.type), cls.NODE, f.name)
    return cls(**kwargs)


def parse_param_text(node_name: str, name: str, text: str) -> Any:
    """A launch-argument / command-line string -> the parameter's value: kept as text for string
    parameters (so instruction:=yes stays 'yes'), YAML-parsed otherwise (15 -> 15, [a, b] -> list)."""
    cls = PARAMS_BY_NODE[node_name]
    kinds = {f.name: str(f.type) for f in fields(cls)}
    if kinds.get(name) == "str":
        return text
    return yaml.safe_load(text)


def defaults(cls) -> dict[str, Any]:
    return {f.name: (f.default_factory() if f.default is MISSING else f.default) for f in fields(cls)}


def declare(node, cls):
    """Declare every field of ``cls`` on ``node`` and return the validated values.

    The declared parameters then hold the validated values (15 -> 15.0 for a float), and later
    changes (`ros2 param set`) are refused: the nodes read their parameters once, at start-up."""
    from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
    from rclpy.parameter import Parameter

    given = dict(getattr(node, "_parameter_overrides", {}))  # what the params file / -p gave us
    values = {name: param.value for name, param in given.items()}
    for f in fields(cls):
        default = f.default_factory() if f.default is MISSING else f.default
        desc = ParameterDescriptor(description=f.metadata["help"], dynamic_typing=True)
        values[f.name] = node.declare_parameter(f.name, default, desc).value
    result = build(cls, values)
    node.set_parameters([Parameter(f.name, value=getattr(result, f.name)) for f in fields(cls)
                         if getattr(result, f.name) != []])  # an empty list has no ROS type
    node.add_on_set_parameters_callback(lambda _params: SetParametersResult(
        successful=False, reason=f"{cls.NODE} reads its parameters at start-up: relaunch with the new value"))
    return result


# ---------------------------------------------------------------------------------- params files
def read_params_file(path: str | Path, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``node_name`` in a ROS 2 params file (``{}`` if it has none)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ParamError(f"{path}: not a ROS 2 params file (expected 'node_name: {{ros__parameters: ...}}')")
    for key in (node_name, f"/{node_name}", "/**"):
        if key in data:
            section = data[key] or {}
            if not isinstance(section, dict) or not isinstance(section.get("ros__parameters", {}), dict):
                raise ParamError(f"{path}: '{key}' must hold a 'ros__parameters' mapping")
            return dict(section.get("ros__parameters") or {})
    return {}


def write_params_file(path: str | Path, node_name: str, values: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({node_name: {"ros__parameters": values}}, sort_keys=False))
    return path
