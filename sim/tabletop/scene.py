"""The tabletop scene: an MJCF built from primitives in Python, and seeded object layouts.

World frame: the table top is the plane z = 0, centred on the origin. The `agentview` camera looks
from +x towards -x, so image right is world +y and "left" in an instruction means world -y.

Objects (every layout holds all of them, so the instruction is what picks object and target):
    cubes   red, green, yellow   4 cm, free bodies
    plates  blue, pink           static discs (moved per layout by editing ``model.body_pos``)
    bowl                         static open cylinder made of wall segments

Layouts: layout ``i`` of split ``train`` uses seed ``i``, layout ``i`` of split ``heldout`` uses
seed ``HELDOUT_SEED_OFFSET + i``; train indices must stay below that offset, so the two splits
draw from disjoint seed ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CUBE_HALF = 0.02
CUBE_COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.1),
    "green": (0.15, 0.7, 0.2),
    "yellow": (0.95, 0.8, 0.1),
}
PLATE_COLORS: dict[str, tuple[float, float, float]] = {
    "blue": (0.15, 0.3, 0.9),
    "pink": (0.95, 0.45, 0.75),
}
PLATE_RADIUS = 0.065
PLATE_HALF_HEIGHT = 0.004
BOWL_INNER_RADIUS = 0.055
BOWL_WALL = 0.008
BOWL_HEIGHT = 0.045
BOWL_BOTTOM = 0.004
BOWL_SEGMENTS = 12

# Gripper: a mocap-driven palm with two slide-joint fingers. Finger joint q is the distance of a
# finger's inner face from the centre line, so the jaw gap is q_left - q_right (right q <= 0).
FINGER_OPEN = 0.04
FINGER_HALF = (0.01, 0.006, 0.028)  # (x, thickness y, length z) half sizes
PALM_TO_TCP = 0.06  # palm centre sits this far above the tool centre point (fingertips)

# Workspace for the tool centre point and for sampled object centres (metres, world frame).
TCP_LOW = np.array([-0.3, -0.4, 0.0], dtype=np.float64)
TCP_HIGH = np.array([0.3, 0.4, 0.35], dtype=np.float64)
OBJ_X = (-0.17, 0.17)
OBJ_Y = (-0.26, 0.26)
CUBE_Y_MAX = 0.16  # cubes start nearer the middle so a pushed cube stays inside OBJ_Y (in view)
HOME_TCP = np.array([0.0, 0.0, 0.22])

HELDOUT_SEED_OFFSET = 1_000_000
SPLITS = ("train", "heldout")

# Footprint radius per object kind for non-overlap sampling; the margin keeps room for open fingers.
_FOOTPRINT = {"cube": 0.03, "plate": PLATE_RADIUS, "bowl": BOWL_INNER_RADIUS + BOWL_WALL}
_MARGIN = 0.035
# Push tasks move a cube PUSH_DISTANCE along y; its lane (plus room for the pusher) stays clear.
PUSH_DISTANCE = 0.1
PUSH_LANE = PUSH_DISTANCE + 0.05
_LANE_MARGIN = 0.01


def cube_names() -> list[str]:
    return [f"{c}_cube" for c in CUBE_COLORS]


def plate_names() -> list[str]:
    return [f"{c}_plate" for c in PLATE_COLORS]


def object_names() -> list[str]:
    return [*cube_names(), *plate_names(), "bowl"]


@dataclass(frozen=True)
class Layout:
    """Object xy positions (and cube yaw) for one episode; deterministic from its seed."""

    seed: int
    xy: dict[str, tuple[float, float]]
    cube_yaw: dict[str, float]


def layout_seed(split: str, index: int) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'. Valid splits: {', '.join(SPLITS)}")
    if not 0 <= index < HELDOUT_SEED_OFFSET:
        raise ValueError(f"layout index must be in [0, {HELDOUT_SEED_OFFSET}), got {index}")
    return index if split == "train" else HELDOUT_SEED_OFFSET + index


def sample_layout(seed: int) -> Layout:
    """Rejection-sample non-overlapping object positions; large objects are placed first."""
    rng = np.random.default_rng(seed)
    order = ["bowl", *plate_names(), *cube_names()]
    for _ in range(1000):
        placed: dict[str, np.ndarray] = {}
        for name in order:
            r = _FOOTPRINT[_kind(name)]
            y_max = CUBE_Y_MAX if _kind(name) == "cube" else OBJ_Y[1] - r / 2
            cand = np.stack([rng.uniform(OBJ_X[0] + r / 2, OBJ_X[1] - r / 2, 64), rng.uniform(-y_max, y_max, 64)], 1)
            free = np.flatnonzero(_free_mask(name, cand, placed))
            if free.size == 0:
                break
            placed[name] = cand[free[0]]
        if len(placed) == len(order):
            xy = {name: (float(p[0]), float(p[1])) for name, p in placed.items()}
            yaw = {name: float(rng.uniform(-0.35, 0.35)) for name in cube_names()}
            return Layout(seed=seed, xy=xy, cube_yaw=yaw)
    raise RuntimeError(f"could not sample a layout for seed {seed}")  # never seen; the table is roomy


def _free_mask(name: str, cand: np.ndarray, placed: dict[str, np.ndarray]) -> np.ndarray:
    """Which candidate positions [K, 2] overlap nothing placed and keep every cube's push lane clear."""
    ok = np.ones(len(cand), dtype=bool)
    for other, p in placed.items():
        clearance = _FOOTPRINT[_kind(name)] + _FOOTPRINT[_kind(other)]
        ok &= np.hypot(*(cand - p).T) >= clearance + _MARGIN
        if _kind(name) == "cube":
            ok &= _lane_distance(cand, p) >= clearance + _LANE_MARGIN
        if _kind(other) == "cube":
            ok &= _lane_distance(p, cand) >= clearance + _LANE_MARGIN
    return ok


def _lane_distance(cube_xy: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Distance from `point` to the segment a cube sweeps when pushed PUSH_LANE either way along y."""
    d = np.atleast_2d(point - cube_xy)
    dy = np.clip(d[:, 1], -PUSH_LANE, PUSH_LANE)
    return np.hypot(d[:, 0], d[:, 1] - dy)


def _kind(name: str) -> str:
    return name.rsplit("_", 1)[-1] if "_" in name else name


def _rgba(rgb: tuple[float, float, float]) -> str:
    return f"{rgb[0]} {rgb[1]} {rgb[2]} 1"


def _lookat_xyaxes(pos: np.ndarray, target: np.ndarray, up: tuple[float, ...] = (0.0, 0.0, 1.0)) -> str:
    """MuJoCo camera `xyaxes` so a camera at `pos` looks at `target` with `up` pointing up-image."""
    fwd = (target - pos) / np.linalg.norm(target - pos)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    return " ".join(f"{v:.5f}" for v in (*right, *up))


def _bowl_xml() -> str:
    r = BOWL_INNER_RADIUS + BOWL_WALL / 2
    seg_half = np.pi * r / BOWL_SEGMENTS * 1.08  # slight overlap so cubes cannot slip between
    walls = []
    for k in range(BOWL_SEGMENTS):
        a = 2 * np.pi * k / BOWL_SEGMENTS
        walls.append(
            f'<geom type="box" size="{BOWL_WALL / 2} {seg_half:.4f} {BOWL_HEIGHT / 2}" '
            f'pos="{r * np.cos(a):.4f} {r * np.sin(a):.4f} {BOWL_HEIGHT / 2}" euler="0 0 {a:.4f}" material="bowl"/>'
        )
    bottom = (
        f'<geom type="cylinder" size="{BOWL_INNER_RADIUS + BOWL_WALL} {BOWL_BOTTOM / 2}" '
        f'pos="0 0 {BOWL_BOTTOM / 2}" material="bowl"/>'
    )
    return '<body name="bowl" pos="0 0 0">' + bottom + "".join(walls) + "</body>"


# Camera poses: agentview from the front, above the table; wrist on the palm's side (gripper frame).
_AGENTVIEW_POS, _AGENTVIEW_TARGET = np.array([0.4, 0.0, 0.62]), np.array([-0.04, 0.0, 0.0])
_WRIST_CAM, _WRIST_TARGET = np.array([0.06, 0.0, 0.02]), np.array([0.0, 0.0, -PALM_TO_TCP - 0.06])
_GREY = "0.55 0.55 0.6 1"


def _gripper_xml() -> str:
    fx, fy, fz = FINGER_HALF
    fingers = []
    for side, sign in (("left", 1), ("right", -1)):
        lo, hi = (0, FINGER_OPEN) if sign > 0 else (-FINGER_OPEN, 0)
        fingers.append(
            f'<body name="{side}_finger" pos="0 0 {-PALM_TO_TCP + fz}" gravcomp="1">'
            f'<joint name="{side}_finger" type="slide" axis="0 1 0" range="{lo} {hi}" damping="2" armature="0.01"/>'
            f'<geom name="{side}_finger" type="box" size="{fx} {fy} {fz}" pos="0 {sign * fy} 0" mass="0.05" '
            f'friction="1.5 0.02 0.001" condim="4" rgba="0.25 0.25 0.28 1"/></body>'
        )
    home = f"{HOME_TCP[0]} {HOME_TCP[1]} {HOME_TCP[2] + PALM_TO_TCP}"
    # The gripper is a free, gravity-compensated body welded to a mocap target (below). Moving a
    # mocap body directly would teleport the fingers, and friction could not carry a cube.
    return (
        f'<body name="gripper_target" mocap="true" pos="{home}"/>'
        f'<body name="gripper" pos="{home}" gravcomp="1"><freejoint name="gripper"/>'
        # Palm and wrist do not collide: only the fingers touch the world.
        f'<geom name="palm" type="box" size="0.02 0.06 0.012" mass="0.3" rgba="{_GREY}" contype="0" conaffinity="0"/>'
        f'<geom type="cylinder" size="0.018 0.05" pos="0 0 0.06" mass="0.1" rgba="{_GREY}" contype="0" '
        'conaffinity="0"/>'
        f'<site name="tcp" pos="0 0 {-PALM_TO_TCP}" size="0.004" rgba="1 0 0 0"/>'
        # The wrist camera sits on the palm's side and looks down past the fingertips; image right
        # is the jaw axis so the fingers appear left and right.
        f'<camera name="wrist" pos="{" ".join(map(str, _WRIST_CAM))}" '
        f'xyaxes="{_lookat_xyaxes(_WRIST_CAM, _WRIST_TARGET, up=(-1.0, 0.0, 0.0))}" fovy="75"/>'
        + "".join(fingers)
        + "</body>"
    )


def build_mjcf(image_size: tuple[int, int], timestep: float) -> str:
    """The whole scene as an MJCF string; objects start at the origin and are placed on reset."""
    h, w = image_size
    cam = " ".join(map(str, _AGENTVIEW_POS))
    cubes = "".join(
        f'<body name="{c}_cube" pos="0 0 {CUBE_HALF}"><freejoint name="{c}_cube"/>'
        f'<geom name="{c}_cube" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" mass="0.05" '
        f'rgba="{_rgba(rgb)}"/></body>'
        for c, rgb in CUBE_COLORS.items()
    )
    plates = "".join(
        f'<body name="{c}_plate" pos="0 0 0"><geom name="{c}_plate" type="cylinder" '
        f'size="{PLATE_RADIUS} {PLATE_HALF_HEIGHT}" pos="0 0 {PLATE_HALF_HEIGHT}" rgba="{_rgba(rgb)}"/></body>'
        for c, rgb in PLATE_COLORS.items()
    )
    actuators = "".join(
        f'<position name="{s}_finger" joint="{s}_finger" kp="300" kv="10" ctrlrange="{lo} {hi}" '
        'forcerange="-25 25"/>'
        for s, lo, hi in (("left", 0, FINGER_OPEN), ("right", -FINGER_OPEN, 0))
    )
    return f"""
<mujoco model="vla_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="{max(w, 64)}" offheight="{max(h, 64)}"/>
    <quality shadowsize="0" offsamples="0" numslices="16" numstacks="4"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.55 0.55 0.55" specular="0 0 0"/>
  </visual>
  <default><geom friction="1 0.005 0.0001" solref="0.01 1"/></default>
  <asset>
    <material name="table" rgba="0.72 0.6 0.45 1" specular="0" reflectance="0"/>
    <material name="bowl" rgba="0.92 0.92 0.88 1" specular="0" reflectance="0"/>
  </asset>
  <worldbody>
    <light pos="0.3 0 1.2" dir="-0.2 0 -1" diffuse="0.35 0.35 0.35" castshadow="false"/>
    <!-- A box, not a plane: llvmpipe renders MuJoCo's subdivided planes ~10x slower. -->
    <geom name="floor" type="box" size="2 2 0.01" pos="0 0 -0.76" rgba="0.35 0.35 0.38 1"/>
    <geom name="backdrop" type="box" size="0.02 1.2 0.8" pos="-0.7 0 0" rgba="0.55 0.6 0.65 1"
          contype="0" conaffinity="0"/>
    <geom name="table" type="box" size="0.4 0.45 0.02" pos="0 0 -0.02" material="table"/>
    <camera name="agentview" pos="{cam}" xyaxes="{_lookat_xyaxes(_AGENTVIEW_POS, _AGENTVIEW_TARGET)}" fovy="48"/>
    {_gripper_xml()}
    {cubes}
    {plates}
    {_bowl_xml()}
  </worldbody>
  <equality>
    <weld body1="gripper_target" body2="gripper" relpose="0 0 0 1 0 0 0" solref="{2 * timestep} 1"/>
  </equality>
  <actuator>{actuators}</actuator>
</mujoco>
"""
