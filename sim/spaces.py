"""The robot of the tabletop and LIBERO suites (a 7-DoF arm + parallel gripper, delta-EEF control).

Its :class:`policies.embodiment.Embodiment` (``embodiment(image_size)``) is what the rest of the stack
reads; these constants belong to this robot definition only. Other suites define their own robots
(e.g. ALOHA's 14 joints, Meta-World's 4-D Sawyer). Both suites here speak this format, which is also
lerobot's env format (``lerobot.envs.utils.preprocess_observation`` maps it to ``observation.images.<cam>`` and
``observation.state``):

    obs = {
        "pixels": {"agentview": uint8 [H, W, 3], "wrist": uint8 [H, W, 3]},   # upright RGB
        "agent_pos": float32 [8],   # eef position (3, m, world frame), eef orientation as
                                    # axis-angle (3, rad), gripper finger positions (2, m)
    }
    action: float32 [7] in [-1, 1]: delta eef position (3), delta eef rotation axis-angle (3),
            gripper (-1 = open, +1 = close)  -- LIBERO/robosuite OSC_POSE convention.

    info["is_success"]: bool, info["task"]: the instruction string (also ``env.unwrapped.task``
    and ``env.unwrapped.task_description``, which lerobot's vector-env eval reads).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from policies.embodiment import Embodiment

CAMERAS: tuple[str, ...] = ("agentview", "wrist")
STATE_DIM = 8
ACTION_DIM = 7

# LeRobot dataset feature keys (batch keys are shared constants, never string literals elsewhere).
OBS_IMAGE_KEYS: dict[str, str] = {cam: f"observation.images.{cam}" for cam in CAMERAS}
OBS_STATE_KEY = "observation.state"
ACTION_KEY = "action"


STATE_NAMES = ("eef_x", "eef_y", "eef_z", "eef_rx", "eef_ry", "eef_rz", "finger_left", "finger_right")
ACTION_NAMES = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")


def embodiment(image_size: tuple[int, int] | int, fps: float | None = None, name: str = "eef_arm") -> Embodiment:
    """The arm as data: 2 cameras, state 8 (eef position in m first: the keypose loss reads it),
    action 7 delta-EEF in [-1, 1] with the gripper last."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    return Embodiment.from_spaces(observation_space((h, w)), action_space(), action_kind="delta_eef",
                                  gripper_dims=(ACTION_DIM - 1,), eef_position_dims=(0, 1, 2),
                                  state_names=STATE_NAMES, action_names=ACTION_NAMES, fps=fps, name=name)


def observation_space(image_size: tuple[int, int]) -> spaces.Dict:
    h, w = image_size
    return spaces.Dict(
        {
            "pixels": spaces.Dict(
                {cam: spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8) for cam in CAMERAS}
            ),
            "agent_pos": spaces.Box(-np.inf, np.inf, shape=(STATE_DIM,), dtype=np.float32),
        }
    )


def action_space() -> spaces.Box:
    return spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)


def validate_action(action, space: spaces.Box | None = None) -> np.ndarray:
    """Return the action as float32 [7]; raise ValueError (before touching the sim) if it is bad."""
    arr = np.asarray(action, dtype=np.float32)
    if arr.shape != (ACTION_DIM,):
        raise ValueError(f"action must have shape ({ACTION_DIM},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"action contains NaN or Inf: {arr.tolist()}")
    # Out-of-range values are clipped (the documented Box bounds), not an error: policies overshoot.
    return np.clip(arr, -1.0, 1.0)
