"""`AlohaEnv`: lerobot's ALOHA sim (gym-aloha) as a `vla` suite env, rendered at a small size.

The bimanual ViperX scene of gym-aloha (two 6-joint arms with parallel grippers, one ``top``
camera), built with dm_control the way ``gym_aloha/env.py`` builds it, with two differences:
the camera is rendered only at the configured ``image_size`` (gym-aloha's tasks render three
480x640 cameras on every step, the main cost on a CPU), and the object poses come from this env's
own seeded layouts (``reset(options={"layout": i, "split": s})``) instead of gym-aloha's global.

    obs = {"pixels": {"top": uint8 [H, W, 3]},
           "agent_pos": float32 [14]}   # per arm: 6 joint angles (rad), gripper opening (0 closed, 1 open)
    action: float32 [14] absolute joint targets in the same layout (gym-aloha's convention),
            bounded by the arms' joint ranges from the scene XML and [0, 1] for the grippers.
    info["is_success"]: gym-aloha's reward reached its maximum (4): the cube is held by the left
            gripper off the table (transfer_cube) / the peg touches the pin inside the socket (insertion).

``env.unwrapped.embodiment`` describes this robot as data (14-D ``joint_position`` action).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from policies.embodiment import Embodiment
from sim.offscreen import open_renderer, render

FPS = 50  # gym-aloha's control rate (DT = 0.02 s)
HELDOUT_SEED_OFFSET = 1_000_000  # heldout layout i = seed 1_000_000 + i (train layout i = seed i)
DEFAULT_LAYOUT_RANGE = 100_000
INSTALL_HINT = 'the ALOHA suites need gym-aloha (and dm_control): pip install -e ".[aloha]"'
ARMS = ("left", "right")
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
# agent_pos / action layout (gym-aloha's JOINTS): left arm 6 + gripper, right arm 6 + gripper.
JOINT_NAMES = tuple(f"{arm}_{j}" for arm in ARMS for j in (*ARM_JOINTS, "gripper"))
GRIPPER_DIMS = (6, 13)


@dataclass(frozen=True)
class AlohaTask:
    name: str
    instruction: str
    xml: str  # joint-controlled scene (gym_aloha/assets)
    ee_xml: str  # its mocap (end-effector) twin, for the scripted demo generator


# Instructions as in lerobot's ALOHA sim datasets (lerobot/aloha_sim_*).
TASKS: dict[str, AlohaTask] = {
    "transfer_cube": AlohaTask(
        "transfer_cube", "Pick up the cube with the right arm and transfer it to the left arm.",
        "bimanual_viperx_transfer_cube.xml", "bimanual_viperx_end_effector_transfer_cube.xml"),
    "insertion": AlohaTask(
        "insertion", "Insert the peg into the socket.",
        "bimanual_viperx_insertion.xml", "bimanual_viperx_end_effector_insertion.xml"),
}


def import_gym_aloha():
    """gym-aloha's modules (constants, tasks, utils), or an ImportError naming the extra to install."""
    try:
        import dm_control.mujoco  # noqa: F401
        from gym_aloha import constants, utils
        from gym_aloha.tasks import sim, sim_end_effector
    except ImportError as e:
        from sim.factory import MissingExtraError

        raise MissingExtraError(f"{INSTALL_HINT} ({e})") from e
    return constants, sim, sim_end_effector, utils


def get_task(name: str) -> AlohaTask:
    if name not in TASKS:
        raise ValueError(f"unknown ALOHA task '{name}'. Valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def layout_seed(split: str, index: int) -> int:
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return int(index) + (HELDOUT_SEED_OFFSET if split == "heldout" else 0)


def sample_object_poses(task: str, seed: int) -> np.ndarray:
    """The objects' free-joint poses (7 per object: xyz + wxyz) of a layout, gym-aloha's ranges."""
    _, _, _, utils = import_gym_aloha()
    if task == "transfer_cube":
        return np.asarray(utils.sample_box_pose(seed), np.float64)
    return np.concatenate(utils.sample_insertion_pose(seed)).astype(np.float64)


def joint_limits(physics: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per action dim: the arm joints' ranges from the scene XML, [0, 1] for the grippers (their
    normalised opening, which gym-aloha maps onto the finger actuators' range)."""
    low, high = np.zeros(14), np.ones(14)
    for a, arm in enumerate(ARMS):
        for j, joint in enumerate(ARM_JOINTS):
            lo, hi = physics.named.model.jnt_range[f"vx300s_{arm}/{joint}"]
            low[7 * a + j], high[7 * a + j] = lo, hi
    return low, high


def embodiment_for(image_size: tuple[int, int], low: np.ndarray, high: np.ndarray) -> Embodiment:
    h, w = image_size
    obs_space = spaces.Dict({"pixels": spaces.Dict({"top": spaces.Box(0, 255, (h, w, 3), np.uint8)}),
                             "agent_pos": spaces.Box(-np.inf, np.inf, (14,), np.float32)})
    act_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
    return Embodiment.from_spaces(obs_space, act_space, action_kind="joint_position", gripper_dims=GRIPPER_DIMS,
                                  state_names=JOINT_NAMES, action_names=JOINT_NAMES, fps=FPS, name="aloha")


def scene_embodiment(task: str, image_size: tuple[int, int]) -> Embodiment:
    """A task's robot without building its env: the joint limits read from the scene XML."""
    constants, _, _, _ = import_gym_aloha()
    from dm_control import mujoco as dm_mujoco

    physics = dm_mujoco.Physics.from_xml_path(str(constants.ASSETS_DIR / get_task(task).xml))
    return embodiment_for(image_size, *joint_limits(physics))


def _joint_task_class(task: str):
    """gym-aloha's joint-controlled task, minus its 3x480x640 rendering in every observation."""
    _, sim, _, _ = import_gym_aloha()
    base = sim.TransferCubeTask if task == "transfer_cube" else sim.InsertionTask

    class Task(base):
        def get_observation(self, physics):  # qpos only; the env renders its one camera itself
            return {"qpos": self.get_qpos(physics), "env_state": self.get_env_state(physics)}

    return Task


class AlohaEnv(gym.Env):
    """One ALOHA task on seeded layouts; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(self, task: str = "transfer_cube", split: str = "train",
                 image_size: tuple[int, int] | list[int] = (120, 160), cameras: bool = True,
                 max_episode_steps: int = 400, render_mode: str | None = "rgb_array") -> None:
        constants, sim, _, _ = import_gym_aloha()
        from dm_control import mujoco as dm_mujoco
        from dm_control.rl import control

        self.spec_task = get_task(task)
        self.task_name = task
        # lerobot's vector-env eval reads the instruction from these two attributes.
        self.task = self.task_description = self.spec_task.instruction
        layout_seed(split, 0)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.split, self.cameras, self.render_mode = split, cameras, render_mode
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.max_episode_steps = int(max_episode_steps)
        self._sim = sim
        physics = dm_mujoco.Physics.from_xml_path(str(constants.ASSETS_DIR / self.spec_task.xml))
        self._env = control.Environment(physics, _joint_task_class(task)(), time_limit=float("inf"),
                                        control_timestep=constants.DT, n_sub_steps=None, flat_observation=False)
        self.physics = physics
        low, high = joint_limits(physics)
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        h, w = self.image_size
        self.observation_space = spaces.Dict({
            "pixels": spaces.Dict({"top": spaces.Box(0, 255, (h, w, 3), np.uint8)}),
            "agent_pos": spaces.Box(-np.inf, np.inf, (14,), np.float32),
        })
        self.embodiment = embodiment_for(self.image_size, low, high)
        self._renderer = None
        self.layout_index: int | None = None
        self.initial_object_poses: np.ndarray | None = None
        self._elapsed = 0
        self._started = False

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        split = options.pop("split", self.split)
        index = options.pop("layout", None)
        if index is None:  # layout = seed: seeded evaluators get known layouts
            index = seed % HELDOUT_SEED_OFFSET if seed is not None else int(self.np_random.integers(DEFAULT_LAYOUT_RANGE))
        self.layout_index = int(index)
        poses = sample_object_poses(self.task_name, layout_seed(split, self.layout_index))
        self._sim.BOX_POSE[0] = poses  # gym-aloha's tasks read the object poses from this global
        ts = self._env.reset()
        self.initial_object_poses = np.asarray(ts.observation["env_state"], np.float64).copy()
        self._elapsed, self._started = 0, True
        return self._observation(ts.observation["qpos"]), self._info(False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        act = np.asarray(action, dtype=np.float32)
        if act.shape != (14,):
            raise ValueError(f"action must have shape (14,), got {act.shape}")
        if not np.all(np.isfinite(act)):
            raise ValueError(f"action contains NaN or Inf: {act.tolist()}")
        if not self._started:
            raise RuntimeError("call reset() before step() (and after an episode ended in a physics error)")
        act = np.clip(act, self.action_space.low, self.action_space.high)  # the joints' limits
        from dm_control.rl.control import PhysicsError

        try:
            ts = self._env.step(act.astype(np.float64))
        except PhysicsError as e:
            # Joint targets that jump across the range every step (random actions, a diverging policy)
            # can make MuJoCo's solver blow up (mjWARN_BADQACC). The episode ends there as a failure
            # (truncated, info["physics_error"]); the next reset() starts a clean one.
            self._started = False
            info = {**self._info(False), "physics_error": str(e).splitlines()[0]}
            return self._last_obs, 0.0, False, True, info
        self._elapsed += 1
        reward = float(ts.reward or 0.0)
        success = reward >= self._env.task.max_reward
        truncated = not success and self._elapsed >= self.max_episode_steps
        return self._observation(ts.observation["qpos"]), reward, success, truncated, self._info(success)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self._render_top()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer_finalizer()
            self._renderer = None

    # ------------------------------------------------------------------ helpers
    def _observation(self, qpos: np.ndarray) -> dict:
        if self.cameras:
            top = self._render_top()
        else:  # same space, no rendering cost: a blank frame
            top = np.zeros((*self.image_size, 3), dtype=np.uint8)
        self._last_obs = {"pixels": {"top": top}, "agent_pos": np.asarray(qpos, dtype=np.float32)}
        return self._last_obs

    def _render_top(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer, self._renderer_finalizer = open_renderer(self, self.physics.model.ptr, *self.image_size)
        return render(self._renderer, self.physics.data.ptr, "top")

    def _info(self, success: bool) -> dict:
        return {"is_success": bool(success), "task": self.task, "layout": self.layout_index}
