"""LIBERO as a gymnasium env speaking the shared `vla` convention (see ``sim/spaces.py``).

    env = gym.make("vla/Libero-v0", suite="libero_spatial", task=0)      # or task="<name>"
    obs, info = env.reset(options={"init_state": 3})   # one of the suite's fixed init states
    obs, reward, terminated, truncated, info = env.step(action)   # float32[7] delta-EEF OSC_POSE

Adapter only: hf-libero's ``OffScreenRenderEnv`` does the simulation; this file builds it offline
and headless, renames/flips cameras, packs ``agent_pos``, validates actions and adds the
success/time-limit bookkeeping. ``cameras=False`` builds LIBERO without any renderer (pixels are
zeros), ~7x faster, for scripted-expert evaluation.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from sim import spaces as vspaces
from sim.libero.offline import ensure_libero
from sim.libero.suites import MAX_EPISODE_STEPS, TaskSpec, check_suite, get_task, load_init_states

# LIBERO camera names -> the shared camera keys.
CAMERA_MAP: dict[str, str] = {"agentview": "agentview", "robot0_eye_in_hand": "wrist"}
# "Do nothing, gripper open": what LIBERO eval scripts (openpi, OpenVLA) step while objects settle.
NOOP_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)


class LiberoEnv(gym.Env):
    """One LIBERO task. The simulator is built lazily on the first ``reset`` (5-15 s), so
    constructing the env (e.g. in a vector-env parent process) is cheap and fork-safe."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        suite: str = "libero_spatial",
        task: str | int = 0,
        image_size: int | tuple[int, int] | list[int] = 128,
        max_episode_steps: int | None = None,
        cameras: bool = True,
        settle_steps: int = 10,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        self.spec_task: TaskSpec = get_task(check_suite(suite), task)
        self.suite = suite
        self.task_name = self.spec_task.name
        # lerobot's vector-env eval reads `task`/`task_description`; both are the instruction.
        self.task = self.task_description = self.spec_task.language
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.image_size = (int(h), int(w))
        self.max_episode_steps = MAX_EPISODE_STEPS[suite] if max_episode_steps is None else int(max_episode_steps)
        self.cameras = bool(cameras)
        self.settle_steps = int(settle_steps)
        if min(self.image_size) < 1 or self.max_episode_steps < 1 or self.settle_steps < 0:
            raise ValueError(
                f"need image_size >= 1, max_episode_steps >= 1, settle_steps >= 0; got {self.image_size}, "
                f"{self.max_episode_steps}, {self.settle_steps}"
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.observation_space = vspaces.observation_space(self.image_size)
        self.action_space = vspaces.action_space()
        self.embodiment = vspaces.embodiment(self.image_size, fps=float(self.metadata["render_fps"]),
                                            name="libero_panda")
        self.init_states = load_init_states(suite, self.spec_task.index)
        self.init_state_index: int | None = None
        self.episode_id = 0  # bumped by every reset (lets experts notice a new episode)
        self._env: Any = None  # LIBERO ControlEnv / OffScreenRenderEnv
        self._elapsed = 0
        self._needs_reset = True
        self._last_pixels: dict[str, np.ndarray] | None = None

    # --- simulator access (used by scripted experts and tests) ---------------------------------
    @property
    def libero_env(self) -> Any:
        """The robosuite/LIBERO problem env (objects_dict, parsed_problem, _check_success...)."""
        self._ensure_sim()
        return self._env.env

    @property
    def sim(self) -> Any:
        return self.libero_env.sim

    @property
    def obj_of_interest(self) -> list[str]:
        return list(self.libero_env.obj_of_interest)

    @property
    def num_init_states(self) -> int:
        return len(self.init_states)

    # --- gym API ---------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        if "init_state" in options and options["init_state"] is not None:
            idx = int(options["init_state"])
            if not 0 <= idx < self.num_init_states:
                raise ValueError(
                    f"init_state {idx} out of range: {self.task_name} has {self.num_init_states} "
                    f"init states (0..{self.num_init_states - 1})"
                )
        else:  # reproducible under reset(seed=...)
            idx = int(self.np_random.integers(self.num_init_states))
        self._ensure_sim()
        self._make_gl_current()
        self._reset_scene(idx)
        self._env.set_init_state(self.init_states[idx])
        raw = self._settle()
        self.init_state_index = idx
        self.episode_id += 1
        self._elapsed = 0
        self._needs_reset = False
        return self._format_obs(raw), self._info(success=False)

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        act = vspaces.validate_action(action, self.action_space)  # raises before touching the sim
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        self._make_gl_current()
        raw, _, _, _ = self._env.step(act.astype(np.float64))
        self._elapsed += 1
        success = bool(self._env.check_success())
        truncated = not success and self._elapsed >= self.max_episode_steps
        return self._format_obs(raw), float(success), success, truncated, self._info(success)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        if self._last_pixels is None:
            return np.zeros((*self.image_size, 3), dtype=np.uint8)
        return self._last_pixels["agentview"].copy()

    def close(self) -> None:
        if self._env is not None:
            try:
                self._env.close()
            finally:
                self._env = None
                self._needs_reset = True

    # --- helpers ---------------------------------------------------------------------------------
    def _ensure_sim(self) -> None:
        if self._env is not None:
            return
        ensure_libero()
        from libero.libero.envs.env_wrapper import ControlEnv, OffScreenRenderEnv

        h, w = self.image_size
        common = dict(
            bddl_file_name=str(self.spec_task.bddl_file),
            # Soft resets keep the compiled model and GL context (a hard reset rebuilds both:
            # seconds per episode); the init state then overwrites the whole MuJoCo state.
            hard_reset=False,
            # We own the time limit; robosuite's own horizon would refuse further steps.
            ignore_done=True,
        )
        if self.cameras:
            self._env = OffScreenRenderEnv(camera_heights=h, camera_widths=w, **common)
            _speed_up_rendering(self._env.env.sim)
        else:
            self._env = ControlEnv(has_offscreen_renderer=False, use_camera_obs=False, **common)

    def _make_gl_current(self) -> None:
        """robosuite renders into whatever GL context is current and never re-binds its own: with a
        second env, a video renderer or ``mujoco.Renderer`` in the process, frames would come from
        the wrong context. Re-binding ours costs microseconds."""
        if self.cameras:
            self._env.env.sim._render_context_offscreen.gl_ctx.make_current()

    def _reset_scene(self, idx: int) -> None:
        """LIBERO's own reset (step counter, controller) re-samples fixture placements (cabinet,
        stove, ...: model body poses, which the init state does not cover) from numpy's GLOBAL RNG.
        Seeding it with the init-state index makes each episode a pure function of that index;
        the caller's global RNG state is restored."""
        saved = np.random.get_state()
        np.random.seed(idx)
        try:
            self._env.reset()
        finally:
            np.random.set_state(saved)
        # The Panda gripper integrates its command in `current_action`, which a soft reset keeps
        # from the previous episode (a hard reset rebuilds it at zero): zero it like a hard reset.
        for robot in self._env.env.robots:
            robot.gripper.current_action = np.zeros_like(robot.gripper.current_action)

    def _settle(self) -> dict[str, Any]:
        """Step no-ops so objects dropped by the init state come to rest (not counted as episode
        steps). Cameras are switched off meanwhile: only the final frame is needed."""
        inner = self._env.env
        cams = [o for o in inner._observables.values() if o.modality == "image"]
        for cam in cams:
            cam.set_enabled(False)
        try:
            for _ in range(self.settle_steps):
                self._env.step(NOOP_ACTION)
        finally:
            for cam in cams:
                cam.set_enabled(True)
        return inner._get_observations(force_update=True)

    def _format_obs(self, raw: dict[str, Any]) -> dict[str, Any]:
        h, w = self.image_size
        pixels = {}
        for libero_cam, cam in CAMERA_MAP.items():
            key = f"{libero_cam}_image"
            if self.cameras and key in raw:
                # MuJoCo reads pixels bottom row first: a vertical flip makes the image upright
                # (lerobot/openpi flip both axes, i.e. rotate 180 deg, to match LIBERO's datasets).
                pixels[cam] = np.ascontiguousarray(raw[key][::-1])
            else:
                pixels[cam] = np.zeros((h, w, 3), dtype=np.uint8)
        self._last_pixels = pixels
        agent_pos = np.concatenate(
            [raw["robot0_eef_pos"], quat2axisangle(raw["robot0_eef_quat"]), raw["robot0_gripper_qpos"]]
        ).astype(np.float32)
        return {"pixels": pixels, "agent_pos": agent_pos}

    def _info(self, success: bool) -> dict[str, Any]:
        return {
            "is_success": success,
            "task": self.task,
            "task_name": self.task_name,
            "task_index": self.spec_task.index,
            "init_state": self.init_state_index,
        }


def quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion -> axis-angle, same formula as robosuite/openpi (without mutating)."""
    x, y, z, w = (float(v) for v in quat)
    w = min(max(w, -1.0), 1.0)
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return np.array([x, y, z]) * 2.0 * math.acos(w) / den


def _speed_up_rendering(sim: Any) -> None:
    """Shadows, reflections, the skybox and 4x multisampling dominate software (llvmpipe) rendering
    time and carry no task information: switch them off in the offscreen scene (~2.5x more steps/s
    from the flags, then ~2x less time per camera without multisampling). The sample count is
    fixed when the GL context's buffers are made, so those are rebuilt."""
    import mujoco

    ctx = sim._render_context_offscreen
    for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX):
        ctx.scn.flags[flag] = 0
    if sim.model._model.vis.quality.offsamples != 0:
        sim.model._model.vis.quality.offsamples = 0
        ctx.gl_ctx.make_current()
        ctx.con.free()
        ctx._set_mujoco_context_and_buffers()
