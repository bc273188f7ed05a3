"""The tabletop suite as a gym env: API conformance, observation format, layouts, bad input."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from omegaconf import OmegaConf

import sim
from sim import factory
from sim.spaces import ACTION_DIM, CAMERAS, STATE_DIM
from sim.tabletop import TASKS, scene
from sim.tabletop.env import TabletopEnv


@pytest.fixture(scope="module")
def env():
    e = TabletopEnv(task="place_red_on_blue_plate", split="heldout")
    yield e
    e.close()


@pytest.fixture(scope="module")
def blind_env():
    e = TabletopEnv(task="stack_red_on_green", cameras=False)
    yield e
    e.close()


def _full_state(e: TabletopEnv) -> np.ndarray:
    d = e.unwrapped.data
    return np.concatenate([d.qpos, d.qvel, d.mocap_pos.ravel(), d.mocap_quat.ravel(), d.ctrl, [d.time]])


# ---------------------------------------------------------------- gym API
@pytest.mark.filterwarnings("ignore:.*infinity.*")  # agent_pos is unbounded by design (sim/spaces.py)
@pytest.mark.filterwarnings("ignore:.*not having a spec.*")  # covered by the gym.make test below
@pytest.mark.parametrize("cameras", [True, False])
def test_check_env_passes(cameras):
    e = TabletopEnv(task="push_green_right", cameras=cameras)
    try:
        check_env(e)
    finally:
        e.close()


@pytest.mark.filterwarnings("ignore:.*infinity.*")
def test_check_env_through_gym_make():
    e = gym.make(sim.TABLETOP_ID, task="green_in_bowl", image_size=(64, 96))
    try:
        check_env(e.unwrapped)
        obs, info = e.reset(seed=0)
        assert obs["pixels"]["agentview"].shape == (64, 96, 3)
        assert e.render().shape == (64, 96, 3)
        assert e.unwrapped.task == e.unwrapped.task_description == info["task"] == "put the green cube in the bowl"
    finally:
        e.close()


def test_observation_format(env):
    obs, info = env.reset(seed=0, options={"layout": 0})
    assert set(obs["pixels"]) == set(CAMERAS)
    for img in obs["pixels"].values():
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert obs["agent_pos"].shape == (STATE_DIM,) and obs["agent_pos"].dtype == np.float32
    np.testing.assert_allclose(obs["agent_pos"][:3], scene.HOME_TCP, atol=1e-3)
    np.testing.assert_allclose(obs["agent_pos"][6:], [scene.FINGER_OPEN, -scene.FINGER_OPEN], atol=1e-3)
    assert info == {"is_success": False, "task": "put the red cube on the blue plate", "layout": 0}
    assert env.metadata["render_fps"] == 20


def test_agentview_is_upright(env):
    """The backdrop (grey-blue) is at the top of the image, the wooden table at the bottom."""
    obs, _ = env.reset(seed=0, options={"layout": 0})
    img = obs["pixels"]["agentview"].astype(int)
    top, bottom = img[:4].reshape(-1, 3).mean(0), img[-4:].reshape(-1, 3).mean(0)
    assert top[2] > top[0]  # backdrop: more blue than red
    assert bottom[0] > bottom[2] + 40  # table: clearly more red than blue


def test_actions_move_the_gripper_and_jaw(blind_env):
    obs, _ = blind_env.reset(seed=0, options={"layout": 0})
    action = np.array([1, 0, -1, 0, 0, 0.5, 1], dtype=np.float32)
    for _ in range(10):
        obs2, *_ = blind_env.step(action)
    delta = obs2["agent_pos"][:3] - obs["agent_pos"][:3]
    assert delta[0] > 0.1 and delta[2] < -0.08 and abs(delta[1]) < 0.01
    assert obs2["agent_pos"][5] > 0.5  # yawed about +z
    assert obs2["agent_pos"][6] < 0.005  # jaw closed


def test_cameras_off_gives_blank_frames_of_the_same_space(blind_env):
    obs, _ = blind_env.reset(seed=0)
    assert blind_env.observation_space.contains(obs)
    assert all(not img.any() for img in obs["pixels"].values())


def test_truncates_at_max_episode_steps():
    e = TabletopEnv(cameras=False, max_episode_steps=3)
    e.reset(seed=0)
    flags = [e.step(np.zeros(ACTION_DIM, np.float32))[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_doing_nothing_never_succeeds():
    for task in TASKS:
        e = TabletopEnv(task=task, cameras=False, max_episode_steps=5)
        for layout in range(3):
            e.reset(options={"layout": layout, "split": "heldout"})
            for _ in range(5):
                _, reward, terminated, _, info = e.step(np.zeros(ACTION_DIM, np.float32))
                assert not terminated and not info["is_success"] and reward == 0.0


# ---------------------------------------------------------------- layouts and tasks
def test_layouts_are_deterministic_per_seed_and_layout(blind_env):
    a, _ = blind_env.reset(seed=3, options={"layout": 7})
    pos_a = {n: blind_env.unwrapped.object_pos(n) for n in scene.object_names()}
    blind_env.reset(seed=99, options={"layout": 8})
    b, _ = blind_env.reset(seed=3, options={"layout": 7})
    for n in scene.object_names():
        np.testing.assert_array_equal(pos_a[n], blind_env.unwrapped.object_pos(n))
    # Without a layout option the seed is the layout; without either, np_random picks one.
    blind_env.reset(seed=11)
    assert blind_env.unwrapped.layout_index == 11
    blind_env.reset()
    assert blind_env.unwrapped.layout_index is not None


def test_train_and_heldout_layouts_use_disjoint_seeds():
    train = {scene.layout_seed("train", i) for i in range(500)}
    heldout = {scene.layout_seed("heldout", i) for i in range(500)}
    assert not train & heldout
    assert max(train) < scene.HELDOUT_SEED_OFFSET <= min(heldout)
    a, b = scene.sample_layout(scene.layout_seed("train", 0)), scene.sample_layout(scene.layout_seed("heldout", 0))
    assert a.xy != b.xy


def test_layouts_keep_objects_apart_and_push_lanes_clear():
    for seed in range(50):
        layout = scene.sample_layout(seed)
        names = list(layout.xy)
        for i, p in enumerate(names):
            for q in names[i + 1 :]:
                assert np.hypot(*np.subtract(layout.xy[p], layout.xy[q])) > 0.09, (seed, p, q)
        for cube in scene.cube_names():
            assert abs(layout.xy[cube][1]) <= scene.CUBE_Y_MAX


def test_same_layout_different_instructions():
    """Every task runs on the same layouts (all objects present); only the instruction differs."""
    placements, instructions = set(), set()
    for task in TASKS:
        e = TabletopEnv(task=task, cameras=False)
        _, info = e.reset(seed=0, options={"layout": 4})
        placements.add(tuple(np.round(np.concatenate([e.object_pos(n) for n in scene.object_names()]), 6)))
        instructions.add(info["task"])
    assert len(placements) == 1
    assert len(instructions) == len(TASKS) >= 10
    assert len({t.family for t in TASKS.values()}) >= 3


def test_factory_protocol():
    cfg = OmegaConf.load("configs/env/tabletop.yaml")
    assert factory.task_names(cfg) == list(TASKS)
    cfg.tasks = ["stack_red_on_green", 0]
    assert factory.task_names(cfg) == ["stack_red_on_green", "place_red_on_blue_plate"]
    cfg.split, cfg.layout_offset = "heldout", 10
    assert factory.reset_options(cfg, "stack_red_on_green", 2) == {"layout": 12, "split": "heldout"}
    cfg.num_layouts = 2  # many episodes on a few layouts
    assert [factory.reset_options(cfg, 0, i)["layout"] for i in range(5)] == [10, 11, 10, 11, 10]
    cfg.num_layouts = 0
    with pytest.raises(ValueError, match="num_layouts"):
        factory.reset_options(cfg, 0, 0)
    e = factory.make_env(cfg, "stack_red_on_green", cameras=False)
    assert e.unwrapped.split == "heldout" and e.unwrapped.task_name == "stack_red_on_green"
    e.close()


# ---------------------------------------------------------------- bad input
def test_unknown_task_lists_valid_tasks():
    with pytest.raises(ValueError, match="unknown tabletop task 'put_it_away'.*stack_red_on_green"):
        TabletopEnv(task="put_it_away", cameras=False)
    cfg = OmegaConf.create({"suite": "tabletop", "tasks": ["nope"]})
    with pytest.raises(ValueError, match="Valid tasks: place_red_on_blue_plate"):
        factory.task_names(cfg)
    with pytest.raises(ValueError, match="out of range"):
        factory.task_names(OmegaConf.create({"suite": "tabletop", "tasks": [99]}))


def test_bad_config_and_reset_options(caplog):
    with pytest.raises(ValueError, match="unknown split 'test'"):
        TabletopEnv(split="test", cameras=False)
    e = TabletopEnv(cameras=False)
    # A misspelt option is logged, not silently taken; the env falls back to the seed's layout.
    _, info = e.reset(seed=5, options={"layuot": 1})
    assert "ignoring reset options ['layuot']" in caplog.text and info["layout"] == 5
    with pytest.raises(ValueError, match="layout index"):
        e.reset(options={"layout": -1})
    with pytest.raises(RuntimeError, match="reset"):
        TabletopEnv(cameras=False).step(np.zeros(ACTION_DIM, np.float32))


@pytest.mark.parametrize(
    "action",
    [np.zeros(6), np.zeros((1, 7)), np.zeros(8), [0, 0, 0, np.nan, 0, 0, 0], [np.inf, 0, 0, 0, 0, 0, 0],
     [0] * 6 + [-np.inf]],
    ids=["short", "batched", "long", "nan", "inf", "-inf"],
)
def test_bad_actions_raise_and_leave_state_unchanged(blind_env, action):
    blind_env.reset(seed=0, options={"layout": 1})
    blind_env.step(np.full(ACTION_DIM, 0.3, np.float32))  # some non-trivial state first
    before = _full_state(blind_env)
    with pytest.raises(ValueError, match="shape|NaN or Inf"):
        blind_env.step(action)
    np.testing.assert_array_equal(before, _full_state(blind_env))


def test_out_of_range_actions_are_clipped(blind_env):
    blind_env.reset(seed=0, options={"layout": 1})
    a, *_ = blind_env.step(np.array([5, 0, 0, 0, 0, 0, 0], np.float32))
    blind_env.reset(seed=0, options={"layout": 1})
    b, *_ = blind_env.step(np.array([1, 0, 0, 0, 0, 0, 0], np.float32))
    np.testing.assert_array_equal(a["agent_pos"], b["agent_pos"])


def test_rendering_speed_loose_lower_bound(env):
    """The real number comes from `vla bench env-speed`; this only catches gross regressions."""
    env.reset(seed=0, options={"layout": 0})
    action = np.zeros(ACTION_DIM, np.float32)
    env.step(action)
    start = time.perf_counter()
    for _ in range(30):
        env.step(action)
    assert 30 / (time.perf_counter() - start) >= 30


def test_start_jitter_moves_the_gripper_start_per_layout_and_the_expert_still_succeeds():
    """env.start_jitter: the start is home + a per-layout offset (same layout, same start; within
    the bound; z unchanged), set through the env config; the scripted expert copes with it."""
    from sim.experts import make_expert
    from sim.experts.evaluate import run_episode
    from sim.tabletop.scene import HOME_TCP

    cfg = OmegaConf.load("configs/env/tabletop.yaml")
    assert cfg.start_jitter == 0.0
    cfg.start_jitter = 0.12
    env = factory.make_env(cfg, "stack_yellow_on_red", cameras=False).unwrapped
    starts = []
    for layout in (0, 1, 0):
        env.reset(options={"layout": layout})
        starts.append(env.tcp_pos())
    assert np.allclose(starts[0], starts[2]) and not np.allclose(starts[0], starts[1])
    for start in starts:
        offset = start - HOME_TCP
        assert np.abs(offset[:2]).max() <= 0.12 + 0.005 and abs(offset[2]) < 0.005
    assert max(np.linalg.norm(s[:2] - HOME_TCP[:2]) for s in starts) > 0.02
    expert = make_expert(env)
    for layout in range(3):
        assert run_episode(env, expert, {"layout": layout}, seed=layout)[0]
    env.close()
    home = factory.make_env(OmegaConf.load("configs/env/tabletop.yaml"), 0, cameras=False).unwrapped
    home.reset(options={"layout": 1})
    assert np.allclose(home.tcp_pos(), HOME_TCP, atol=0.005)
    with pytest.raises(ValueError, match="start_jitter must be in"):
        TabletopEnv(start_jitter=0.5, cameras=False)
