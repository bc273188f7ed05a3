"""Scripted tabletop experts: they solve held-out layouts, and `make_expert` dispatches on the env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sim
from sim.experts import make_expert
from sim.experts.evaluate import run_episode
from sim.experts.tabletop import TabletopExpert
from sim.tabletop import TASKS
from sim.tabletop.env import TabletopEnv

ONE_PER_FAMILY = ["place_green_on_pink_plate", "stack_yellow_on_red", "red_in_bowl", "push_green_right"]


@pytest.mark.parametrize("task", ONE_PER_FAMILY)
def test_expert_solves_heldout_layouts(task):
    env = TabletopEnv(task=task, split="heldout", cameras=False)
    expert = make_expert(env)
    assert isinstance(expert, TabletopExpert)
    for layout in range(3):
        success, steps = run_episode(env, expert, {"layout": layout}, seed=layout)
        assert success, f"{task} failed on held-out layout {layout}"
        assert steps < env.max_episode_steps


def test_expert_with_cameras_through_gym_make():
    env = gym.make(sim.TABLETOP_ID, task="stack_green_on_yellow", split="heldout")
    expert = make_expert(env)  # wrappers are unwrapped by make_expert
    obs, _ = env.reset(seed=0, options={"layout": 5})
    expert.reset()
    for _ in range(env.unwrapped.max_episode_steps):
        action = expert.act(obs)
        assert action.shape == (7,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert info["is_success"]
    env.close()


def test_noisy_expert_differs_but_still_succeeds():
    env = TabletopEnv(task="place_red_on_blue_plate", split="heldout", cameras=False)
    clean, noisy = TabletopExpert(env), TabletopExpert(env, noise=0.5, seed=1)
    trajectories = []
    for expert in (clean, noisy):
        obs, _ = env.reset(seed=0, options={"layout": 2})
        expert.reset()
        actions = []
        for _ in range(env.max_episode_steps):
            actions.append(expert.act(obs))
            obs, _, terminated, truncated, info = env.step(actions[-1])
            if terminated or truncated:
                break
        assert info["is_success"]
        trajectories.append(np.array(actions))
    assert len(trajectories[0]) != len(trajectories[1]) or not np.allclose(*trajectories)


def test_make_expert_rejects_unknown_envs():
    with pytest.raises(TypeError, match="no scripted expert for env type CartPoleEnv"):
        make_expert(gym.make("CartPole-v1"))
    with pytest.raises(TypeError, match="needs a TabletopEnv"):
        TabletopExpert(gym.make("CartPole-v1").unwrapped)


@pytest.mark.slow
def test_expert_success_at_least_95_percent_on_every_heldout_task():
    """`make test-slow`; the same numbers as `vla experts env=tabletop episodes_per_task=20`."""
    for task in TASKS:
        env = TabletopEnv(task=task, split="heldout", cameras=False)
        expert = make_expert(env)
        wins = sum(run_episode(env, expert, {"layout": i}, seed=i)[0] for i in range(20))
        assert wins >= 19, f"{task}: {wins}/20"
