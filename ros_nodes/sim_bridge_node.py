"""Sim bridge node: a `sim/` env (tabletop or LIBERO, via sim.factory) behind robot-like topics.

The sim steps once per delta-EEF command, when it arrives (on its own thread: MuJoCo's GL context
belongs to the thread that made it), in arrival order, each command exactly once, then publishes
cameras + state: the command is the robot's clock, like a servo driver that acts on every message.
So the observation that follows a command always shows it, and the policy node's chunk alignment
(which counts the actions served since its request) matches what the arm executed. (Before: the
sim stepped on a 30 Hz clock of its own and took the oldest queued command; against the policy's
own 30 Hz clock that added 0 or 1 period of actuation delay depending on the phase between the two
clocks, fixed per bringup, and dropped queued commands when the sim fell behind: the new chunk then
started one or more actions off the state it was planned from, and some bringups failed episodes
that `vla eval` succeeds.) With no command for command_timeout_periods sim periods (rate_hz) the
arm holds: a step with zero delta and the last gripper command, so the world goes on if the policy
stalls. It does not step between episodes, and (wait_for_policy) starts the first one only once a
command publisher exists, so a policy node that spends a minute loading its checkpoint does not
miss the episode.

Topics (defaults; parameters in configs/ros/sim_bridge_node.yaml):
  pub /vla/camera/<cam>/image_raw  sensor_msgs/Image rgb8, sensor-data QoS (cam: agentview, wrist)
  pub /vla/ee_pose                 geometry_msgs/PoseStamped (state[0:6]; quaternion from axis-angle)
  pub /vla/joint_states            sensor_msgs/JointState (gripper fingers = state[6:8])
  pub /vla/instruction             std_msgs/String, latched (transient local), at every episode start
  pub /vla/episode_start           std_msgs/String (the instruction), once per episode
  pub /vla/episode_success         std_msgs/Bool, latched, when an episode ends (False = timed out)
  sub /vla/cmd/delta_eef           geometry_msgs/TwistStamped (through the policy node's safety filter)
  sub /vla/cmd/gripper             std_msgs/Float64
  sub /vla/reset                   std_msgs/String: start a new episode ('' = same task, else a task name)
  pub /diagnostics                 diagnostic_msgs/DiagnosticArray, 1 Hz: episode, task, failed resets

A reset that fails (unknown task name, env build error) is refused: the current task, env and
episode go on, the error is logged (rate-limited) and reported in /diagnostics (WARN, until a reset
succeeds). The sim thread dying of anything else is a node failure (``failure()``, ERROR
diagnostics; `vla ros bringup` then exits non-zero), never a silent stop of the cameras.

``env``, ``obs``, ``lock`` and ``episode_index`` are public so an in-process test double
(ros_nodes.testing.expert_policy) can read privileged sim state; nothing else depends on them.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64, String

from ros_nodes import conversions as conv
from sim.spaces import CAMERAS
from ros_nodes.health import LogLimiter, WorkerThread
from ros_nodes.nodes import CONFIG_DIR, parse_launch_value
from ros_nodes.standalone import run_standalone
from ros_nodes.params import ParamError, SimBridgeParams, declare
from ros_nodes.policy_node import LATCHED

MAX_PENDING_COMMANDS = 64  # commands queued while the sim thread is stalled (then the oldest go)


def load_env_config(env: str, overrides: str = ""):
    """An env config by name (configs/env/<name>.yaml) or path, with 'key=value' overrides."""
    from omegaconf import OmegaConf

    path = Path(env) if env.endswith((".yaml", ".yml")) else CONFIG_DIR / "env" / f"{env}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (CONFIG_DIR / "env").glob("*.yaml"))
        raise ParamError(f"sim_bridge_node: invalid parameter 'env' = {env!r}: no {path}. Env configs: {names}")
    cfg = OmegaConf.load(path)
    for item in overrides.split():
        key, _, value = item.partition("=")
        OmegaConf.update(cfg, key, parse_launch_value(value), force_add=True)
    return cfg


class SimBridgeNode(Node):
    def __init__(self, cli_args: list[str] | None = None, handles: dict[str, Any] | None = None, context=None):
        super().__init__("sim_bridge_node", cli_args=cli_args, context=context)
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering, as the vla CLI does
        import sim.factory as factory  # lazy: the policy node alone never imports a simulator

        self.p = p = declare(self, SimBridgeParams)
        self.factory = factory
        self.env_cfg = load_env_config(p.env, p.env_overrides)
        tasks = factory.task_names(self.env_cfg)
        if p.task and p.task not in tasks:
            raise ParamError(f"sim_bridge_node: invalid parameter 'task' = {p.task!r}: not in {tasks}")
        self.task = p.task or tasks[0]
        self.lock = threading.RLock()  # guards env/obs: the sim thread vs in-process test doubles
        self.env = None
        self.obs: dict | None = None
        self.instruction = ""
        self.episode_index = p.episode_index - 1
        self._reset_options: dict = {}  # of the current episode
        self.running = False
        self.steps = 0
        self.results: list[dict] = []
        self.stats = {"steps": 0, "commands_applied": 0, "hold_steps": 0, "commands_dropped": 0,
                      "commands_rejected": 0, "resets": 0, "reset_failures": 0}
        self.last_reset_error = ""  # of the newest reset request, "" once one succeeds
        self.log_limiter = LogLimiter(p.log_interval_s)
        # Commands waiting for the sim thread (it steps on each one; only a stalled sim fills this).
        self._commands: deque[np.ndarray] = deque()
        self._command_arrived = threading.Event()
        self._gripper = -1.0
        self._episode_t0 = 0.0

        self._pub_cam = {cam: self.create_publisher(Image, f"{p.camera_topic_prefix}/{cam}/image_raw",
                                                    qos_profile_sensor_data)
                         for cam in CAMERAS}
        self._pub_pose = self.create_publisher(PoseStamped, p.ee_pose_topic, qos_profile_sensor_data)
        self._pub_joints = self.create_publisher(JointState, p.joint_state_topic, qos_profile_sensor_data)
        self._pub_instruction = self.create_publisher(String, p.instruction_topic, LATCHED)
        self._pub_start = self.create_publisher(String, p.episode_start_topic, 10)
        self._pub_success = self.create_publisher(Bool, p.episode_success_topic, LATCHED)
        self._pub_diag = self.create_publisher(DiagnosticArray, p.diagnostics_topic, 10)
        inputs = ReentrantCallbackGroup()
        self.create_subscription(TwistStamped, p.delta_topic, self._on_delta, 10, callback_group=inputs)
        self.create_subscription(Float64, p.gripper_topic, self._on_gripper, 10, callback_group=inputs)
        self.create_subscription(String, p.reset_topic, self._on_reset, 10, callback_group=inputs)
        # The sim runs on its own thread at rate_hz (like a robot driver), not on an executor timer.
        self._resets: queue.Queue[str] = queue.Queue()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread = WorkerThread("sim_bridge_node.sim", target=self._sim_loop, on_failure=self._on_thread_failure)
        self._stopping = self._thread.stopping
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error
        self.create_timer(1.0, self._publish_status, callback_group=MutuallyExclusiveCallbackGroup())

    # ------------------------------------------------------------------------------- commands
    def _on_delta(self, msg: TwistStamped) -> None:
        delta = conv.delta_eef_action(msg, 0.0)[:6]
        if not np.all(np.isfinite(delta)):
            self._reject_command("non-finite delta command")
            return
        if len(self._commands) >= MAX_PENDING_COMMANDS:  # the sim thread is stuck: keep the newest
            self._commands.popleft()
            self.stats["commands_dropped"] += 1
        self._commands.append(np.clip(delta, -1.0, 1.0))
        self._command_arrived.set()

    def _on_gripper(self, msg: Float64) -> None:
        if not np.isfinite(msg.data):
            self._reject_command("non-finite gripper command")
            return
        self._gripper = float(np.clip(msg.data, -1.0, 1.0))

    def _reject_command(self, why: str) -> None:
        self.stats["commands_rejected"] += 1
        if (line := self.log_limiter.allow(f"command.{why}", f"rejecting {why}; the arm holds")) is not None:
            self.get_logger().warning(line)

    def _next_command(self) -> np.ndarray | None:
        """The oldest command not applied yet, or None."""
        try:
            return self._commands.popleft()
        except IndexError:
            return None

    # -------------------------------------------------------------------------------- episodes
    def _on_reset(self, msg: String) -> None:
        self._resets.put(msg.data.strip() or self.task)
        self._command_arrived.set()  # the sim thread takes it now, not after a command timeout

    def _sim_loop(self) -> None:
        """The only thread that touches the env: MuJoCo's EGL context belongs to its creating thread.
        An exception escaping it kills the thread: ``WorkerThread`` reports that as the node's failure."""
        try:
            with self.lock:
                self.env = self.factory.make_env(self.env_cfg, self.task, cameras=True)
        except BaseException as e:  # noqa: BLE001 - reported to the constructor
            self._startup_error = e
            self._stopping.set()  # not a failure of a running node: the constructor raises it
            return
        finally:
            self._ready.set()
        try:
            self._run()
        finally:
            with self.lock:
                if self.env is not None:
                    self.env.close()
                    self.env = None

    def _run(self) -> None:
        if self.p.start_on_launch:
            if self.p.wait_for_policy:
                self.get_logger().info(f"waiting for a command publisher on {self.p.delta_topic}")
                while not self._stopping.is_set() and self.count_publishers(self.p.delta_topic) == 0:
                    self._stopping.wait(0.1)
            self._resets.put(self.task)
        timeout = self.p.command_timeout_periods * self.p.period
        while not self._stopping.is_set():
            while not self._resets.empty():
                self._try_reset(self._resets.get_nowait())
            if not self.running:
                self._stopping.wait(self.p.period)
                continue
            # Step on the next command as soon as it arrives; a hold step after `timeout` without one.
            if not self._commands:
                self._command_arrived.clear()
                if not self._commands:  # one may have arrived before the clear
                    self._command_arrived.wait(timeout)
            if self._stopping.is_set():
                break
            if self._resets.empty():  # a reset that came in while waiting goes first
                self._step()

    def _try_reset(self, task: str) -> None:
        """A reset request from the topic: refused (logged, in diagnostics) if it fails, never fatal."""
        try:
            self._reset_episode(task)
        except Exception as e:  # noqa: BLE001 - a bad reset request must not kill the bridge
            self.stats["reset_failures"] += 1
            self.last_reset_error = f"reset to task '{task[:80]}' failed: {e}"[:1000]
            keeps = f"episode {self.episode_index} of '{self.task}' goes on" if self.running else "no episode running"
            line = self.log_limiter.allow(f"reset.{type(e).__name__}", f"{self.last_reset_error} ({keeps})")
            if line is not None:
                self.get_logger().error(line)
            self._publish_status()  # now, not at the next 1 Hz status
            return
        self.stats["resets"] += 1
        self.last_reset_error = ""

    def _reset_episode(self, task: str) -> None:
        tasks = self.factory.task_names(self.env_cfg)
        if task not in tasks:  # checked before anything changes: the current episode goes on
            self.factory.select_tasks([task], tasks)  # raises: "unknown task ... Did you mean ...? Valid tasks: ..."
        with self.lock:
            if task != self.task:
                # Build the new env first: if that fails, the old one is untouched and keeps running.
                env = self.factory.make_env(self.env_cfg, task, cameras=True)
                old, self.env, self.task = self.env, env, task
                self.running = False  # no episode of the new env until its reset() below succeeds
                old.close()
            self.episode_index += 1
            options = self.factory.reset_options(self.env_cfg, task, self.episode_index)
            self._reset_options = dict(options)  # recorded with the result: which layout / init state
            self.obs, info = self.env.reset(options=options)
            base = self.env.unwrapped
            self.instruction = str(getattr(base, "task_description", info.get("task", "")))
            self._commands.clear()
            self._gripper = -1.0
            self.steps, self.running, self._episode_t0 = 0, True, time.monotonic()
        self.get_logger().info(f"episode {self.episode_index}: task '{task}': '{self.instruction}'")
        self._pub_instruction.publish(String(data=self.instruction))
        self._pub_start.publish(String(data=self.instruction))
        self._publish_obs()

    def _step(self) -> None:
        with self.lock:
            delta = self._next_command()
            if delta is None:
                delta = np.zeros(6, dtype=np.float32)
                self.stats["hold_steps"] += 1
            else:
                self.stats["commands_applied"] += 1
            action = np.concatenate([delta, [self._gripper]]).astype(np.float32)
            self.obs, _, terminated, truncated, info = self.env.step(action)
            self.steps += 1
            self.stats["steps"] += 1
            done = bool(terminated or truncated)
            if done:
                self.running = False
                result = {"episode": self.episode_index, "task": self.task, "success": bool(info.get("is_success")),
                          "steps": self.steps, "wall_s": round(time.monotonic() - self._episode_t0, 3),
                          "reset_options": self._reset_options}
                self.results.append(result)
        self._publish_obs()
        if done:
            self._pub_success.publish(Bool(data=result["success"]))
            self.get_logger().info(f"episode {result['episode']} done: success={result['success']} "
                                   f"after {result['steps']} steps ({result['wall_s']} s)")
            if self.p.auto_reset:
                self._resets.put(self.task)

    def _publish_obs(self) -> None:
        with self.lock:
            obs = self.obs
        if obs is None:
            return
        stamp = self.get_clock().now().to_msg()
        for cam, pub in self._pub_cam.items():
            if cam in obs["pixels"]:
                pub.publish(conv.rgb_to_image(obs["pixels"][cam], stamp, cam))
        state = np.asarray(obs["agent_pos"], dtype=np.float64)
        self._pub_pose.publish(conv.pose_from_state(state, stamp, self.p.frame_id))
        self._pub_joints.publish(conv.joint_state(self.p.gripper_joint_names, state[6:8], stamp))

    # ----------------------------------------------------------------------------- health
    def failure(self) -> str | None:
        """Why the node no longer works (its sim thread died), or None."""
        return self._thread.failure

    def _on_thread_failure(self, why: str) -> None:
        self.get_logger().error(f"{why}: no more sim steps or camera frames\n{self._thread.traceback}")
        self._publish_status()

    def _publish_status(self) -> None:
        for line in self.log_limiter.flush():
            self.get_logger().info(line)
        failure = self.failure()
        values = {"task": self.task, "episode": self.episode_index, "running": self.running,
                  "episodes_done": len(self.results), **self.stats,
                  "last_reset_error": self.last_reset_error, "log_lines_suppressed": self.log_limiter.suppressed}
        if failure is not None:
            level, message = DiagnosticStatus.ERROR, failure[:200]
            values["failure"] = failure
        elif self.last_reset_error:
            level, message = DiagnosticStatus.WARN, self.last_reset_error[:200]
        else:
            level, message = DiagnosticStatus.OK, f"episode {self.episode_index} of '{self.task}'"
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [conv.diagnostic_status(f"{self.get_name()}: sim", "vla", level, message, values)]
        self._pub_diag.publish(msg)

    def destroy_node(self) -> None:
        self._thread.stop(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """`ros2 run vla sim_bridge_node --ros-args --params-file configs/ros/sim_bridge_node.yaml`."""
    run_standalone(SimBridgeNode, "sim_bridge_node", args)


if __name__ == "__main__":
    main()
