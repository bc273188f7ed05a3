"""Policy node: camera + state + instruction topics -> ChunkPolicy -> broker -> safety -> commands.

Thin by design: message checks/conversions live in ``conversions.py``, chunk timing in
``chunk_broker.py``, limits and holds in ``safety_filter.py``; the model is behind the
``vla.runtime.ChunkPolicy`` boundary. Inference runs on a worker thread, never on the executor:

    control loop (own thread, control_rate_hz) --- every tick --------------------------------------
      apply the episode start / instruction change the rate limits let through (a flood of N is one)
      inputs ok? (each camera fresh within stale_periods, state joints fresh, instruction non-empty, the
                  newest message of each sensor valid: not too small, in the workspace, float32-finite)
        yes: broker wants a chunk (<= replan_remaining left, none in flight)? -> snapshot -> worker
        no : hold; the chunk pauses (resumed after a hiccup < max_chunk_pause_s, else dropped)
      action = broker.tick()  (None if the chunk ran out)  -> safety.step(action, hold reasons)
      publish the (possibly hold) command
    worker thread: obs = images/state/instruction -> policy.infer(obs) -> broker.deliver(chunk)
                   + diagnostics (latency, visual tokens, GFLOPs) + keep-mask overlay

chunk_execution: async (above), sync (nothing served while a request is in flight) or rtc (async,
and the request carries the actions of the current chunk that execute while it is inferred, pinned
for rtc_delay_ticks, the rest soft: the flow head's sampling continues them, vla/chunking.py).
policy:=remote: the model runs in a policy server (`vla serve`, server_url); a reply later than
remote_timeout_s or a lost connection is a failed call: hold from the next tick (logged once per
streak), ask again with a fresh observation (the client reconnects with back-off), never a late chunk.

The robot is the checkpoint's (``policy.embodiment``, policies/embodiment.py): its camera names,
state and action channels, action kind, limits and gripper dims decide the topics, joints and safety
limits unless a parameter says otherwise (params.resolve; a parameter that contradicts the
checkpoint, e.g. other camera names, is a start-up error naming both). The start-up log says which
topic carries what, in which units.

Topics (defaults; all are parameters, see configs/ros/policy_node.yaml):
  sub /vla/camera/<cam>/image_raw sensor_msgs/Image, one per camera of the checkpoint, sensor-data
                                  QoS, rgb8|bgr8|mono8, any size (the policy resizes)
  sub /vla/ee_pose                geometry_msgs/PoseStamped      (state_source=ee_pose: state[0:6])
  sub /vla/joint_states           sensor_msgs/JointState by joint name, any order, merged over messages
                                  (e.g. one per arm: the newest value per joint is kept). The state
                                  joints (joint_state source: the whole state, the checkpoint's state
                                  names without '.pos'; ee_pose source: the gripper joints after the pose)
                                  must all be newer than max_joint_state_age_s, else hold (logged once
                                  per occurrence, naming the joints): a missing joint is never guessed
  sub /vla/instruction            std_msgs/String (volatile AND transient-local subscriptions, so
                                  both `ros2 topic pub` and latched publishers are heard; a volatile
                                  publisher logs one "incompatible QoS" warning for the latter)
  sub /vla/episode_start          std_msgs/String: reset policy, broker and safety filter (at most
                                  one per min_episode_start_interval_s; instruction changes likewise)
  pub /vla/cmd/delta_eef          geometry_msgs/TwistStamped     (action_kind delta_eef)
  pub /vla/cmd/gripper            std_msgs/Float64               (action_kind delta_eef)
  pub /vla/cmd/joint_trajectory   trajectory_msgs/JointTrajectory (joint_position, joint_delta: the
                                  increment is added to the last command), one point per control tick
  pub ~/keep_mask_overlay         sensor_msgs/Image
  pub /diagnostics                diagnostic_msgs/DiagnosticArray

Units: ROS joints are radians; ``joint_units: degrees`` (lerobot SO-100 recordings) converts the
JointState into the policy's degrees and its actions back into radians. Joint limits
(action_low/high, rad) default to the checkpoint's action limits, velocity limits
(joint_velocity_limits, rad/s) to one full range per second; the safety filter clips a command into
them (logged, counted in /diagnostics ``clipped.<joint>``) and never publishes it raw.

Delta-EEF command (the documented choice): TwistStamped linear = delta position, angular = delta
axis-angle rotation, both in the policy's normalised per-control-step units (the tabletop arm:
[-1, 1], its controller scales them, e.g. 1.0 = 2 cm / 0.15 rad); the gripper (the checkpoint's
gripper dim) is a separate Float64 (-1 open, +1 close), published first in the same tick. A consumer
keeps the last gripper value (zero-order hold). TwistStamped is what servo-style controllers (e.g.
MoveIt Servo) take.
Hold (safety_filter.py): zero twist, gripper unchanged; in joint mode the last safe command.

Failures: a rejected sensor message holds (reason '<input>:<kind>', e.g. 'ee_pose:out_of_workspace')
until that input sends a valid one; each reason is logged at most once per log_interval_s (with the
count of repeats) and counted in /diagnostics. A worker thread (control loop, inference) that dies
is a node failure (``failure()``, ERROR diagnostics; `vla ros bringup` then exits non-zero).
"""

from __future__ import annotations

import importlib
import itertools
import queue
import statistics
import threading
import time
import traceback
from collections import deque
from typing import Any

import numpy as np
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, String
from trajectory_msgs.msg import JointTrajectory

from ros_nodes import conversions as conv
from ros_nodes.chunk_broker import ChunkBroker
from ros_nodes.health import LogLimiter, Throttle, WorkerThread
from ros_nodes.nodes import CONFIG_DIR, parse_launch_value
from ros_nodes.standalone import run_standalone
from ros_nodes.params import ParamError, PolicyNodeParams, declare, resolve
from ros_nodes.safety_filter import SafetyFilter
from vla.runtime import ChunkPolicy

LATCHED = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


def make_policy(p: PolicyNodeParams, handles: dict[str, Any]) -> ChunkPolicy:
    """``policy='checkpoint'`` -> ``vla.runtime.load_policy``; ``'remote'`` -> the server at ``server_url``
    (vla/remote.py); ``'module:factory'`` -> factory(params, handles)."""
    options = {k: parse_launch_value(v) for k, _, v in (item.partition("=") for item in p.policy_options.split())}
    accel = accel_preset(p.accel)  # validated for every policy, so a typo never goes unnoticed
    if p.policy == "checkpoint":
        from vla.runtime import load_policy

        if p.compressor:
            options["compressor"] = compressor_override(p.compressor)
        policy = load_policy(p.checkpoint, device=p.device, accel=accel,
                             trust_checkpoint_code=p.trust_checkpoint_code, **options)
        policy.gflops = _count_gflops(policy)
    elif p.policy == "remote":  # the same runtime boundary as a checkpoint (vla/remote.py)
        from vla.remote import RemotePolicyError
        from vla.runtime import load_policy

        if accel is not None:
            raise ParamError(f"policy_node: accel={p.accel} applies where the policy runs: start the server "
                             f"({p.server_url}) with it")
        try:
            policy = load_policy(p.server_url, timeout_s=p.remote_timeout_s, **options)
        except (RemotePolicyError, ValueError) as e:
            raise ParamError(f"policy_node: policy server {p.server_url}: {e}") from e
    else:
        module, _, name = p.policy.partition(":")
        try:
            factory = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise ParamError(f"policy_node: invalid parameter 'policy' = {p.policy!r}: {e}") from e
        try:
            policy = factory(params=p, handles=handles, **options)
        except (TypeError, ValueError) as e:  # bad options, or a double used where it cannot work
            raise ParamError(f"policy_node: policy '{p.policy}' (policy_options '{p.policy_options}'): {e}") from e
    if not isinstance(policy, ChunkPolicy):
        raise ParamError(f"policy_node: {p.policy} returned {type(policy).__name__}, not a ChunkPolicy")
    return policy


def compressor_override(name: str) -> dict[str, Any]:
    """configs/compressor/<name>.yaml -> the load-time override {"name": ..., "kwargs": {...}}."""
    path = CONFIG_DIR / "compressor" / f"{name}.yaml"
    if not path.is_file():
        names = sorted(f.stem for f in path.parent.glob("*.yaml"))
        raise ParamError(f"policy_node: invalid parameter 'compressor' = {name!r}: not one of {names}")
    preset = yaml.safe_load(path.read_text()) or {}
    return {"name": preset.pop("name", name), "kwargs": preset}


def accel_preset(name: str) -> Any:
    """The ``accel`` parameter as a vla.accel.AccelSpec (None for ``none``); ParamError naming the presets."""
    from vla.accel import accel_spec

    try:
        return accel_spec(name)
    except ValueError as e:
        raise ParamError(f"policy_node: invalid parameter 'accel' = {name!r}: {e}") from e


def _count_gflops(policy: Any) -> float | None:
    """FLOPs of one policy call, counted once at start-up (the token budget fixes them)."""
    try:
        from vla.batches import make_batch
        from vla.cost import count_flops

        flops = count_flops(policy.policy, make_batch(policy.policy, policy.preprocessor))["total"]
        policy.reset()
        return flops / 1e9
    except Exception:  # noqa: BLE001 - diagnostics only: report "n/a" rather than refuse to start
        return None


class _Rejections:
    """Rejected messages per input ('camera_<name>', 'ee_pose', ...) and reason (``BadMessage.kind``).

    An input whose newest message was rejected is *bad* until it sends a valid one; the node holds
    meanwhile (``hold_reasons``). Going bad and valid again are logged through the node's LogLimiter,
    so an input alternating good/bad messages logs a few lines, not two per message."""

    def __init__(self, logger, limiter: LogLimiter):
        self.logger, self.limiter = logger, limiter
        self.counts: dict[str, int] = {}  # input -> rejected messages
        self.by_reason: dict[str, int] = {}  # "input.kind" -> rejected messages
        self._bad: dict[str, str] = {}  # input -> kind of its newest (rejected) message, if it holds
        self._lock = threading.Lock()  # callbacks write, the control thread reads

    def bad(self, source: str, error: conv.BadMessage, hold: bool = True) -> None:
        with self._lock:
            self.counts[source] = self.counts.get(source, 0) + 1
            key = f"{source}.{error.kind}"
            self.by_reason[key] = self.by_reason.get(key, 0) + 1
            if hold:
                self._bad[source] = error.kind
        if (line := self.limiter.allow(f"rejected.{key}", f"rejecting {source}: {error}")) is not None:
            self.logger.warning(line)

    def good(self, source: str) -> None:
        with self._lock:
            was_bad = self._bad.pop(source, None) is not None
            total = self.counts.get(source, 0)
        # No summary of repeats: the 'rejecting' line's summary already counts the flips.
        if was_bad and (line := self.limiter.allow(f"valid.{source}", f"{source}: valid again "
                                                   f"({total} rejected so far)", summarize=False)) is not None:
            self.logger.info(line)

    def hold_reasons(self) -> set[str]:
        with self._lock:
            return {f"{source}:{kind}" for source, kind in self._bad.items()}

    def diagnostics(self) -> dict[str, int]:
        with self._lock:
            return {**{f"rejected.{k}": v for k, v in self.counts.items()},
                    **{f"rejected.{k}": v for k, v in self.by_reason.items()}}


class PolicyNode(Node):
    def __init__(self, cli_args: list[str] | None = None, handles: dict[str, Any] | None = None,
                 policy: ChunkPolicy | None = None, context=None):
        super().__init__("policy_node", cli_args=cli_args, context=context)
        p = declare(self, PolicyNodeParams)
        log = self.get_logger()
        self.clock = time.monotonic  # every input/tick time; a test may replace it (simulated time)
        self.log_limiter = LogLimiter(p.log_interval_s, clock=lambda: self.clock())
        self.policy = policy if policy is not None else make_policy(p, handles or {})
        # The robot it was trained for decides the topics, joints, units and limits (params.resolve).
        self.robot = getattr(self.policy, "embodiment", None)
        self.policy_name = p.policy if policy is None else type(policy).__name__
        self.p = p = resolve(p, self.robot, self.policy_name)
        self.broker = ChunkBroker(p.replan_remaining, p.align_chunks, sync=p.chunk_execution == "sync")
        self._rtc_normalise = None  # rtc: env-unit actions -> the flow head's normalised space
        if p.chunk_execution == "rtc":
            from vla.chunking import action_normaliser, supports_rtc

            if not supports_rtc(self.policy):
                raise ParamError(f"policy_node: chunk_execution=rtc guides a flow-matching VLA head; "
                                 f"{self.policy_name} is not one (use async or sync)")
            self._rtc_normalise = action_normaliser(self.policy)
        delta = p.action_mode == "delta_eef"
        grippers = list(self.robot.gripper_dims)
        self._scale = 1.0 if delta else p.joint_scale  # policy action/state units -> the published ones
        self._integrate = self.robot.action_kind == "joint_delta"  # joint increments -> position targets
        self.safety = SafetyFilter(
            p.action_low, p.action_high, p.max_delta_per_period,
            keep_dims=grippers if delta else range(p.action_dim),  # delta hold: no motion, gripper kept
            initial=[p.action_low[i] if i in grippers else 0.0 for i in range(p.action_dim)] if delta else None,
            warn=log.warning, info=log.info, debug=log.debug, limiter=self.log_limiter,
            names=p.joint_names if not delta else self.robot.action_names)
        self.rejected = _Rejections(log, self.log_limiter)
        # Commands from the network that reset the robot's chunk: rate-limited, so a flood of
        # /vla/episode_start (each one drops the chunk: a hold until the next) cannot hold it for good.
        self._episode_starts = Throttle(p.min_episode_start_interval_s, clock=lambda: self.clock())
        self._instructions = Throttle(p.min_instruction_interval_s, clock=lambda: self.clock())
        self._episode_starts_coalesced = 0  # last value logged
        self.stats = {"commands": 0, "holds": 0, "chunks": 0, "inference_failures": 0}
        self.hold_counts: dict[str, int] = {}  # reason -> control ticks held for it
        self.last_inference: dict[str, Any] = {}  # the last inference diagnostics
        self.frame_to_action_ms: deque[float] = deque(maxlen=10_000)
        self.inference_ms: deque[float] = deque(maxlen=10_000)
        self._publish_times: deque[float] = deque(maxlen=1024)  # > 30 s at 30 Hz: a whole SIL episode
        self._action_stamps: deque[float] = deque(maxlen=64)  # ROS time of each chunk action published

        self._lock = threading.Lock()  # guards the latest inputs below (callbacks vs control tick)
        self._frames: dict[str, tuple[Image, float]] = {}
        self._frame_gaps: dict[str, deque[float]] = {cam: deque(maxlen=16) for cam in p.camera_names}
        self._camera_period: dict[str, float] = {}  # median of the recent frame gaps, per camera
        self._pose6: np.ndarray | None = None
        self._state_joints = p.state_joint_names if p.state_source == "joint_state" else p.gripper_joint_names
        # Joint states merged over messages (one per arm, say): the newest value of each joint.
        self._joints = conv.JointCache([*self._state_joints, *p.joint_names])
        self._joint_problem: tuple[str, ...] = ()  # the joints last reported without a fresh value
        self._instruction = ""
        self._reset_pending: str | bool = False  # False, "instruction" or "episode"
        self._failed = False
        self._have_command = False
        self._held_ticks = 0  # consecutive ticks held for lost inputs
        self._warned_replan = False
        self._last_reasons: tuple[str, ...] = ()
        # Policies that condition on past frames (lerobot Diffusion's n_obs_steps) must see consecutive
        # frames, as in `vla eval`, not one frame per chunk: keep the newest n_obs_steps distinct input
        # snapshots (the last is the current one); the worker observes the older ones before infer.
        observes = callable(getattr(self.policy, "observe", None))
        self._history: deque[dict[str, Any]] = deque(
            maxlen=int(getattr(self.policy, "n_obs_steps", 1) or 1) if observes else 0)
        self._history_key: tuple[float, ...] | None = None
        self._set_instruction(p.instruction, "parameter")

        sensors = ReentrantCallbackGroup()
        for cam, topic in zip(p.camera_names, p.camera_topics):
            self.create_subscription(Image, topic, lambda m, c=cam: self._on_image(c, m), qos_profile_sensor_data,
                                     callback_group=sensors)
        self.create_subscription(JointState, p.joint_state_topic, self._on_joint_state, qos_profile_sensor_data,
                                 callback_group=sensors)
        if p.state_source == "ee_pose":
            self.create_subscription(PoseStamped, p.ee_pose_topic, self._on_pose, qos_profile_sensor_data,
                                     callback_group=sensors)
        for qos in (10, LATCHED):
            self.create_subscription(String, p.instruction_topic, self._on_instruction, qos, callback_group=sensors)
        self.create_subscription(String, p.reset_topic, self._on_episode_start, 10, callback_group=sensors)

        if delta:
            self._pub_twist = self.create_publisher(TwistStamped, p.delta_topic, 10)
            self._pub_gripper = self.create_publisher(Float64, p.gripper_topic, 10)
        else:
            self._pub_traj = self.create_publisher(JointTrajectory, p.trajectory_topic, 10)
        self._pub_overlay = self.create_publisher(Image, p.overlay_topic, qos_profile_sensor_data)
        self._pub_diag = self.create_publisher(DiagnosticArray, p.diagnostics_topic, 10)

        self._worker = _InferenceWorker(self, on_failure=self._on_thread_failure)
        self._worker.start()
        self._control = _ControlLoop(self._on_control_tick, p.period, log, on_failure=self._on_thread_failure)
        self._control.start()
        self.create_timer(1.0, self._publish_status, callback_group=MutuallyExclusiveCallbackGroup())
        log.info(f"policy '{self.policy_name}' ready: {self.robot.describe()}, {p.action_mode} at "
                 f"{p.control_rate_hz:g} Hz, re-plan at {p.replan_remaining} actions left ({p.chunk_execution})")
        log.info(self.describe_io())

    def describe_io(self) -> str:
        """Which topic carries what, in which units: the start-up line a user checks against the robot."""
        p = self.p
        cams = ", ".join(f"{c} <- {t}" for c, t in zip(p.camera_names, p.camera_topics))
        units = f" ({p.joint_units} in the policy, radians on ROS)" if p.joint_units != "radians" else ""
        if p.state_source == "joint_state":
            state = f"state <- {p.joint_state_topic} joints {p.state_joint_names}{units}"
        else:
            state = f"state <- {p.ee_pose_topic} + {p.joint_state_topic} joints {p.gripper_joint_names}"
        limits = ", ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(p.action_low, p.action_high))
        if p.action_mode == "joint":
            speed = ", ".join(f"{v:.3g}" for v in p.joint_velocity_limits)
            out = (f"{self.robot.action_kind} -> {p.trajectory_topic} JointTrajectory joints {p.joint_names}{units}, "
                   f"position limits (rad) {limits}, velocity limits (rad/s) [{speed}]")
        else:
            out = f"delta_eef -> {p.delta_topic} TwistStamped + {p.gripper_topic} Float64, limits {limits}"
        return f"cameras: {cams}; {state}; commands: {out}"

    # ------------------------------------------------------------------------------- inputs
    def _on_image(self, cam: str, msg: Image) -> None:
        try:
            conv.check_image(msg, self.p.max_image_pixels, self.p.min_image_side)
        except conv.BadMessage as e:
            self.rejected.bad(f"camera_{cam}", e)
            return
        self.rejected.good(f"camera_{cam}")
        now = self.clock()
        with self._lock:
            if cam in self._frames:  # the camera's own rate, for its staleness allowance
                self._frame_gaps[cam].append(now - self._frames[cam][1])
                self._camera_period[cam] = statistics.median(self._frame_gaps[cam])
            self._frames[cam] = (msg, now)

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            with self._lock:
                ours = self._joints.update(msg, self.clock())
        except conv.BadMessage as e:
            self.rejected.bad("joint_state", e)
            return
        if ours:  # a message with none of our joints is another publisher's: neither good nor bad
            self.rejected.good("joint_state")

    def _on_pose(self, msg: PoseStamped) -> None:
        try:
            state = conv.state_from_pose(msg, np.zeros(0), shortest=self.p.axis_angle_shortest,
                                         workspace=(self.p.workspace_low, self.p.workspace_high))
        except conv.BadMessage as e:
            self.rejected.bad("ee_pose", e)
            return
        self.rejected.good("ee_pose")
        with self._lock:
            self._pose6 = state

    def _on_instruction(self, msg: String) -> None:
        text = msg.data
        if len(text) > self.p.max_instruction_chars:
            # It clears the instruction, so the node holds for 'no_instruction': no second reason.
            self.rejected.bad("instruction", conv.BadMessage(
                f"{len(text)} characters > max_instruction_chars {self.p.max_instruction_chars}; "
                "holding until a valid one arrives", "too_long"), hold=False)
            text = ""
        else:
            self.rejected.good("instruction")
        text = text.strip()
        with self._lock:
            unchanged = text == self._instruction and not self._instructions.pending
        if not unchanged:  # the same text again (both QoS subscriptions hear it) is no change
            self._instructions.request(text)  # applied by the control tick, rate-limited

    def _set_instruction(self, text: str, source: str) -> None:
        text = text.strip()
        with self._lock:
            changed, self._instruction = text != self._instruction, text
            if changed:  # a new task: drop the old chunk and reset the policy, but keep the safety
                # filter's last command (the gripper may be holding something)
                self._reset_pending = self._reset_pending or "instruction"
        # Keyed by text: a flood alternating two instructions logs two lines per log_interval_s.
        if changed and text and (line := self.log_limiter.allow(f"instruction.{text[:120]}",
                                                                f"instruction ({source}): '{text[:120]}'")):
            self.get_logger().info(line)

    def _on_episode_start(self, _msg: String) -> None:
        self._episode_starts.request()  # applied by the control tick, rate-limited

    def _apply_network_resets(self) -> None:
        """The instruction change / episode start the rate limits let through this tick."""
        text = self._instructions.poll()
        if text is not None:
            self._set_instruction(text, "topic")
        if self._episode_starts.poll() is not None:
            with self._lock:
                self._reset_pending = "episode"  # the robot/sim was reset too: start the filter afresh
        merged = self._episode_starts.coalesced
        if merged > self._episode_starts_coalesced:
            self._episode_starts_coalesced = merged
            line = self.log_limiter.allow("rate_limited.episode_start",
                                          f"{self.p.reset_topic} arrives faster than min_episode_start_interval_s="
                                          f"{self.p.min_episode_start_interval_s:g}: {merged} merged so far")
            if line is not None:
                self.get_logger().warning(line)

    # ------------------------------------------------------------------------- control tick
    def _hold_reasons(self, now: float) -> set[str]:
        """Input problems that force a hold (caller holds self._lock)."""
        reasons = self.rejected.hold_reasons()  # e.g. 'ee_pose:out_of_workspace', until a valid one
        if any(cam not in self._frames or now - self._frames[cam][1] > self._max_frame_age(cam)
               for cam in self.p.camera_names):
            reasons.add("camera_stale")
        if self._state(now) is None:
            reasons.add("no_state" if not self._joints.seen() or (
                self.p.state_source == "ee_pose" and self._pose6 is None) else "joint_state_stale")
        if not self._instruction:
            reasons.add("no_instruction")
        return reasons

    def _check_joints(self, now: float) -> np.ndarray | None:
        """The configured state joints (ROS units), or None; a joint without a fresh value is logged
        once per occurrence (rate-limited), naming it (caller holds self._lock)."""
        values, problems = self._joints.read(self._state_joints, now, self.p.max_joint_state_age_s)
        missing = tuple(sorted(problems))
        if missing and missing != self._joint_problem and self._joints.seen():
            detail = ", ".join(f"{n} ({problems[n]})" for n in missing[:8])
            line = self.log_limiter.allow(f"joint_state.missing.{','.join(missing)}",
                                          f"{self.p.joint_state_topic}: no value newer than max_joint_state_age_s="
                                          f"{self.p.max_joint_state_age_s:g} s for {detail}: holding")
            if line is not None:
                self.get_logger().warning(line)
        self._joint_problem = missing
        return values

    def _max_frame_age(self, cam: str) -> float:
        """stale_periods control periods, or camera_stale_periods of the camera's own measured period
        if longer (capped): a 29 Hz camera under a 30 Hz loop must not flicker the hold every frame.
        Once stale, only a new frame ends the hold (the period estimate changes only with frames)."""
        own = min(self.p.camera_stale_periods * self._camera_period.get(cam, 0.0), self.p.max_frame_age_s)
        return max(self.p.stale_periods * self.p.period, own)

    def _inputs(self, now: float) -> dict[str, Any]:
        """The current inputs (caller holds self._lock)."""
        return {"frames": {c: self._frames[c][0] for c in self.p.camera_names},
                "state": self._state(now), "instruction": self._instruction}

    def _remember_inputs(self, now: float) -> None:
        """Append the current inputs to the history once per new camera frame (caller holds self._lock)."""
        if not self._history.maxlen:
            return  # the policy keeps no history: nothing to do on this 30 Hz path
        key = tuple(self._frames[c][1] for c in self.p.camera_names)
        if key != self._history_key:
            self._history_key = key
            self._history.append(self._inputs(now))

    def _state(self, now: float | None = None) -> np.ndarray | None:
        """The policy's state (its own units) from the freshest inputs, or None (caller holds self._lock)."""
        joints = self._check_joints(self.clock() if now is None else now)
        if joints is None:
            return None
        if self.p.state_source == "joint_state":
            return (joints / self._scale).astype(np.float32)  # ROS radians -> e.g. the dataset's degrees
        if self._pose6 is None:
            return None
        return np.concatenate([self._pose6, joints]).astype(np.float32)

    def _command_joints(self, now: float) -> np.ndarray | None:
        """Joint mode: the measured positions of the commanded joints (ROS units), if all are fresh."""
        return self._joints.read(self.p.joint_names, now, self.p.max_joint_state_age_s)[0]

    def _on_control_tick(self) -> None:
        self._apply_network_resets()
        if not getattr(self.policy, "connected", True) and self.broker.remaining:
            self.broker.reset()  # its policy server went away: its last chunk is not executed on
            self.get_logger().warning("policy server connection lost: holding, reconnecting")
        now = self.clock()
        with self._lock:
            reset, self._reset_pending = self._reset_pending, False
            if reset:
                self._history.clear()
                self._history_key = None
            reasons = self._hold_reasons(now)
            snapshot = None
            if not reasons:
                self._remember_inputs(now)
                if self.broker.want_chunk():
                    *history, current = self._history or [self._inputs(now)]
                    snapshot = {**current, "history": history}
            command_joints = self._command_joints(now) if self.p.action_mode == "joint" else None
        if reset:
            self.broker.reset()
            self._worker.reset_policy()
            if reset == "episode":
                self.safety.reset()
                self._have_command = False
                self._action_stamps.clear()
        if reasons:
            # Inputs lost: hold, and pause the chunk. A hiccup (< max_chunk_pause_s) resumes it where
            # it stopped; a longer outage drops it, so the robot restarts from a fresh observation.
            self._held_ticks += 1
            if self._held_ticks * self.p.period > self.p.max_chunk_pause_s:
                self.broker.reset()
        else:
            self._held_ticks = 0
        if not reasons and snapshot is not None:
            stamp = min(conv.stamp_seconds(m.header.stamp) for m in snapshot["frames"].values())
            lived = self._served_after(stamp)
            token = self.broker.begin_request({"frame_stamp": stamp}, lived=lived)
            if self._rtc_normalise is not None:  # the actions the next chunk must continue
                snapshot["rtc"] = self.broker.executing(lived, ahead=self._rtc_delay_ticks())
            self._worker.submit(token, snapshot)
        action, meta = (None, None) if reasons else self.broker.tick()
        if self._failed:
            reasons.add("inference_failed")
        if meta is not None and meta.get("frame_stamp", 0) > 0:
            self.frame_to_action_ms.append((self._now_s() - meta["frame_stamp"]) * 1e3)
        if self.p.action_mode == "joint" and not self._have_command:
            if command_joints is None:
                return  # never command a joint position before we know where the arm is
            self.safety.seed(command_joints)
        if action is not None and self.p.action_mode == "joint":
            action = np.asarray(action, dtype=np.float64) * self._scale  # e.g. degrees -> radians
            if self._integrate:  # joint_delta: the increment applies to the last command
                action = self.safety.last + action
        cmd = self.safety.step(action, reasons)
        self._publish(cmd.values)
        if action is not None and not cmd.hold:  # a chunk action went out: when (for _served_after)
            self._action_stamps.append(self._now_s())
        self._have_command = True
        self.stats["commands"] += 1
        self.stats["holds"] += int(cmd.hold)
        for reason in cmd.reasons:
            self.hold_counts[reason] = self.hold_counts.get(reason, 0) + 1
        self._last_reasons = cmd.reasons

    def _rtc_delay_ticks(self) -> int:
        """Control periods the next inference will take: the parameter, or the p90 of the last 20."""
        if self.p.rtc_delay_ticks >= 0:
            return self.p.rtc_delay_ticks
        n = len(self.inference_ms)
        recent = list(itertools.islice(self.inference_ms, max(0, n - 20), n))  # the last 20, not a copy of all
        return int(np.ceil(np.percentile(recent, 90) / (1e3 * self.p.period))) if recent else 0

    def rtc_infer(self, obs: dict[str, Any], rtc: tuple[np.ndarray, int, int] | None) -> dict[str, Any]:
        """policy.infer, guided to continue ``rtc`` = broker.executing(...) when given (chunk_execution=rtc)."""
        if rtc is None:
            return self.policy.infer(obs)
        from vla.chunking import rtc_guide

        chunk, start, executing = rtc
        return self.policy.infer(obs, rtc=rtc_guide(self._rtc_normalise, chunk, start, executing, self.p.rtc_beta))

    def _served_after(self, stamp: float) -> int:
        """Chunk actions published after the frame at ``stamp`` was captured: the robot executes them
        after the state the new chunk is planned from (a frame that does not show the last command
        yet, e.g. delivered late under load). 0 for a stamp not on our clock (in the future, older
        than max_frame_age_s, or unset): then only the actions served since the request are dropped."""
        now = self._now_s()
        if not self.p.align_chunks or not 0 < stamp <= now or now - stamp > self.p.max_frame_age_s:
            return 0
        return sum(1 for t in self._action_stamps if t > stamp)

    def _publish(self, values: np.ndarray) -> None:
        stamp = self.get_clock().now().to_msg()
        if self.p.action_mode == "delta_eef":
            twist, gripper = conv.delta_eef_msgs(values, stamp, self.p.command_frame_id)
            self._pub_gripper.publish(gripper)
            self._pub_twist.publish(twist)
        else:
            self._pub_traj.publish(conv.trajectory_msg(values, self.p.joint_names, stamp, self.p.period))
        self._publish_times.append(self.clock())

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ---------------------------------------------------------------------- worker callbacks
    def on_chunk(self, token: int, out: dict[str, Any], actions: np.ndarray, obs: dict, latency_ms: float) -> None:
        if not self.broker.deliver(token, actions):
            return  # orphaned by a reset while inferring
        if self._failed:  # the failure streak (logged once at its start) is over
            self.get_logger().info(f"inference works again ({self.stats['inference_failures']} failed calls so far)")
        self._failed = False
        self.stats["chunks"] += 1
        self.inference_ms.append(latency_ms)
        gflops = out.get("gflops", getattr(self.policy, "gflops", None))
        values = {"latency_ms": latency_ms, "chunk_len": len(actions),
                  "visual_tokens": int(out.get("visual_tokens", 0)),
                  "gflops": "n/a" if gflops is None else float(gflops),
                  **{f"timing_ms.{k}": float(v) for k, v in (out.get("timing_ms") or {}).items()}}
        self.last_inference = values
        periods = latency_ms / (1e3 * self.p.period)
        if periods > self.p.replan_remaining + 1 and self.p.chunk_execution != "sync" and not self._warned_replan:
            self._warned_replan = True  # once: the broker runs dry and the robot holds between chunks
            self.get_logger().warning(
                f"inference took {latency_ms:.0f} ms = {periods:.1f} control periods, but the next chunk is "
                f"requested with replan_remaining={self.p.replan_remaining} actions left: the robot will "
                f"hold between chunks. Set replan_remaining >= {int(periods) + 1} (with a longer chunk).")
        self._diagnostics("inference", DiagnosticStatus.OK, "chunk inferred", values)
        masks = out.get("keep_masks") or {}
        cam = self.p.overlay_camera
        if cam in masks and cam in obs["images"] and self._pub_overlay.get_subscription_count() > 0:
            overlay = conv.keep_mask_overlay(obs["images"][cam], masks[cam])
            self._pub_overlay.publish(conv.rgb_to_image(overlay, self.get_clock().now().to_msg(), cam))

    def on_inference_error(self, token: int, error: BaseException) -> None:
        self.broker.fail(token)
        self.broker.reset()
        self.stats["inference_failures"] += 1
        if not self._failed:  # log once per failure streak; the safety filter logs the hold
            self.get_logger().error(f"inference failed: {error!r}\n{traceback.format_exc(limit=5)}")
        self._failed = True
        self._diagnostics("inference", DiagnosticStatus.ERROR, f"inference failed: {error!r}"[:200], {})

    # --------------------------------------------------------------------------- diagnostics
    def publish_times(self) -> np.ndarray:
        """``self.clock()`` times of the last commands published (up to 256)."""
        return np.array(self._publish_times, dtype=np.float64)

    def action_rate_hz(self) -> float:
        t = list(self._publish_times)
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def failure(self) -> str | None:
        """Why the node no longer works (a dead worker thread), or None."""
        for thread in (getattr(self, "_control", None), getattr(self, "_worker", None)):
            if thread is not None and thread.failure is not None:
                return thread.failure
        return None

    def _on_thread_failure(self, why: str) -> None:
        threads = (getattr(self, name, None) for name in ("_control", "_worker"))
        tb = next((t.traceback for t in threads if t is not None and t.failure == why), "")
        self.get_logger().error(f"{why}: the node cannot go on\n{tb}")
        self._diagnostics("control", DiagnosticStatus.ERROR, why[:200], {"failure": why})

    def _publish_status(self) -> None:
        for line in self.log_limiter.flush():  # the repeats suppressed since each reason's last line
            self.get_logger().info(line)
        f2a = list(self.frame_to_action_ms)[-100:]
        failure = self.failure()
        level = DiagnosticStatus.WARN if self._last_reasons else DiagnosticStatus.OK
        values = {"hold": bool(self._last_reasons), "hold_reasons": ",".join(self._last_reasons),
                  "action_rate_hz": self.action_rate_hz(), **self.stats, "overruns": self._control.overruns,
                  "tick_errors": self._control.errors,
                  "frame_to_action_ms_p50": float(np.median(f2a)) if f2a else "n/a",
                  **{f"held_ticks.{k}": v for k, v in self.hold_counts.items()},
                  **self.rejected.diagnostics(),
                  "clipped": sum(self.safety.clipped.values()),
                  **{f"clipped.{k}": v for k, v in self.safety.clipped.items()},
                  "velocity_limited": self.safety.rate_limited,
                  "rate_limited.episode_start": self._episode_starts.coalesced,
                  "rate_limited.instruction": self._instructions.coalesced,
                  "log_lines_suppressed": self.log_limiter.suppressed}
        message = "holding: " + ",".join(self._last_reasons) if self._last_reasons else "running"
        if failure is not None:
            level, message, values["failure"] = DiagnosticStatus.ERROR, failure[:200], failure
        self._diagnostics("control", level, message, values)

    def _diagnostics(self, what: str, level: bytes, message: str, values: dict) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [conv.diagnostic_status(f"{self.get_name()}: {what}", "vla", level, message, values)]
        self._pub_diag.publish(msg)

    def destroy_node(self) -> None:
        for thread in ("_control", "_worker"):  # absent if construction failed (e.g. a bad parameter)
            if hasattr(self, thread):
                getattr(self, thread).stop()
        super().destroy_node()


class _ControlLoop(WorkerThread):
    """Calls ``tick`` every ``period`` on the steady clock, on its own thread rather than an executor
    timer: executor dispatch under load delays ticks by more than a period, and rcl timers then skip
    them. Ticks up to CATCH_UP periods late are caught up at once (a FIFO consumer such as the sim
    bridge applies every command once, so the count matters more than exact spacing; a consumer
    that keeps the latest command just sees the newest); further behind, the schedule restarts from
    now and the skipped ticks are counted in ``overruns``."""

    CATCH_UP = 5

    def __init__(self, tick, period: float, logger=None, on_failure=None):
        super().__init__("policy_node.control", on_failure=on_failure)
        self.tick, self.period, self.overruns, self.errors = tick, period, 0, 0
        self.logger = logger

    def work(self) -> None:
        next_t = time.monotonic()
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - the loop must outlive a bad tick
                self.errors += 1
                if self.logger is not None and self.errors in (1, 10, 100, 1000):
                    self.logger.error(f"control tick failed ({self.errors}x): {e!r}\n{traceback.format_exc(limit=5)}")
            next_t += self.period
            behind = time.monotonic() - next_t
            if behind > self.CATCH_UP * self.period:
                self.overruns += int(behind / self.period)
                next_t = time.monotonic()
            self.stopping.wait(max(0.0, next_t - time.monotonic()))


class _InferenceWorker(WorkerThread):
    """Runs every policy call (infer and reset) on one thread, off the executor."""

    def __init__(self, node: PolicyNode, on_failure=None):
        super().__init__("policy_node.inference", on_failure=on_failure)
        self.node = node
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._reset = threading.Event()

    def submit(self, token: int, snapshot: dict) -> None:
        try:
            self._queue.put_nowait((token, snapshot))
        except queue.Full:  # cannot happen while the broker allows one request in flight
            self.node.broker.fail(token)

    def reset_policy(self) -> None:
        self._reset.set()

    def work(self) -> None:
        node = self.node
        while not self.stopping.is_set():
            try:
                token, snap = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._reset.is_set():
                    self._reset.clear()
                    self._call_reset()
                continue
            if self._reset.is_set():
                self._reset.clear()
                self._call_reset()
            try:
                for past in snap.get("history", ()):  # frames since the last chunk, oldest first
                    node.policy.observe(self._observation(past))
                obs = self._observation(snap)
                t0 = time.perf_counter()
                out = node.rtc_infer(obs, snap.get("rtc"))
                latency_ms = (time.perf_counter() - t0) * 1e3
                actions = _check_chunk(out, node.p.action_dim)
            except Exception as e:  # noqa: BLE001 - any policy failure must become a hold, not a crash
                node.on_inference_error(token, e)
                continue
            node.on_chunk(token, out, actions, obs, latency_ms)

    def _observation(self, snap: dict[str, Any]) -> dict[str, Any]:
        p = self.node.p
        return {"images": {c: conv.image_to_rgb(m, p.max_image_pixels, p.min_image_side) for c, m in snap["frames"].items()},
                "state": snap["state"], "instruction": snap["instruction"]}

    def _call_reset(self) -> None:
        try:
            self.node.policy.reset()
        except Exception as e:  # noqa: BLE001
            self.node.get_logger().error(f"policy.reset() failed: {e!r}")


def _check_chunk(out: Any, dim: int) -> np.ndarray:
    if not isinstance(out, dict) or "actions" not in out:
        raise ValueError("policy.infer must return a dict with 'actions'")
    actions = np.asarray(out["actions"], dtype=np.float32)
    if actions.ndim == 1:
        actions = actions[None]
    if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] != dim:
        raise ValueError(f"actions must be [H >= 1, {dim}], got {actions.shape}")
    if not np.all(np.isfinite(actions)):
        raise ValueError("actions contain NaN/Inf")
    return actions


def main(args: list[str] | None = None) -> None:
    """`ros2 run vla policy_node --ros-args --params-file configs/ros/policy_node.yaml [-p k:=v]`."""
    run_standalone(PolicyNode, "policy_node", args)


if __name__ == "__main__":
    main()
