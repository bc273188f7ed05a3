"""Scripted ALOHA demos the way the ACT authors made theirs: end-effector waypoints, replayed as joints.

For each episode (at ``reset()``, after the joint env's reset):

1. the mocap (end-effector) twin of the scene (gym-aloha's ``TransferCubeEndEffectorTask`` /
   ``InsertionEndEffectorTask`` + ``assets/bimanual_viperx_end_effector_*.xml``) is reset to the
   same object poses as the joint env;
2. a fixed waypoint schedule per arm (gripper pose + opening at given control steps, linearly
   interpolated; positions relative to the objects) drives the mocap bodies, which pull the arms
   through the weld constraints, for ``EPISODE_STEPS`` control steps;
3. the arms' joint angles after every step are recorded, with each gripper's *commanded* opening in
   place of its measured one (as ACT's record_sim_episodes.py does);
4. ``act()`` then replays that joint trajectory as absolute joint-position actions in the normal,
   joint-controlled env. The expert's success is whatever the replay achieves there.

The schedules follow ACT's scripted_policy.py (the transfer-cube and insertion policies): the right
gripper pitched 60 degrees to pick, a hand-over / meeting point in front of the robot, the same
timings. ``noise`` (m) adds uniform noise of that half-width to every waypoint position per step,
as ACT's ``inject_noise`` does (0.01 there); ``seed`` seeds it (and ``reset(seed=...)`` reseeds).

PRIVILEGED: reads the objects' initial poses from ``env.unwrapped.initial_object_poses``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.aloha.env import AlohaEnv, import_gym_aloha

WELD_SOLIMP = (0.9, 0.95, 0.001, 0.5, 2.0)  # dmin, dmax, width, midpoint, power
EPISODE_STEPS = 400  # ACT's episode length for both scripted tasks (50 Hz: 8 s)


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of two (w, x, y, z) quaternions."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _axis_quat(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    half = np.deg2rad(degrees) / 2
    return np.concatenate([[np.cos(half)], np.sin(half) * np.asarray(axis, np.float64)])


def _wp(t: int, xyz: Any, quat: Any, gripper: float) -> dict:
    return {"t": t, "xyz": np.asarray(xyz, np.float64), "quat": np.asarray(quat, np.float64), "gripper": float(gripper)}


def transfer_cube_waypoints(objects: np.ndarray, left0: np.ndarray, right0: np.ndarray) -> tuple[list, list]:
    """Right arm picks the cube and brings it to the meeting point; left arm takes it over."""
    box = objects[:3]
    pick = _quat_mul(right0[3:], _axis_quat((0, 1, 0), -60))
    meet_left = _axis_quat((1, 0, 0), 90)
    meet = np.array([0.0, 0.5, 0.25])
    left = [
        _wp(0, left0[:3], left0[3:], 0),                               # sleep
        _wp(100, meet + [-0.1, 0, -0.02], meet_left, 1),                # approach the meeting point
        _wp(260, meet + [0.02, 0, -0.02], meet_left, 1),                # move to it
        _wp(310, meet + [0.02, 0, -0.02], meet_left, 0),                # close the gripper
        _wp(360, meet + [-0.1, 0, -0.02], [1, 0, 0, 0], 0),             # move left
        _wp(400, meet + [-0.1, 0, -0.02], [1, 0, 0, 0], 0),             # stay
    ]
    right = [
        _wp(0, right0[:3], right0[3:], 0),                             # sleep
        _wp(90, box + [0, 0, 0.08], pick, 1),                           # above the cube
        _wp(130, box + [0, 0, -0.015], pick, 1),                        # go down
        _wp(170, box + [0, 0, -0.015], pick, 0),                        # close the gripper
        _wp(200, meet + [0.05, 0, 0], pick, 0),                         # approach the meeting point
        _wp(220, meet, pick, 0),                                        # move to it
        _wp(310, meet, pick, 1),                                        # open the gripper
        _wp(360, meet + [0.1, 0, 0], pick, 1),                          # move right
        _wp(400, meet + [0.1, 0, 0], pick, 1),                          # stay
    ]
    return left, right


def insertion_waypoints(objects: np.ndarray, left0: np.ndarray, right0: np.ndarray) -> tuple[list, list]:
    """Right arm picks the peg, left arm the socket; both meet in front and the peg goes in."""
    peg, socket = objects[:3], objects[7:10]
    pick_right = _quat_mul(right0[3:], _axis_quat((0, 1, 0), -60))
    pick_left = _quat_mul(right0[3:], _axis_quat((0, 1, 0), 60))
    meet = np.array([0.0, 0.5, 0.15])
    lift_right = 0.00715
    left = [
        _wp(0, left0[:3], left0[3:], 0),                               # sleep
        _wp(120, socket + [0, 0, 0.08], pick_left, 1),                  # above the socket
        _wp(170, socket + [0, 0, -0.03], pick_left, 1),                 # go down
        _wp(220, socket + [0, 0, -0.03], pick_left, 0),                 # close the gripper
        _wp(285, meet + [-0.1, 0, 0], pick_left, 0),                    # approach the meeting point
        _wp(340, meet + [-0.05, 0, 0], pick_left, 0),                   # insertion
        _wp(400, meet + [-0.05, 0, 0], pick_left, 0),                   # hold
    ]
    right = [
        _wp(0, right0[:3], right0[3:], 0),                             # sleep
        _wp(120, peg + [0, 0, 0.08], pick_right, 1),                    # above the peg
        _wp(170, peg + [0, 0, -0.03], pick_right, 1),                   # go down
        _wp(220, peg + [0, 0, -0.03], pick_right, 0),                   # close the gripper
        _wp(285, meet + [0.1, 0, lift_right], pick_right, 0),           # approach the meeting point
        _wp(340, meet + [0.05, 0, lift_right], pick_right, 0),          # insertion
        _wp(400, meet + [0.05, 0, lift_right], pick_right, 0),          # hold
    ]
    return left, right


WAYPOINTS = {"transfer_cube": transfer_cube_waypoints, "insertion": insertion_waypoints}


def interpolate(waypoints: list[dict], t: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Pose and gripper opening at step ``t``: linear between the surrounding waypoints (ACT's rule,
    quaternions interpolated component-wise as there; the mocap normalises them)."""
    for cur, nxt in zip(waypoints, waypoints[1:]):
        if cur["t"] <= t < nxt["t"]:
            s = (t - cur["t"]) / (nxt["t"] - cur["t"])
            return (cur["xyz"] + (nxt["xyz"] - cur["xyz"]) * s, cur["quat"] + (nxt["quat"] - cur["quat"]) * s,
                    cur["gripper"] + (nxt["gripper"] - cur["gripper"]) * s)
    last = waypoints[-1]
    return last["xyz"], last["quat"], last["gripper"]


class _EndEffectorScene:
    """The mocap twin of one ALOHA task, physics only (no rendering), reset to given object poses."""

    def __init__(self, task: str) -> None:
        constants, _, sim_ee, _ = import_gym_aloha()
        from dm_control import mujoco as dm_mujoco
        from dm_control.rl import control

        from sim.aloha.env import get_task

        base = sim_ee.TransferCubeEndEffectorTask if task == "transfer_cube" else sim_ee.InsertionEndEffectorTask
        scene = self

        class Task(base):
            def initialize_episode(self, physics):  # the given poses, not gym-aloha's random ones
                self.initialize_robots(physics)
                n = len(scene.object_poses)
                physics.data.qpos[16:16 + n] = scene.object_poses
                super(base, self).initialize_episode(physics)

            def get_observation(self, physics):
                return {
                    "qpos": self.get_qpos(physics),
                    "mocap_pose_left": np.concatenate([physics.data.mocap_pos[0], physics.data.mocap_quat[0]]),
                    "mocap_pose_right": np.concatenate([physics.data.mocap_pos[1], physics.data.mocap_quat[1]]),
                    "gripper_ctrl": physics.data.ctrl.copy(),
                }

        self.constants = constants
        self.object_poses = np.zeros(0)
        physics = dm_mujoco.Physics.from_xml_path(str(constants.ASSETS_DIR / get_task(task).ee_xml))
        # The welds that pull each gripper to its mocap body, made stiff. The XML's solimp (0.25 0.25)
        # is so soft under the MuJoCo here (3.x; ACT pinned 2.3.7) that the grippers trail their
        # waypoints by centimetres and most grasps miss: 4/10 transfer-cube layouts in the mocap
        # scene with the XML's weld, 10/10 with this one (measured).
        physics.model.eq_solimp[:] = WELD_SOLIMP
        self.env = control.Environment(physics, Task(), time_limit=float("inf"), control_timestep=constants.DT,
                                       n_sub_steps=None, flat_observation=False)

    def joint_trajectory(self, object_poses: np.ndarray, waypoints_fn: Any, steps: int,
                         noise: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """[steps, 14] joint targets: the arms' joints after each mocap step, commanded gripper openings."""
        self.object_poses = np.asarray(object_poses, np.float64)
        ts = self.env.reset()
        left, right = waypoints_fn(self.object_poses, ts.observation["mocap_pose_left"],
                                   ts.observation["mocap_pose_right"])
        normalise = self.constants.normalize_puppet_gripper_position
        out = np.empty((steps, 14), np.float64)
        for t in range(steps):
            action = []
            for waypoints in (left, right):
                xyz, quat, grip = interpolate(waypoints, t)
                if noise:
                    xyz = xyz + rng.uniform(-noise, noise, 3)
                action += [*xyz, *quat, grip]
            ts = self.env.step(np.asarray(action))
            joints = np.array(ts.observation["qpos"], np.float64)
            ctrl = ts.observation["gripper_ctrl"]
            joints[6], joints[13] = normalise(ctrl[0]), normalise(ctrl[2])
            out[t] = joints
        return out


class AlohaExpert:
    """See the module docstring. ``act`` returns float32 [14] joint targets."""

    def __init__(self, env: AlohaEnv, noise: float = 0.0, seed: int = 0, steps: int = EPISODE_STEPS) -> None:
        self.env = env
        self.noise = float(noise)
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0 (m), got {noise}")
        self.steps = int(steps)
        self.rng = np.random.default_rng(seed)
        self._scene = _EndEffectorScene(env.task_name)
        self.trajectory: np.ndarray | None = None
        self.t = 0

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        poses = self.env.initial_object_poses
        if poses is None:
            raise RuntimeError("reset the env before the expert")
        traj = self._scene.joint_trajectory(poses, WAYPOINTS[self.env.task_name], self.steps, self.noise, self.rng)
        low, high = self.env.action_space.low, self.env.action_space.high
        self.trajectory = np.clip(traj, low, high).astype(np.float32)
        self.t = 0

    def act(self, obs: Any = None) -> np.ndarray:
        if self.trajectory is None:
            raise RuntimeError("call reset() after env.reset() before act()")
        action = self.trajectory[min(self.t, len(self.trajectory) - 1)]
        self.t += 1
        return action.copy()
