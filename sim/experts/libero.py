"""Scripted pick-and-place expert for LIBERO-Spatial and LIBERO-Object, from simulator state.

Every task in those suites has a single BDDL goal ``(On <obj> <target>)`` or
``(In <obj> <target>_contain_region)``. The expert reads that goal, then the live poses and
collision geometry of the objects (``sim.libero.scene``) and runs a waypoint state machine:

    hover over the grasp point -> descend -> close -> lift (regrasp if the object stayed) ->
    carry above the target -> lower -> open -> retreat

Grasps: bowls are taken by the rim (one finger inside, one outside the wall, the side with most
room), everything else from the top across its narrow horizontal axis. During carry/lower the
target is corrected with the object's *measured* pose, so a grasp that slipped still lands
centred. Actions follow the env's OSC_POSE delta convention (sim/spaces.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from sim.libero.scene import Box, Scene

SUPPORTED_SUITES = ("libero_spatial", "libero_object")
# OSC_POSE scales a unit action to 5 cm / 0.5 rad of goal offset (robosuite osc_pose.json).
POS_SCALE, ROT_SCALE = 0.05, 0.5
OPEN, CLOSE = -1.0, 1.0
MAX_GRASP_WIDTH = 0.064  # widest object extent the open fingers (~0.078 m) close around safely
# Gripper footprint relative to the pad centre, as (half span along the finger axis, half
# thickness across it, z range): the fingers, then the Panda hand (~0.2 m along the finger axis,
# ~6 cm thick) from 3.5 cm above the pads.
GRIPPER_VOLUMES = ((0.045, 0.012, -0.012, 0.035), (0.105, 0.032, 0.035, 0.15))
PALM_DEPTH = 0.04  # how far below an object's top the pads may go before the palm hits it
MAX_ATTEMPTS = 3


@dataclass
class Grasp:
    pos: np.ndarray  # gripper (pad centre) position to close at, world frame
    finger_axis: np.ndarray  # horizontal unit vector the fingers close along


@dataclass
class Goal:
    obj: str  # object to move
    target: str  # object or site it must end up on / in
    relation: str  # "on" | "in"


class LiberoExpert:
    """``LiberoExpert(env.unwrapped)``; call ``reset()`` after each ``env.reset()``, then
    ``act(obs)`` each step (the observation is not needed: the expert reads the simulator)."""

    def __init__(self, env: Any, noise: float = 0.0, seed: int | None = None) -> None:
        """``noise``: std of Gaussian noise added to the motion part of each action (action units;
        the gripper command stays clean), for more diverse demonstrations. 0 = deterministic."""
        suite = getattr(env, "suite", None)
        if suite not in SUPPORTED_SUITES:
            raise NotImplementedError(
                f"LiberoExpert scripts only {', '.join(SUPPORTED_SUITES)} (pick-and-place goals); "
                f"got suite {suite!r}. Other LIBERO suites need their own scripted skills."
            )
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.env = env
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self.scene: Scene | None = None

    # --- public API ------------------------------------------------------------------------------
    def reset(self) -> None:
        self._episode = self.env.episode_id
        self.scene = Scene(self.env.libero_env)
        self.goal = parse_goal(self.env.libero_env.parsed_problem["goal_state"])
        self.attempt = 0
        self._start_attempt()

    def act(self, obs: Any = None) -> np.ndarray:
        if self.scene is None or self._episode != self.env.episode_id:
            self.reset()  # a new episode started without expert.reset(): replan from the sim
        handler = getattr(self, f"_phase_{self.phase}")
        self.phase_steps += 1
        target, gripper = handler()
        return self._action(target, gripper)

    # --- phases: each returns (eef target position, gripper command) -----------------------------
    def _phase_hover(self) -> tuple[np.ndarray, float]:
        target = np.array([*self.grasp.pos[:2], self.hover_z])
        err = target - self.scene.eef_pos()
        if (np.linalg.norm(err[:2]) < 0.01 and abs(err[2]) < 0.03 and self._yaw_error() < 0.08) or self.phase_steps > 60:
            self._enter("descend")
        return target, OPEN

    def _phase_descend(self) -> tuple[np.ndarray, float]:
        err = self.grasp.pos - self.scene.eef_pos()
        if np.linalg.norm(err) < 0.006 or self._stalled(0.002) or self.phase_steps > 40:
            self._enter("close")
        return self.grasp.pos, OPEN

    def _phase_close(self) -> tuple[np.ndarray, float]:
        # Close until the fingers stop moving (blocked by the object, or fully shut).
        opening = self.scene.gripper_opening()
        settled = self.phase_steps > 4 and abs(opening - self._last_opening) < 4e-4
        self._last_opening = opening
        if settled or self.phase_steps > 20:
            self.lift_from = self.scene.box(self.goal.obj).lo[2]
            self._enter("lift")
        return self.grasp.pos, CLOSE

    def _phase_lift(self) -> tuple[np.ndarray, float]:
        eef = self.scene.eef_pos()
        target = np.array([*self.grasp.pos[:2], self._carry_z()])
        raised = eef[2] - self.grasp.pos[2]
        if raised > 0.04 and not self._holding():
            return self._retry()
        if target[2] - eef[2] < 0.015 or self.phase_steps > 40:
            self._enter("carry")
        return target, CLOSE

    def _phase_carry(self) -> tuple[np.ndarray, float]:
        if not self._holding():
            return self._retry()
        target = np.array([*self._eef_xy_for_object_at(self.place_xy), self._carry_z()])
        err = target - self.scene.eef_pos()
        if np.linalg.norm(err[:2]) < 0.008 or self.phase_steps > 80:
            self._enter("lower")
        return target, CLOSE

    def _phase_lower(self) -> tuple[np.ndarray, float]:
        obj_bottom = self.scene.box(self.goal.obj).lo[2]
        eef = self.scene.eef_pos()
        z = eef[2] + (self.release_bottom - obj_bottom)
        target = np.array([*self._eef_xy_for_object_at(self.place_xy), z])
        if abs(obj_bottom - self.release_bottom) < 0.006 or self._stalled(0.0015) or self.phase_steps > 40:
            self._enter("release")
        return target, CLOSE

    def _phase_release(self) -> tuple[np.ndarray, float]:
        if self.phase_steps >= 6:
            self._enter("retreat")
        return self.scene.eef_pos(), OPEN

    def _phase_retreat(self) -> tuple[np.ndarray, float]:
        eef = self.scene.eef_pos()
        return np.array([eef[0], eef[1], self._carry_z() + 0.05]), OPEN

    # --- planning --------------------------------------------------------------------------------
    def _start_attempt(self) -> None:
        self.grasp = plan_grasp(self.scene, self.goal.obj)
        self.place_xy, self.release_bottom, self.place_top = plan_place(self.scene, self.goal)
        obj_box = self.scene.box(self.goal.obj)
        self.grip_to_bottom = self.grasp.pos[2] - obj_box.lo[2]
        self.hover_z = max(self.grasp.pos[2] + 0.07, obj_box.hi[2] + 0.045)
        self.lift_from = obj_box.lo[2]
        self.carry_bottom = self._carry_bottom(obj_box)
        self._enter("hover")

    def _carry_bottom(self, obj_box: Box) -> float:
        """Object-bottom height that clears everything between pick and place (+ margin)."""
        a, b = obj_box.center[:2], self.place_xy
        obstacles = self.scene.obstacle_geoms(exclude={self.goal.obj})
        lo, hi = self.scene.geom_boxes(obstacles)
        # Obstacles whose footprint comes within 6 cm of the straight carry path.
        near = _segment_box_distance(a, b, lo[:, :2], hi[:, :2]) < 0.06
        tallest = float(hi[near, 2].max()) if near.any() else obj_box.lo[2]
        tallest = min(tallest, obj_box.lo[2] + 0.25)  # ignore walls/shelves far above the scene
        return max(tallest, self.place_top, obj_box.lo[2]) + 0.04

    def _carry_z(self) -> float:
        return self.carry_bottom + self.grip_to_bottom

    def _retry(self) -> tuple[np.ndarray, float]:
        self.attempt += 1
        if self.attempt >= MAX_ATTEMPTS:
            self._enter("retreat")
            return self.scene.eef_pos(), OPEN
        eef = self.scene.eef_pos()
        self._start_attempt()
        return np.array([eef[0], eef[1], eef[2] + 0.03]), OPEN

    # --- control helpers -------------------------------------------------------------------------
    def _enter(self, phase: str) -> None:
        self.phase = phase
        self.phase_steps = 0
        self._last_eef = self.scene.eef_pos()
        self._last_opening = self.scene.gripper_opening()
        self._lost = 0

    def _stalled(self, tol: float) -> bool:
        """The eef moved less than ``tol`` since last step (blocked by contact) after a few steps."""
        eef = self.scene.eef_pos()
        moved = np.linalg.norm(eef - self._last_eef)
        self._last_eef = eef
        return self.phase_steps > 4 and moved < tol

    def _holding(self) -> bool:
        """The object rises with the gripper. Judged on 3 consecutive steps: pad contacts and
        single readings flicker while a thin bowl wall settles between the fingers."""
        lifted = self.scene.box(self.goal.obj).lo[2] - self.lift_from
        raised = self.scene.eef_pos()[2] - self.grasp.pos[2]
        ok = lifted > raised - 0.03 and self.scene.gripper_opening() > 0.0025
        self._lost = 0 if ok else self._lost + 1
        return self._lost < 3

    def _eef_xy_for_object_at(self, xy: np.ndarray) -> np.ndarray:
        """Gripper xy that puts the object's measured centre at ``xy`` (corrects grasp offsets)."""
        obj_xy = self.scene.position(self.goal.obj)[:2]
        return xy + (self.scene.eef_pos()[:2] - obj_xy)

    def _desired_mat(self) -> np.ndarray:
        cur_x = self.scene.eef_mat()[:, 0]
        f = self.grasp.finger_axis * (1.0 if cur_x[:2] @ self.grasp.finger_axis >= 0 else -1.0)
        x = np.array([f[0], f[1], 0.0])
        z = np.array([0.0, 0.0, -1.0])
        return np.column_stack([x, np.cross(z, x), z])

    def _yaw_error(self) -> float:
        return float(np.linalg.norm(rotation_error(self._desired_mat(), self.scene.eef_mat())))

    def _action(self, target: np.ndarray, gripper: float) -> np.ndarray:
        pos = (target - self.scene.eef_pos()) / POS_SCALE
        if self.phase in ("descend", "lower"):
            pos = np.clip(pos, -0.6, 0.6)  # slow, controlled contact
        rot = rotation_error(self._desired_mat(), self.scene.eef_mat()) / ROT_SCALE
        motion = np.concatenate([pos, rot])
        if self.noise:
            motion = motion + self.rng.normal(0.0, self.noise, size=6)
        return np.concatenate([np.clip(motion, -1, 1), [gripper]]).astype(np.float32)


# --- planning functions (pure: scene in, plan out) ------------------------------------------------
def parse_goal(goal_state: list) -> Goal:
    if len(goal_state) != 1 or goal_state[0][0].lower() not in ("on", "in") or len(goal_state[0]) != 3:
        raise NotImplementedError(f"LiberoExpert handles a single On/In goal, got {goal_state}")
    relation, obj, target = goal_state[0]
    return Goal(obj=obj, target=target, relation=relation.lower())


def plan_grasp(scene: Scene, obj: str) -> Grasp:
    box = scene.box(obj)
    if "bowl" in obj:
        return _rim_grasp(scene, obj, box)
    return _top_grasp(scene, obj, box)


def _top_grasp(scene: Scene, obj: str, box: Box) -> Grasp:
    """Pads at mid-height (no deeper than the palm allows) across a narrow horizontal direction.
    Candidates: finger axes every 5 deg that fit the open gripper, and pad centres slid along the
    object's long side; the score trades room for the hand against grasp width and offset."""
    corners = scene.geom_corners(scene.collision_geoms(obj)).reshape(-1, 3)[:, :2]
    z = max(box.lo[2] + 0.5 * box.size[2], box.hi[2] - PALM_DEPTH, box.lo[2] + 0.011)
    angles = np.linspace(0, np.pi, 36, endpoint=False)
    axes = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # candidate finger axes
    proj = corners @ axes.T  # extent of the object along each axis
    widths = proj.max(axis=0) - proj.min(axis=0)
    best, best_score = None, -np.inf
    for k in range(len(angles)):
        if widths[k] > MAX_GRASP_WIDTH and k != widths.argmin():
            continue
        f, perp = axes[k], np.array([-axes[k][1], axes[k][0]])
        pp = corners @ perp
        centre = f * (proj[:, k].max() + proj[:, k].min()) / 2 + perp * (pp.max() + pp.min()) / 2
        slide = max((pp.max() - pp.min()) / 2 - 0.015, 0.0)  # keep the pads 1.5 cm from the ends
        for offset in np.linspace(-slide, slide, 5) if slide > 0.005 else [0.0]:
            pos = np.array([*(centre + offset * perp), z])
            room = min(_clearance(scene, obj, pos, f), 0.02)
            score = room - 0.8 * (widths[k] - widths.min()) - 0.3 * abs(offset)
            if score > best_score:
                best, best_score = Grasp(pos=pos, finger_axis=f), score
    return best


def _rim_grasp(scene: Scene, obj: str, box: Box) -> Grasp:
    """Bowls are concave: straddle the wall (radial finger axis) on the side with most room."""
    center = scene.position(obj)
    radius = 0.5 * min(box.size[0], box.size[1]) - 0.009  # collision wall mid-thickness
    z = box.lo[2] + 0.7 * box.size[2]
    best, best_score = None, -np.inf
    for angle in np.linspace(-np.pi, np.pi, 16, endpoint=False):
        u = _unit(angle)
        pos = np.array([*(center[:2] + radius * u), z])
        # Prefer the side facing the robot (it sits at -x): shorter reach, wrist stays comfortable.
        score = min(_clearance(scene, obj, pos, u), 0.03) - 0.01 * u[0]
        if score > best_score:
            best, best_score = Grasp(pos=pos, finger_axis=u), score
    return best


def plan_place(scene: Scene, goal: Goal) -> tuple[np.ndarray, float, float]:
    """(object centre xy target, object-bottom height to release at, height of the target top)."""
    if goal.relation == "in":
        region = scene.site_region(goal.target)
        parent = scene.env.object_sites_dict[goal.target].parent_name
        top = scene.box(parent).hi[2] if parent in scene.env.objects_dict else region.hi[2]
        return region.center[:2], region.lo[2] + 0.04, top
    target_box = scene.box(goal.target)
    # LIBERO's On() tests the object's body origin against the target's body origin (< 3 cm).
    return scene.position(goal.target)[:2], target_box.hi[2] + 0.012, target_box.hi[2]


def _clearance(scene: Scene, obj: str, pos: np.ndarray, finger_axis: np.ndarray) -> float:
    """Horizontal room around the gripper closed at ``pos``: distance from the fingers' span and
    from the (much wider) hand above them to the nearest other geom at those heights."""
    lo, hi = scene.geom_boxes(scene.obstacle_geoms(exclude={obj}))
    room = np.inf
    for half_span, half_thick, z_lo, z_hi in GRIPPER_VOLUMES:
        overlap = (hi[:, 2] > pos[2] + z_lo) & (lo[:, 2] < pos[2] + z_hi)
        if overlap.any():
            f = finger_axis * half_span
            d = _segment_box_distance(pos[:2] - f, pos[:2] + f, lo[overlap, :2], hi[overlap, :2])
            room = min(room, float(d.min()) - half_thick)
    return room


def _segment_box_distance(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Approximate 2-D distance from segment a-b to each axis-aligned box (sampled along the
    segment; plenty accurate at the cm scale that matters here)."""
    pts = a[None] + np.linspace(0, 1, 11)[:, None] * (b - a)[None]  # [11, 2]
    gap = np.maximum(lo[None] - pts[:, None], 0) + np.maximum(pts[:, None] - hi[None], 0)  # [11, n, 2]
    return np.linalg.norm(gap, axis=-1).min(axis=0)


def rotation_error(desired: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle (world frame) rotating ``current`` onto ``desired``, matching how OSC applies
    delta rotations: goal = R(delta) @ current."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (desired @ current.T).flatten())
    vel = np.zeros(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])
