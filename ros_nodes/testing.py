"""TEST DOUBLES for the ROS layer: stand-ins for a trained checkpoint and for a robot.

Policies (never deploy them). Select one with the policy node parameter ``policy`` (options via ``policy_options``):

  ros_nodes.testing:slow_fake_policy   sleeps min_latency_s..max_latency_s per call, then returns a
                                       smooth, bounded chunk of `chunk` actions (+ keep masks,
                                       visual tokens, timing). Proves the broker keeps publishing at
                                       the control rate while inference is slower than a period.
                                       fault_every=k: every k-th call fails in turn with NaN
                                       actions, an exception, a wrong shape, or huge values.
  ros_nodes.testing:expert_policy      PRIVILEGED: ignores the observation and asks the suite's
                                       scripted expert (sim.experts.make_expert), which reads the
                                       sim state of the sim bridge node *in the same process*
                                       (handles["sim_bridge_node"]). Only works under
                                       `vla ros bringup sim=true`; it exercises the whole ROS loop
                                       (topics, broker, safety filter, bridge) with a policy that
                                       succeeds, until a trained checkpoint replaces it.
                                       The expert is a deadbeat controller tuned for zero actuation
                                       delay; over ROS an action reaches the sim 1-2 steps after the
                                       state it came from, which makes it oscillate (3/13 tabletop
                                       tasks at 1 step of delay, 0/13 at 2). ``gain`` (default 0.35)
                                       scales its motion so it tolerates that (13/13 at 0-2 steps).

Robot-side participants for tests and benchmarks (each its own DDS participant): ``FakeRobot``
publishes synthetic cameras/state/instruction, ``CommandRecorder`` records what the policy node
publishes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

FAULTS = ("nan", "raise", "shape", "huge")


def tabletop_embodiment() -> Any:
    """The sim's tabletop arm (sim/spaces.py): what the doubles drive unless given another robot."""
    from sim.spaces import embodiment

    return embodiment(128)


class SlowFakePolicy:
    """Actions: ``amplitude`` of a sine per dimension, around the middle of each dimension's limits
    (of ``embodiment``: the tabletop arm's [-1, 1] by default)."""

    def __init__(self, chunk: int = 10, min_latency_s: float = 0.1, max_latency_s: float = 0.3,
                 amplitude: float = 0.8, seed: int = 0, grid: int = 8, fault_every: int = 0,
                 embodiment: Any = None):
        if chunk < 1 or not 0 <= min_latency_s <= max_latency_s:
            raise ValueError(f"need chunk >= 1 and 0 <= min_latency_s <= max_latency_s, got "
                             f"{chunk}, {min_latency_s}, {max_latency_s}")
        self.chunk, self.lo, self.hi, self.amplitude, self.grid = chunk, min_latency_s, max_latency_s, amplitude, grid
        self.rng = np.random.default_rng(seed)
        self.calls = 0
        self.step = 0
        self.fault_every = fault_every
        self.embodiment = embodiment if embodiment is not None else tabletop_embodiment()
        limits = self.embodiment.limits
        dim = self.embodiment.action_dim
        self._mid, self._half = ((limits[0] + limits[1]) / 2, (limits[1] - limits[0]) / 2) if limits else (0.0, 1.0)
        self._dims = np.arange(dim)

    def reset(self) -> None:
        self.step = 0

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        latency = float(self.rng.uniform(self.lo, self.hi))
        time.sleep(latency)
        self.calls += 1
        t = (self.step + np.arange(self.chunk))[:, None] * 0.2 + self._dims[None, :]
        actions = (self._mid + self._half * self.amplitude * np.sin(t)).astype(np.float32)
        self.step += self.chunk
        if self.fault_every and self.calls % self.fault_every == 0:
            fault = FAULTS[(self.calls // self.fault_every) % len(FAULTS)]
            if fault == "raise":
                raise RuntimeError("injected inference failure")
            actions = {"nan": actions * np.nan, "shape": actions[:, :3], "huge": actions * 1e6}[fault]
        masks = {cam: (self.rng.random((self.grid, self.grid)) > 0.5).astype(np.float32) for cam in obs["images"]}
        return {"actions": actions, "timing_ms": {"sleep": latency * 1e3}, "visual_tokens": self.grid * self.grid,
                "keep_masks": masks, "gflops": 0.0}


class SimExpertPolicy:
    """See the module docstring: privileged, in-process only."""

    def __init__(self, bridge: Any, gain: float = 0.35, **expert_kwargs: Any):
        self.bridge, self.gain = bridge, gain
        self.expert_kwargs = expert_kwargs
        self._expert = None
        self._env = None
        self._episode = None

    @property
    def embodiment(self) -> Any:
        """The robot of the bridge's env (the sim's own)."""
        from vla.runtime import env_embodiment

        with self.bridge.lock:
            return env_embodiment(self.bridge.env) if self.bridge.env is not None else tabletop_embodiment()

    def reset(self) -> None:
        self._episode = None  # re-armed on the next call, once the bridge has reset its env

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        from sim.experts import make_expert

        t0 = time.perf_counter()
        with self.bridge.lock:
            env = self.bridge.env
            if env is None:
                raise RuntimeError("the sim bridge has no env yet")
            if env is not self._env:
                self._expert, self._env = make_expert(env, **self.expert_kwargs), env
            if self._episode != self.bridge.episode_index:
                self._expert.reset()
                self._episode = self.bridge.episode_index
            action = np.array(self._expert.act(self.bridge.obs), dtype=np.float32)
        grippers = list(self.embodiment.gripper_dims)
        motion = np.ones(action.shape[0], bool)
        motion[grippers] = False
        action[motion] *= self.gain
        return {"actions": action[None], "timing_ms": {"expert": (time.perf_counter() - t0) * 1e3},
                "visual_tokens": 0, "keep_masks": {}}


def slow_fake_policy(params: Any = None, handles: dict | None = None, **options: Any) -> SlowFakePolicy:
    return SlowFakePolicy(**options)


def expert_policy(params: Any = None, handles: dict | None = None, **options: Any) -> SimExpertPolicy:
    bridge = (handles or {}).get("sim_bridge_node")
    if bridge is None:
        raise ValueError("ros_nodes.testing:expert_policy reads the sim state of an in-process sim bridge: "
                         "run it with `vla ros bringup sim=true`, not as a separate process")
    return SimExpertPolicy(bridge, **options)


# ----------------------------------------------------------------------------------------------
# Test participants: a fake robot (publishes cameras/state/instruction) and a command recorder.
# Each lives in its own rclpy Context = its own DDS participant, so what they exchange with the
# nodes under test really goes through DDS, as between processes.
# ----------------------------------------------------------------------------------------------
class Participant:
    """An rclpy Context + node + executor thread; ``close()`` tears all of it down."""

    def __init__(self, name: str, domain_id: int | None = None):
        import threading

        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{name}.spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def wait_for(self, predicate, timeout: float) -> bool:
        """Poll ``predicate`` (every 20 ms) until it holds or ``timeout`` s pass; whether it held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
        self.context.try_shutdown()


class DrivenParticipant(Participant):
    """A participant with a driver thread, like a robot's driver: ``publish_tick(stamp)`` at ``rate_hz``
    on the steady clock until ``close``. Subclasses call ``start_driver`` at the end of ``__init__``."""

    rate_hz: float = 30.0

    def start_driver(self) -> None:
        import threading

        self._stopping = threading.Event()
        self._driver = threading.Thread(target=self._drive, name=f"{self.node.get_name()}.driver", daemon=True)
        self._driver.start()

    def publish_tick(self, stamp) -> None:
        raise NotImplementedError

    def _drive(self) -> None:
        period, next_t = 1.0 / self.rate_hz, time.monotonic()
        while not self._stopping.is_set():
            self.publish_tick(self.node.get_clock().now().to_msg())
            next_t += period
            self._stopping.wait(max(0.0, next_t - time.monotonic()))

    def close(self) -> None:
        self._stopping.set()
        self._driver.join(timeout=5.0)
        super().close()


class FakeRobot(DrivenParticipant):
    """The tabletop arm's stand-in (sim/spaces.py: its cameras, an 8-D end-effector state): publishes
    synthetic camera frames, end-effector pose and gripper joints at ``rate_hz`` (on its own thread,
    like a driver), and a latched instruction. ``cameras_on`` pauses/resumes the frames."""

    def __init__(self, domain_id: int | None = None, rate_hz: float = 30.0, image_hw: tuple[int, int] = (96, 128),
                 instruction: str = "put the red cube on the blue plate", prefix: str = "/vla"):
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String

        from ros_nodes.policy_node import LATCHED

        super().__init__("fake_robot", domain_id)
        n = self.node
        self.rate_hz, self.image_hw = rate_hz, image_hw
        robot = tabletop_embodiment()
        self.gripper_joints = list(robot.state_names[6:])  # after the pose: the finger joints
        self.pub_images = {cam: n.create_publisher(Image, f"{prefix}/camera/{cam}/image_raw", qos_profile_sensor_data)
                           for cam in robot.camera_names}
        self.pub_pose = n.create_publisher(PoseStamped, f"{prefix}/ee_pose", qos_profile_sensor_data)
        self.pub_joints = n.create_publisher(JointState, f"{prefix}/joint_states", qos_profile_sensor_data)
        self.pub_instruction = n.create_publisher(String, f"{prefix}/instruction", LATCHED)
        self.pub_instruction.publish(String(data=instruction))
        self.cameras_on = True
        self.last_frame_time = 0.0  # time.monotonic() of the last published frame
        self.last_frame_stamp = 0.0  # its header stamp (ROS time, seconds)
        self.frames = 0
        self._base = np.add.outer(np.arange(image_hw[0]), np.arange(image_hw[1]))
        self._state = np.array([0.4, 0.0, 0.2, 3.1, 0.0, 0.0, 0.04, -0.04])
        self.start_driver()

    def publish_tick(self, stamp) -> None:
        from ros_nodes import conversions as conv

        if self.cameras_on:
            base = self._base
            img = (np.stack([base + self.frames, base, base], axis=-1) % 256).astype(np.uint8)
            for cam, pub in self.pub_images.items():
                pub.publish(conv.rgb_to_image(img, stamp, cam))
            self.last_frame_time = time.monotonic()
            self.last_frame_stamp = conv.stamp_seconds(stamp)
            self.frames += 1
        self.pub_pose.publish(conv.pose_from_state(self._state, stamp, "world"))
        self.pub_joints.publish(conv.joint_state(self.gripper_joints, self._state[6:8], stamp))


class JointRobot(DrivenParticipant):
    """A joint-space arm's stand-in (an SO-100, say): cameras ``cameras`` (name -> (h, w)) and a
    ``sensor_msgs/JointState`` of ``joints`` in radians at ``rate_hz``, the joints in a shuffled order
    in every message and, with ``split``, over two messages (as ALOHA's per-arm drivers publish).
    It follows the ``trajectory_msgs/JointTrajectory`` it receives (an ideal position controller),
    so the loop closes. ``drop`` (a set of joint names) leaves joints out of the messages from then
    on; ``cameras_on`` pauses the frames. Records every command it receives in ``commands``."""

    def __init__(self, joints: list[str], start: np.ndarray, domain_id: int | None = None, rate_hz: float = 30.0,
                 cameras: dict[str, tuple[int, int]] | None = None, split: bool = False,
                 instruction: str = "pick up the cube", prefix: str = "/vla", seed: int = 0):
        import threading

        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String
        from trajectory_msgs.msg import JointTrajectory

        from ros_nodes.policy_node import LATCHED

        super().__init__("joint_robot", domain_id)
        n = self.node
        self.joints, self.rate_hz, self.split = list(joints), rate_hz, split
        self.cameras = dict(cameras or {})
        self.position = np.asarray(start, dtype=np.float64).copy()  # radians, in `joints` order
        self.rng = np.random.default_rng(seed)
        self.drop: set[str] = set()
        self.cameras_on = True
        self.messages = 0  # JointState messages published
        self.commands: list[tuple[float, list[str], np.ndarray]] = []  # (receive time, names, positions)
        self._lock = threading.Lock()
        self.pub_images = {c: n.create_publisher(Image, f"{prefix}/camera/{c}/image_raw", qos_profile_sensor_data)
                           for c in self.cameras}
        self.pub_joints = n.create_publisher(JointState, f"{prefix}/joint_states", qos_profile_sensor_data)
        self.pub_instruction = n.create_publisher(String, f"{prefix}/instruction", LATCHED)
        self.pub_instruction.publish(String(data=instruction))
        n.create_subscription(JointTrajectory, f"{prefix}/cmd/joint_trajectory", self._on_command, 100)
        self._images = {c: np.add.outer(np.arange(h), np.arange(w)) for c, (h, w) in self.cameras.items()}
        self._frame = 0
        self.start_driver()

    def _on_command(self, msg) -> None:
        index = {name: i for i, name in enumerate(msg.joint_names)}
        if not msg.points or any(j not in index for j in self.joints):
            return
        target = np.array([msg.points[0].positions[index[j]] for j in self.joints], dtype=np.float64)
        with self._lock:
            self.commands.append((time.monotonic(), list(msg.joint_names), np.array(msg.points[0].positions)))
            if np.all(np.isfinite(target)):
                self.position = target

    def received(self, since: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(receive times [N], positions [N, joints] in `joints` order) of the commands since ``since``."""
        with self._lock:
            rows = [(t, names, pos) for t, names, pos in self.commands if t >= since]
        if not rows:
            return np.zeros(0), np.zeros((0, len(self.joints)))
        order = [rows[0][1].index(j) for j in self.joints]
        return np.array([t for t, _, _ in rows]), np.stack([pos[order] for _, _, pos in rows])

    def publish_tick(self, stamp) -> None:
        from ros_nodes import conversions as conv

        if self.cameras_on:
            for c, pub in self.pub_images.items():
                img = (np.stack([self._images[c] + self._frame] * 3, -1) % 256).astype(np.uint8)
                pub.publish(conv.rgb_to_image(img, stamp, c))
            self._frame += 1
        with self._lock:
            values = dict(zip(self.joints, self.position))
        names = [j for j in self.joints if j not in self.drop]
        self.rng.shuffle(names)
        parts = [names[: len(names) // 2], names[len(names) // 2:]] if self.split else [names]
        for part in parts:
            self.pub_joints.publish(conv.joint_state(part, [values[j] for j in part], stamp))
            self.messages += 1


class CommandRecorder(Participant):
    """Records delta-EEF commands (receive time, [dx dy dz drx dry drz]), gripper commands,
    diagnostics and keep-mask overlays published by the policy node."""

    def __init__(self, domain_id: int | None = None, delta_topic: str = "/vla/cmd/delta_eef",
                 gripper_topic: str = "/vla/cmd/gripper"):
        import threading

        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import TwistStamped
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float64

        super().__init__("command_recorder", domain_id)
        self._lock = threading.Lock()
        self.twists: list[tuple[float, np.ndarray]] = []
        self.stamps: list[float] = []  # header stamps of the twists (when the node published them)
        self.grippers: list[float] = []
        self.diagnostics: list[dict[str, str]] = []
        self.overlays = 0
        n = self.node
        n.create_subscription(TwistStamped, delta_topic, self._on_twist, 100)
        n.create_subscription(Float64, gripper_topic, self._on_gripper, 100)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 100)
        n.create_subscription(Image, "/policy_node/keep_mask_overlay", self._on_overlay, qos_profile_sensor_data)

    def _on_twist(self, msg) -> None:
        from ros_nodes import conversions as conv

        with self._lock:
            self.twists.append((time.monotonic(), conv.delta_eef_action(msg, 0.0)[:6].astype(np.float64)))
            self.stamps.append(conv.stamp_seconds(msg.header.stamp))

    def _on_gripper(self, msg) -> None:
        with self._lock:
            self.grippers.append(msg.data)

    def _on_diag(self, msg) -> None:
        from ros_nodes import conversions as conv

        with self._lock:
            self.diagnostics += [{"name": s.name, "message": s.message, **conv.diagnostic_values(s)} for s in msg.status]

    def _on_overlay(self, _msg) -> None:
        self.overlays += 1

    def commands(self, since: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(receive times [N], deltas [N, 6]) of the twists received at or after ``since``."""
        with self._lock:
            rows = [(t, v) for t, v in self.twists if t >= since]
        if not rows:
            return np.zeros(0), np.zeros((0, 6))
        return np.array([t for t, _ in rows]), np.stack([v for _, v in rows])

    def published(self, since_stamp: float) -> tuple[np.ndarray, np.ndarray]:
        """(header stamps [N], deltas [N, 6]) of the twists the node published at or after ``since_stamp``."""
        with self._lock:
            rows = [(st, v) for st, (_, v) in zip(self.stamps, self.twists) if st >= since_stamp]
        if not rows:
            return np.zeros(0), np.zeros((0, 6))
        return np.array([t for t, _ in rows]), np.stack([v for _, v in rows])



def isolated_domain_id() -> int:
    """A random ROS_DOMAIN_ID (1..100) for one test run, with discovery kept on this machine, so
    parallel runs on a shared host do not hear each other."""
    import os
    import random

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return random.SystemRandom().randint(1, 100)
