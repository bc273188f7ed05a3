"""`TabletopEnv`: the fast built-in MuJoCo tabletop suite as a gymnasium env.

A floating parallel-jaw gripper (two position-controlled slide fingers) works on a table with
three cubes, two plates and a bowl. The gripper is a free body welded to a mocap target; the 7-D
action (see ``sim/spaces.py``) moves that target by 1.0 = POS_SCALE metres / ROT_SCALE radians per
control step (world-frame deltas about the tool centre point), and the last dimension sets the jaw
opening (-1 open, +1 closed, in between proportional). The target is interpolated over the physics
substeps so a grasped cube is carried smoothly. ``agent_pos`` orientation is the axis-angle of the
gripper relative to its home pose (fingers pointing down), so it starts at zero.

    env = TabletopEnv(task="place_red_on_blue_plate", split="heldout")
    obs, info = env.reset(seed=0, options={"layout": 3})   # layout 3 of the held-out split
    obs, info = env.reset(seed=7)                          # no layout option: layout 7 (= seed)

Success is checked from sim state after every step (``info["is_success"]``, reward 1.0, and
``terminated``); episodes truncate after ``max_episode_steps`` control steps (20 Hz).
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from sim.spaces import CAMERAS, STATE_DIM, action_space, embodiment, observation_space, validate_action
from sim.tabletop import scene
from sim.tabletop.tasks import TASKS, TaskSpec, get_task

logger = logging.getLogger(__name__)

POS_SCALE = 0.02  # metres per unit action per control step
ROT_SCALE = 0.15  # radians per unit action per control step
CONTROL_HZ = 20
PHYSICS_DT = 0.005
# reset() with neither a "layout" option nor a seed draws a layout index below this.
DEFAULT_LAYOUT_RANGE = 100_000
MAX_START_JITTER = 0.15  # m: keeps the start above the table, inside the objects' area


class TabletopEnv(gym.Env):
    """One tabletop task (instruction) on seeded layouts; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(
        self,
        task: str = next(iter(TASKS)),
        split: str = "train",
        image_size: tuple[int, int] | list[int] = (128, 128),
        cameras: bool = True,
        max_episode_steps: int = 200,
        render_mode: str | None = "rgb_array",
        start_jitter: float = 0.0,
    ) -> None:
        """``start_jitter`` (m): the gripper starts at HOME_TCP + a per-layout uniform offset in
        [-start_jitter, start_jitter] along x and y (0 = always at home). Why: from a fixed home,
        a single frame's gripper position tells which way the demo is heading, so a policy can
        learn to follow it instead of reading the instruction; a varied start removes that cue."""
        self.task_spec: TaskSpec = get_task(task)
        self.task_name = task
        # lerobot's vector-env eval reads the instruction from these two attributes.
        self.task = self.task_description = self.task_spec.instruction
        scene.layout_seed(split, 0)  # validates the split name early
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        if not 0.0 <= start_jitter <= MAX_START_JITTER:
            raise ValueError(f"start_jitter must be in [0, {MAX_START_JITTER}] m, got {start_jitter}")
        self.start_jitter = float(start_jitter)
        self.split = split
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.cameras = cameras
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.observation_space = observation_space(self.image_size)
        self.action_space = action_space()
        self.embodiment = embodiment(self.image_size, fps=CONTROL_HZ, name="tabletop_arm")

        self.model = mujoco.MjModel.from_xml_string(scene.build_mjcf(self.image_size, PHYSICS_DT))
        self.data = mujoco.MjData(self.model)
        self.n_substeps = round(1.0 / CONTROL_HZ / PHYSICS_DT)
        self._lookup_ids()
        self._renderer: mujoco.Renderer | None = None
        if cameras:
            self._open_renderer()
        self.layout: scene.Layout | None = None
        self.layout_index: int | None = None
        self._start_pos: dict[str, np.ndarray] = {}
        self._elapsed = 0
        self._tcp_target = np.zeros(3)
        self._quat_target = np.array([1.0, 0.0, 0.0, 0.0])

    def _lookup_ids(self) -> None:
        m = self.model
        self._mocap = m.body_mocapid[m.body("gripper_target").id]
        self._gripper_qadr = m.jnt_qposadr[m.joint("gripper").id]
        self._gripper_body = m.body("gripper").id
        self._tcp_site = m.site("tcp").id
        self._finger_qadr = [m.jnt_qposadr[m.joint(f"{s}_finger").id] for s in ("left", "right")]
        self._finger_geoms = {m.geom(f"{s}_finger").id for s in ("left", "right")}
        self._body = {name: m.body(name).id for name in scene.object_names()}
        self._cube_qadr = {name: m.jnt_qposadr[m.joint(name).id] for name in scene.cube_names()}
        self._cube_geom = {name: m.geom(name).id for name in scene.cube_names()}

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        split = options.pop("split", self.split)
        index = options.pop("layout", None)
        if options:
            # Runners add their own keys (lerobot-eval passes `lerobot_new_rollout`): ignore, but say so.
            logger.warning("ignoring reset options %s; this env reads 'layout' and 'split'", sorted(options))
        if index is None and seed is not None:  # layout = seed: seeded evaluators get known layouts
            index = seed % scene.HELDOUT_SEED_OFFSET
        elif index is None:
            index = int(self.np_random.integers(DEFAULT_LAYOUT_RANGE))
        self.layout_index = int(index)
        layout_seed = scene.layout_seed(split, self.layout_index)
        self.layout = scene.sample_layout(layout_seed)

        mujoco.mj_resetData(self.model, self.data)
        for name, (x, y) in self.layout.xy.items():
            if name in self._cube_qadr:
                adr = self._cube_qadr[name]
                yaw = self.layout.cube_yaw[name]
                self.data.qpos[adr : adr + 7] = [x, y, scene.CUBE_HALF, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
            else:  # plates and the bowl are static bodies: move them in the model itself
                self.model.body_pos[self._body[name]] = [x, y, 0.0]
        self._tcp_target = scene.HOME_TCP.copy()
        if self.start_jitter:  # from the layout's seed: the same layout starts the same way
            self._tcp_target[:2] += np.random.default_rng([layout_seed, 1]).uniform(-1, 1, 2) * self.start_jitter
        self._quat_target = np.array([1.0, 0.0, 0.0, 0.0])
        self._set_mocap(self._tcp_target, self._quat_target)
        adr = self._gripper_qadr
        self.data.qpos[adr : adr + 3] = self.data.mocap_pos[self._mocap]
        self.data.qpos[adr + 3 : adr + 7] = self._quat_target
        self._set_jaw(-1.0)
        self.data.qpos[self._finger_qadr] = self.data.ctrl[:2]
        mujoco.mj_forward(self.model, self.data)
        self._start_pos = {name: self.object_pos(name) for name in scene.cube_names()}
        self._elapsed = 0
        return self._observation(), self._info(False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        act = validate_action(action, self.action_space)  # raises before the sim is touched
        if self.layout is None:
            raise RuntimeError("call reset() before step()")
        tcp0, quat0 = self._tcp_target, self._quat_target
        tcp1 = np.clip(tcp0 + act[:3] * POS_SCALE, scene.TCP_LOW, scene.TCP_HIGH)
        quat1 = _quat_mul(_axis_angle_to_quat(act[3:6].astype(np.float64) * ROT_SCALE), quat0)
        self._set_jaw(float(act[6]))
        for k in range(1, self.n_substeps + 1):
            s = k / self.n_substeps
            quat = quat0 * (1 - s) + quat1 * s  # nlerp: rotations per step are small
            self._set_mocap(tcp0 * (1 - s) + tcp1 * s, quat / np.linalg.norm(quat))
            mujoco.mj_step(self.model, self.data)
        self._tcp_target, self._quat_target = tcp1, quat1
        self._elapsed += 1
        success = self.is_success()
        truncated = not success and self._elapsed >= self.max_episode_steps
        return self._observation(), float(success), success, truncated, self._info(success)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self._render_camera("agentview")

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer_finalizer()
            self._renderer = None

    # ------------------------------------------------------------------ sim state (experts read it)
    def object_pos(self, name: str) -> np.ndarray:
        return self.data.xpos[self._body[name]].copy()

    def object_quat(self, name: str) -> np.ndarray:
        return self.data.xquat[self._body[name]].copy()

    def start_pos(self, name: str) -> np.ndarray:
        """A cube's position at reset (push goals are relative to it)."""
        return self._start_pos[name].copy()

    def tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._tcp_site].copy()

    def tcp_quat(self) -> np.ndarray:
        return self.data.xquat[self._gripper_body].copy()

    def finger_qpos(self) -> np.ndarray:
        return self.data.qpos[self._finger_qadr].copy()

    def touching_gripper(self, name: str) -> bool:
        """True if a finger touches the given cube (contact from the last physics step)."""
        geom = self._cube_geom[name]
        pairs = self.data.contact.geom[: self.data.ncon]
        return any(geom in pair and (pair[0] in self._finger_geoms or pair[1] in self._finger_geoms) for pair in pairs)

    def is_success(self) -> bool:
        """The task's goal predicate, from sim state only."""
        return bool(self._goal_reached())

    def _goal_reached(self) -> bool | np.bool_:
        t = self.task_spec
        p = self.object_pos(t.obj)
        on_table = abs(p[2] - scene.CUBE_HALF) < 0.01
        if t.family == "push":
            moved = p - self._start_pos[t.obj]
            along = -moved[1] if t.target == "left" else moved[1]
            return on_table and along >= 0.7 * scene.PUSH_DISTANCE and abs(moved[0]) <= 0.05
        if self.touching_gripper(t.obj):
            return False  # placed means released
        q = self.object_pos(t.target)
        dist = float(np.hypot(*(p[:2] - q[:2])))
        if t.family == "place":
            rest = 2 * scene.PLATE_HALF_HEIGHT + scene.CUBE_HALF
            return dist < scene.PLATE_RADIUS - 0.02 and abs(p[2] - rest) < 0.01
        if t.family == "stack":
            base_on_table = abs(q[2] - scene.CUBE_HALF) < 0.01
            return base_on_table and dist < scene.CUBE_HALF and abs(p[2] - q[2] - 2 * scene.CUBE_HALF) < 0.01
        if t.family == "bowl":
            return dist < scene.BOWL_INNER_RADIUS - 0.015 and p[2] < scene.BOWL_BOTTOM + scene.CUBE_HALF + 0.015
        raise AssertionError(f"unhandled task family {t.family}")

    # ------------------------------------------------------------------ helpers
    def _set_mocap(self, tcp: np.ndarray, quat: np.ndarray) -> None:
        # The mocap body is the palm; keep the tool centre point where the action put it.
        rot = np.empty(9)
        mujoco.mju_quat2Mat(rot, quat)
        self.data.mocap_pos[self._mocap] = tcp + rot.reshape(3, 3) @ np.array([0.0, 0.0, scene.PALM_TO_TCP])
        self.data.mocap_quat[self._mocap] = quat

    def _set_jaw(self, command: float) -> None:
        q = scene.FINGER_OPEN * (1.0 - command) / 2.0  # -1 -> fully open, +1 -> closed
        self.data.ctrl[:2] = (q, -q)

    def _observation(self) -> dict:
        state = np.empty(STATE_DIM, dtype=np.float32)
        state[:3] = self.tcp_pos()
        state[3:6] = _quat_to_axis_angle(self.tcp_quat())
        state[6:] = self.finger_qpos()
        if self.cameras:
            pixels = {cam: self._render_camera(cam) for cam in CAMERAS}
        else:  # same space, no rendering cost: blank frames
            pixels = {cam: np.zeros((*self.image_size, 3), dtype=np.uint8) for cam in CAMERAS}
        return {"pixels": pixels, "agent_pos": state}

    def _open_renderer(self) -> None:
        # One renderer per env, reused for every frame (each one owns a GL context).
        self._renderer = mujoco.Renderer(self.model, *self.image_size)
        # Free the GL context on garbage collection or at interpreter exit even without close():
        # mujoco's own __del__ runs after EGL is torn down at exit and prints tracebacks.
        self._renderer_finalizer = weakref.finalize(self, self._renderer.close)

    def _render_camera(self, camera: str) -> np.ndarray:
        if self._renderer is None:  # a cameras=False env asked for a frame via render()
            self._open_renderer()
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render()

    def _info(self, success: bool) -> dict:
        return {"is_success": success, "task": self.task, "layout": self.layout_index}


def _axis_angle_to_quat(vec: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(vec))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * vec / angle])


def _quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    q = quat if quat[0] >= 0 else -quat  # shortest rotation, angle in [0, pi]
    sin_half = float(np.linalg.norm(q[1:]))
    if sin_half < 1e-12:
        return np.zeros(3)
    return 2.0 * np.arctan2(sin_half, q[0]) * q[1:] / sin_half


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(4)
    mujoco.mju_mulQuat(out, a, b)
    return out
