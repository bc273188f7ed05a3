"""Scripted waypoint expert for the tabletop suite, driven by privileged sim state.

Pick-and-place families (place / stack / bowl):
    above object -> descend -> close -> lift -> above target -> lower -> open -> retreat
Push family:
    above the start point beside the cube (opposite the push direction) -> lower with the jaw
    closed -> push through the cube along y -> lift away
Targets are recomputed every step from the current state (closed loop), the jaw yaw follows the
cube yaw, and ``noise`` adds Gaussian noise to the motion (fading out near each waypoint) for
more diverse demonstrations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.tabletop import scene
from sim.tabletop.env import POS_SCALE, ROT_SCALE, TabletopEnv

CARRY_HEIGHT = 0.12  # tool-centre height for moves between objects
HOVER = 0.07  # height above the grasp point before descending
GRASP_DEPTH = 0.002  # tool centre slightly below the cube centre for a deep grasp
DROP_CLEARANCE = 0.012  # release the cube this far above where it will rest
POS_TOL = 0.006
JAW_STEPS = 6  # control steps to let the fingers close or open
PHASE_LIMIT = 60  # steps before a stuck phase gives up and moves on
PUSHER_HALF = 0.012  # half the closed jaw's thickness along the push direction (two 6 mm fingers)
PUSH_HEIGHT = 0.016  # tool-centre height while pushing: below the cube centre, above the table
NOISE_FADE = 0.05  # motion noise scales with distance to the waypoint, full beyond this (m)


@dataclass
class _Phase:
    name: str
    jaw: float  # -1 open, +1 closed
    tol: float = POS_TOL  # reach tolerance (m) that ends the phase; 0 = time-based only
    wait: int = 0  # minimum steps in the phase
    noisy: bool = False  # free-space moves get the expert's motion noise; contact phases never do


class TabletopExpert:
    """Scripted expert for one `TabletopEnv` (pass ``env.unwrapped``); call `reset` each episode."""

    def __init__(self, env: TabletopEnv, noise: float = 0.0, seed: int | None = None, max_speed: float = 1.0) -> None:
        if not isinstance(env, TabletopEnv):
            raise TypeError(f"TabletopExpert needs a TabletopEnv (env.unwrapped), got {type(env).__name__}")
        if not 0.0 < max_speed <= 1.0:
            raise ValueError(f"TabletopExpert: max_speed must be in (0, 1] (action units), got {max_speed}")
        self.env = env
        self.noise = noise
        self.seed = seed
        # Below 1, translation saturates earlier: slower, smoother demos with more frames per
        # episode and less travel per open-loop action chunk, which are easier to imitate.
        self.max_speed = float(max_speed)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """New episode. ``seed`` (the episode's seed, e.g. from `vla collect`) restarts the motion
        noise so an episode's demo does not depend on which episodes the same expert ran before."""
        if seed is not None:
            self.rng = np.random.default_rng([0 if self.seed is None else self.seed, seed])
        self._phase = 0
        self._steps_in_phase = 0
        self._grasp_offset = np.zeros(3)  # cube centre minus tool centre, measured when grasped
        self.intended_action: np.ndarray | None = None  # the last act() without its motion noise
        self._phases = _PUSH if self.env.task_spec.family == "push" else _PICK_PLACE

    def act(self, obs: dict | None = None) -> np.ndarray:
        """Next action from the sim state (`obs` is accepted for the common expert protocol)."""
        phase = self._phases[self._phase]
        err = self._target(phase.name) - self.env.tcp_pos()
        reached = self._steps_in_phase >= phase.wait and (phase.tol == 0 or np.linalg.norm(err) < phase.tol)
        if self._phase < len(self._phases) - 1 and (reached or self._steps_in_phase >= PHASE_LIMIT):
            self._on_phase_end(phase.name)
            self._phase += 1
            self._steps_in_phase = 0
            phase = self._phases[self._phase]
            err = self._target(phase.name) - self.env.tcp_pos()
        self._steps_in_phase += 1
        action = np.zeros(7, dtype=np.float32)
        move = err / POS_SCALE
        if phase.name in _ALIGNING:
            action[5] = np.clip(self._yaw_error() / ROT_SCALE, -1.0, 1.0)
        action[6] = phase.jaw
        self.intended_action = action.copy()
        self.intended_action[:3] = np.clip(move, -self.max_speed, self.max_speed)
        if self.noise > 0 and phase.noisy:  # fades out near the waypoint so grasps stay precise
            move = move + self.rng.normal(0.0, self.noise, 3) * min(1.0, float(np.linalg.norm(err)) / NOISE_FADE)
        action[:3] = np.clip(move, -self.max_speed, self.max_speed)
        return action

    # ------------------------------------------------------------------ targets
    def _target(self, phase: str) -> np.ndarray:
        env, spec = self.env, self.env.task_spec
        obj = env.object_pos(spec.obj)
        tcp = env.tcp_pos()
        if phase == "above_object":
            return np.array([obj[0], obj[1], obj[2] + HOVER])
        if phase in ("descend", "close"):
            return np.array([obj[0], obj[1], obj[2] - GRASP_DEPTH])
        if phase == "lift":
            return np.array([tcp[0], tcp[1], CARRY_HEIGHT])
        if phase in ("above_target", "lower", "open"):
            goal = self._place_point()
            if phase == "above_target":
                goal[2] = max(goal[2] + 0.04, CARRY_HEIGHT)
            return goal - self._grasp_offset if phase != "open" else tcp
        if phase == "retreat":
            return np.array([tcp[0], tcp[1], CARRY_HEIGHT])
        return self._push_target(phase, obj, tcp)

    def _place_point(self) -> np.ndarray:
        """Where the grasped cube's centre should be at release."""
        spec, env = self.env.task_spec, self.env
        goal = env.object_pos(spec.target)
        if spec.family == "place":
            z = 2 * scene.PLATE_HALF_HEIGHT + scene.CUBE_HALF
        elif spec.family == "stack":
            z = goal[2] + 2 * scene.CUBE_HALF
        else:  # bowl
            z = scene.BOWL_BOTTOM + scene.CUBE_HALF
        return np.array([goal[0], goal[1], z + DROP_CLEARANCE])

    def _push_target(self, phase: str, obj: np.ndarray, tcp: np.ndarray) -> np.ndarray:
        spec, env = self.env.task_spec, self.env
        direction = -1.0 if spec.target == "left" else 1.0
        start = env.start_pos(spec.obj)
        # The closed jaw is the pusher: it starts 1.3 cm clear of the cube's side and stops when the
        # cube is 1 cm past the required distance.
        behind = obj[1] - direction * (scene.CUBE_HALF + PUSHER_HALF + 0.013)
        if phase == "above_start":
            return np.array([obj[0], behind, CARRY_HEIGHT])
        if phase == "lower_start":
            return np.array([obj[0], behind, PUSH_HEIGHT])
        if phase == "push":
            goal_y = start[1] + direction * (scene.PUSH_DISTANCE + 0.01 - scene.CUBE_HALF - PUSHER_HALF)
            # Track the cube's x so the pusher stays on its centre line and does not spin it away.
            return np.array([obj[0], goal_y, PUSH_HEIGHT])
        if phase == "back_off":
            return np.array([tcp[0], tcp[1] - direction * 0.03, PUSH_HEIGHT])
        return np.array([tcp[0], tcp[1], CARRY_HEIGHT])  # lift_away

    def _yaw_error(self) -> float:
        """Jaw yaw error to the object's nearest face-aligned yaw (cubes are 4-fold symmetric)."""
        q = self.env.object_quat(self.env.task_spec.obj)
        cube_yaw = np.arctan2(2 * (q[0] * q[3] + q[1] * q[2]), 1 - 2 * (q[2] ** 2 + q[3] ** 2))
        g = self.env.tcp_quat()
        jaw_yaw = np.arctan2(2 * (g[0] * g[3] + g[1] * g[2]), 1 - 2 * (g[2] ** 2 + g[3] ** 2))
        return float((cube_yaw - jaw_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    def _on_phase_end(self, phase: str) -> None:
        if phase == "close":
            self._grasp_offset = self.env.object_pos(self.env.task_spec.obj) - self.env.tcp_pos()


_ALIGNING = {"above_object", "descend", "above_start", "lower_start"}

_PICK_PLACE = [
    _Phase("above_object", jaw=-1.0, noisy=True),
    _Phase("descend", jaw=-1.0, tol=0.004),
    _Phase("close", jaw=1.0, tol=0.0, wait=JAW_STEPS),
    _Phase("lift", jaw=1.0, tol=0.01, noisy=True),
    _Phase("above_target", jaw=1.0, tol=0.008, noisy=True),
    _Phase("lower", jaw=1.0, tol=0.004),
    _Phase("open", jaw=-1.0, tol=0.0, wait=JAW_STEPS),
    _Phase("retreat", jaw=-1.0, noisy=True),
]

_PUSH = [
    _Phase("above_start", jaw=1.0, tol=0.01, noisy=True),
    _Phase("lower_start", jaw=1.0, tol=0.005),
    _Phase("push", jaw=1.0, tol=0.005),
    _Phase("back_off", jaw=1.0, tol=0.005),
    _Phase("lift_away", jaw=1.0, noisy=True),
]
