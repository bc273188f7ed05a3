"""`MetaWorldEnv`: one Meta-World (v3) task as lerobot's ``metaworld`` env sets it up, rendered small.

Like ``lerobot.envs.metaworld.MetaworldEnv``: the MT1 task with seed 42, object/goal positions
re-drawn at every reset from a seed, the ``corner2`` camera moved where lerobot puts it and flipped
upright, the instruction from lerobot's ``metaworld_config.json``. Differences: the MuJoCo renderer
is asked for ``image_size`` directly (lerobot renders 480x480 and resizes afterwards), the
episode's positions come from ``reset(options={"layout": i, "split": s})``, and a success ends
the episode without the env resetting itself.

    obs = {"pixels": {"top": uint8 [H, W, 3]},          # lerobot's feature name for this camera
           "agent_pos": float32 [4]}                    # hand position (3, m), gripper opening (1)
    action: float32 [4] in [-1, 1]: hand position delta (x 1 cm per unit and step) and the
            gripper effort (-1 open, +1 close): Meta-World's mocap control.
    info["is_success"]: Meta-World's ``info["success"]``; info["task"]: the instruction.

``env.unwrapped.embodiment`` describes the Sawyer as data; ``env.unwrapped.raw_obs`` is the full
39-D Meta-World observation the scripted experts (``metaworld.policies``) read.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from policies.embodiment import Embodiment
from sim.metaworld.tasks import get_task
from sim.offscreen import open_renderer, render

FPS = 80  # lerobot's metaworld env fps (Meta-World: frame_skip 5 x 2.5 ms)
HELDOUT_SEED_OFFSET = 1_000_000
DEFAULT_LAYOUT_RANGE = 100_000
MT1_SEED = 42  # lerobot's: metaworld.MT1(task, seed=42)
MAX_PATH_LENGTH = 500  # Meta-World refuses to step past it
INSTALL_HINT = 'the Meta-World suite needs metaworld: pip install -e ".[metaworld]"'
CAMERA = "corner2"
STATE_NAMES = ("hand_x", "hand_y", "hand_z", "gripper_opening")
ACTION_NAMES = ("dx", "dy", "dz", "gripper")


def import_metaworld():
    try:
        import metaworld
        import metaworld.policies  # noqa: F401
    except ImportError as e:
        from sim.factory import MissingExtraError

        raise MissingExtraError(f"{INSTALL_HINT} ({e})") from e
    return metaworld


def layout_seed(split: str, index: int) -> int:
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return int(index) + (HELDOUT_SEED_OFFSET if split == "heldout" else 0)


def observation_space(image_size: tuple[int, int]) -> spaces.Dict:
    h, w = image_size
    return spaces.Dict({"pixels": spaces.Dict({"top": spaces.Box(0, 255, (h, w, 3), np.uint8)}),
                        "agent_pos": spaces.Box(-np.inf, np.inf, (4,), np.float32)})


def action_space() -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (4,), np.float32)


def embodiment(image_size: tuple[int, int]) -> Embodiment:
    # action_kind "delta_eef": Meta-World's action moves the hand's mocap target *by* action[:3] x 1 cm
    # per step (SawyerXYZEnv.set_xyz_action), normalised to [-1, 1], plus a gripper effort; it is not
    # an absolute end-effector target ("eef_position"). The state starts with the hand position in m.
    return Embodiment.from_spaces(observation_space(image_size), action_space(), action_kind="delta_eef",
                                  gripper_dims=(3,), eef_position_dims=(0, 1, 2), state_names=STATE_NAMES,
                                  action_names=ACTION_NAMES, fps=FPS, name="sawyer")


class MetaWorldEnv(gym.Env):
    """One Meta-World task on seeded layouts; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(self, task: str = "reach-v3", split: str = "train", image_size: tuple[int, int] | list[int] = (128, 128),
                 cameras: bool = True, max_episode_steps: int = 400, render_mode: str | None = "rgb_array") -> None:
        metaworld = import_metaworld()
        self.spec_task = get_task(task)
        self.task_name = self.spec_task.name
        # lerobot's vector-env eval reads the instruction from these two attributes.
        self.task = self.task_description = self.spec_task.instruction
        layout_seed(split, 0)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        if not 1 <= max_episode_steps <= MAX_PATH_LENGTH:
            raise ValueError(f"max_episode_steps must be in [1, {MAX_PATH_LENGTH}] (Meta-World's limit), got {max_episode_steps}")
        self.split, self.cameras, self.render_mode = split, cameras, render_mode
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.max_episode_steps = int(max_episode_steps)
        mt1 = metaworld.MT1(self.task_name, seed=MT1_SEED)
        h, w = self.image_size
        # No gymnasium renderer: this env renders the camera itself (below), at image_size.
        env = mt1.train_classes[self.task_name](render_mode=None, camera_name=CAMERA, width=w, height=h)
        env.set_task(mt1.train_tasks[0])
        env.model.cam_pos[env.model.camera(CAMERA).id] = [0.75, 0.075, 0.7]  # where lerobot puts it
        env._freeze_rand_vec = False  # new object / goal positions at every reset ...
        env.seeded_rand_vec = True  # ... drawn from env.np_random, which reset() seeds
        self._env = env
        self.observation_space = observation_space(self.image_size)
        self.action_space = action_space()
        self.embodiment = embodiment(self.image_size)
        self._renderer = None
        self.raw_obs: np.ndarray | None = None
        self.layout_index: int | None = None
        self._elapsed = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        split = options.pop("split", self.split)
        index = options.pop("layout", None)
        if index is None:
            index = seed % HELDOUT_SEED_OFFSET if seed is not None else int(self.np_random.integers(DEFAULT_LAYOUT_RANGE))
        self.layout_index = int(index)
        self._env.seed(layout_seed(split, self.layout_index))
        raw, _ = self._env.reset()
        self.raw_obs = np.asarray(raw, np.float64)
        self._elapsed = 0
        return self._observation(), self._info(False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        act = np.asarray(action, dtype=np.float32)
        if act.shape != (4,):
            raise ValueError(f"action must have shape (4,), got {act.shape}")
        if not np.all(np.isfinite(act)):
            raise ValueError(f"action contains NaN or Inf: {act.tolist()}")
        if self.raw_obs is None:
            raise RuntimeError("call reset() before step()")
        act = np.clip(act, -1.0, 1.0)
        raw, reward, _, mw_truncated, info = self._env.step(act)
        self.raw_obs = np.asarray(raw, np.float64)
        self._elapsed += 1
        success = bool(info.get("success", 0))
        truncated = not success and (bool(mw_truncated) or self._elapsed >= self.max_episode_steps)
        return self._observation(), float(reward), success, truncated, self._info(success)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self._render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer_finalizer()
            self._renderer = None
        self._env.close()

    def _render(self) -> np.ndarray:
        if self._renderer is None:
            self._renderer, self._renderer_finalizer = open_renderer(self, self._env.model, *self.image_size)
        # corner2 renders upside down and mirrored (lerobot flips both axes too).
        return np.ascontiguousarray(np.flip(render(self._renderer, self._env.data, CAMERA), (0, 1)))

    def _observation(self) -> dict:
        top = self._render() if self.cameras else np.zeros((*self.image_size, 3), np.uint8)
        return {"pixels": {"top": top}, "agent_pos": self.raw_obs[:4].astype(np.float32)}

    def _info(self, success: bool) -> dict:
        return {"is_success": bool(success), "task": self.task, "layout": self.layout_index}
