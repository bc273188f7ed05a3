"""LIBERO adapter (sim/libero): gym API, shared obs/action convention, offline setup, bad input.

One camera env is shared by the module (building LIBERO costs 5-15 s); tests that step it
reset it first, so their order does not matter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

import sim  # noqa: F401  (registers vla/Libero-v0)
from sim import spaces as vspaces
from sim.libero import init_state_ids, make_env, reset_options, task_names
from sim.libero.env import LiberoEnv
from sim.libero.suites import MAX_EPISODE_STEPS, suite_tasks

SUITE, TASK = "libero_spatial", 0
IMAGE = (64, 64)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env():
    e = gym.make("vla/Libero-v0", suite=SUITE, task=TASK, image_size=IMAGE)
    yield e.unwrapped
    e.close()


def test_check_env(env):
    from gymnasium.utils.env_checker import check_env

    check_env(env, skip_render_check=True)


def test_observation_convention_and_task_info(env):
    obs, info = env.reset(options={"init_state": 3})
    assert obs in env.observation_space
    assert set(obs["pixels"]) == set(vspaces.CAMERAS)
    for img in obs["pixels"].values():
        assert img.shape == (*IMAGE, 3) and img.dtype == np.uint8 and img.std() > 5  # rendered, not blank
    assert obs["agent_pos"].shape == (vspaces.STATE_DIM,) and obs["agent_pos"].dtype == np.float32
    # agent_pos = eef position (3) + axis-angle (3) + finger positions (2), read from the sim.
    robot = env.libero_env.robots[0]
    np.testing.assert_allclose(obs["agent_pos"][:3], env.sim.data.site_xpos[robot.eef_site_id], atol=1e-5)
    instruction = suite_tasks(SUITE)[TASK].language
    assert info["task"] == env.task == env.task_description == instruction
    assert info["init_state"] == 3 and info["is_success"] is False
    assert env.max_episode_steps == MAX_EPISODE_STEPS[SUITE] == 220
    assert env.action_space.shape == (7,)


def test_images_are_upright(env):
    """MuJoCo's reference renderer returns upright images; ours must match it, not its flip."""
    import mujoco

    obs, _ = env.reset(options={"init_state": 0})
    model, data = env.sim.model._model, env.sim.data._data
    with mujoco.Renderer(model, *IMAGE) as renderer:
        for libero_cam, cam in (("agentview", "agentview"), ("robot0_eye_in_hand", "wrist")):
            renderer.update_scene(data, camera=libero_cam)
            ref = renderer.render().astype(np.float32)
            ours = obs["pixels"][cam].astype(np.float32)
            err_upright = np.abs(ours - ref).mean()
            err_flipped = np.abs(ours[::-1] - ref).mean()
            assert err_upright < 0.5 * err_flipped, (cam, err_upright, err_flipped)


def test_offscreen_rendering_is_set_up_for_speed(env):
    """Software rendering cost: shadows/reflections/skybox off and no multisampling (the GL buffers
    were rebuilt for it, so a camera image still renders, not a blank or stale buffer)."""
    import mujoco

    scene_flags = env.sim._render_context_offscreen.scn.flags
    assert not any(scene_flags[f] for f in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                                            mujoco.mjtRndFlag.mjRND_SKYBOX))
    assert env.sim.model._model.vis.quality.offsamples == 0
    first, _ = env.reset(options={"init_state": 0})
    second, _ = env.reset(options={"init_state": 5})
    for cam in vspaces.CAMERAS:
        assert first["pixels"][cam].std() > 5
    # A different layout renders a different agentview image (the buffers are live, not frozen).
    assert np.abs(first["pixels"]["agentview"].astype(int) - second["pixels"]["agentview"]).mean() > 1


def test_step_truncates_at_max_episode_steps(env):
    env.reset(options={"init_state": 0})
    saved, env.max_episode_steps = env.max_episode_steps, 2
    try:
        noop = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32)
        _, reward, terminated, truncated, info = env.step(noop)
        assert (terminated, truncated, reward) == (False, False, 0.0)
        _, _, terminated, truncated, info = env.step(noop)
        assert (terminated, truncated, info["is_success"]) == (False, True, False)
    finally:
        env.max_episode_steps = saved


def test_init_state_selects_a_fixed_layout(env):
    a, _ = env.reset(options={"init_state": 5})
    b, _ = env.reset(options={"init_state": 7})
    c, _ = env.reset(options={"init_state": 5})
    np.testing.assert_array_equal(a["agent_pos"], c["agent_pos"])
    np.testing.assert_array_equal(a["pixels"]["agentview"], c["pixels"]["agentview"])
    assert not np.array_equal(a["pixels"]["agentview"], b["pixels"]["agentview"])
    with pytest.raises(ValueError, match="0..49"):
        env.reset(options={"init_state": 50})


@pytest.mark.parametrize(
    "action",
    [
        np.full(7, np.nan, np.float32),
        np.array([0, 0, np.inf, 0, 0, 0, 0], np.float32),
        np.zeros(6, np.float32),
        np.zeros((1, 7)),
    ],
)
def test_bad_action_raises_and_leaves_sim_untouched(env, action):
    env.reset(options={"init_state": 1})
    state, elapsed = env.sim.get_state().flatten().copy(), env._elapsed
    with pytest.raises(ValueError):
        env.step(action)
    np.testing.assert_array_equal(env.sim.get_state().flatten(), state)
    assert env._elapsed == elapsed


def test_unknown_suite_and_task_list_valid_ones():
    with pytest.raises(ValueError, match="libero_spatial.*libero_object.*libero_goal.*libero_10.*libero_90"):
        LiberoEnv(suite="libero_nope")
    with pytest.raises(ValueError, match="pick_up_the_black_bowl_on_the_stove_and_place_it_on_the_plate"):
        LiberoEnv(suite=SUITE, task="pick up the moon")
    with pytest.raises(ValueError, match=r"0\.\.9"):
        LiberoEnv(suite=SUITE, task=10)


def test_factory_protocol_without_building_the_simulator():
    ketchup = "pick_up_the_ketchup_and_place_it_in_the_basket"
    cfg = OmegaConf.create({
        "suite": "libero_object", "tasks": [2, ketchup], "image_size": [32, 48],
        "max_episode_steps": None, "init_states": {"start": 10, "stop": 13},
    })
    names = task_names(cfg)
    assert names == ["pick_up_the_salad_dressing_and_place_it_in_the_basket", ketchup]
    assert [reset_options(cfg, names[0], i)["init_state"] for i in range(4)] == [10, 11, 12, 10]
    env = make_env(cfg, names[1], cameras=False)
    assert env._env is None  # lazy: nothing built until reset
    assert env.observation_space["pixels"]["wrist"].shape == (32, 48, 3) and env.max_episode_steps == 280
    assert len(task_names(OmegaConf.create({"suite": "libero_90", "tasks": "all"}))) == 90
    assert init_state_ids([1, 3], 50) == [1, 3]
    with pytest.raises(ValueError, match="0..49"):
        init_state_ids([0, 77], 50)


def test_offline_config_is_written_without_prompting(tmp_path):
    """A fresh LIBERO_CONFIG_PATH and no stdin: hf-libero would call input() and crash."""
    config_dir = tmp_path / "libero_cfg"
    code = (
        "from sim.libero.offline import ensure_libero; ensure_libero();"
        "from libero.libero import get_libero_path, get_assets_path;"
        "import os; assert os.path.isdir(get_assets_path() + '/scenes'); print(get_libero_path('bddl_files'))"
    )
    env = {**os.environ, "LIBERO_CONFIG_PATH": str(config_dir), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    text = (config_dir / "config.yaml").read_text()
    for key in ("benchmark_root", "bddl_files", "init_states", "datasets", "assets"):
        assert f"{key}:" in text
    assert Path(out.stdout.strip().splitlines()[-1]).is_dir()
    assert "Do you want to specify" not in out.stdout


def test_missing_libero_names_the_install_command():
    # sys.modules[name] = None makes both `import libero` and find_spec("libero") fail, as if
    # hf-libero were not installed.
    code = "import sys; sys.modules['libero'] = None\nfrom sim.libero.env import LiberoEnv\nLiberoEnv('libero_spatial')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    # sim.factory.MissingExtraError (an ImportError the commands print as one line) naming the extra
    assert "MissingExtraError" in out.stderr and "pip install -e .[libero]" in out.stderr
