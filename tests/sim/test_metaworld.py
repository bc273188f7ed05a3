"""lerobot's Meta-World (MT50) as a vla suite: the task list lerobot ships, env checker, the Sawyer as
data, metaworld.policies experts across the difficulty groups, and the commands a user runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from omegaconf import OmegaConf

import sim
from sim import factory
from sim.metaworld import task_groups
import sim.metaworld.tasks as mw_tasks

REPO = Path(__file__).resolve().parents[2]
SMALL = (48, 64)
# The `metaworld` extra is part of `make install` (CI): a missing package fails these tests, never skips them.


def env_cfg(**overrides):
    cfg = OmegaConf.load(REPO / "configs" / "env" / "metaworld.yaml")
    cfg.image_size = list(SMALL)
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def run_vla(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": "egl", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "vla.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_mt50_tasks_groups_and_instructions_are_lerobots():
    config = json.loads(mw_tasks.config_path().read_text())
    names = factory.task_names(env_cfg())
    assert len(names) == 50 and set(names) == set(config["TASK_DESCRIPTIONS"])
    groups = task_groups(env_cfg())
    assert {g: len(t) for g, t in groups.items()} == {"easy": 28, "medium": 11, "hard": 6, "very_hard": 5}
    assert groups == {g: config["DIFFICULTY_TO_TASKS"][g] for g in groups}
    assert mw_tasks.get_task("assembly-v3").instruction == config["TASK_DESCRIPTIONS"]["assembly-v3"]
    assert mw_tasks.get_task("metaworld-push").name == "push-v3"  # lerobot's "metaworld-<task>" spelling
    assert factory.task_names(env_cfg(tasks="very_hard")) == config["DIFFICULTY_TO_TASKS"]["very_hard"]
    assert factory.task_names(env_cfg(tasks=["reach-v3", "hard"]))[:2] == ["reach-v3", "assembly-v3"]
    with pytest.raises(ValueError, match="Did you mean 'door-open-v3'"):
        factory.task_names(env_cfg(tasks=["door-opn-v3"]))


@pytest.mark.filterwarnings("ignore:.*infinity.*", "ignore:.*not having a spec.*")
@pytest.mark.parametrize("cameras", [True, False])
def test_check_env_passes(cameras):
    from sim.metaworld.env import MetaWorldEnv

    e = MetaWorldEnv("reach-v3", image_size=SMALL, cameras=cameras)
    try:
        check_env(e)
    finally:
        e.close()


def test_observation_action_and_embodiment():
    e = gym.make(sim.METAWORLD_ID, task="pick-place-v3", image_size=SMALL)
    try:
        obs, info = e.reset(seed=0)
        base = e.unwrapped
        top = obs["pixels"]["top"]
        # Rendered at the asked size (non-square too), not 480x480 resized.
        assert top.shape == (*SMALL, 3) and top.dtype == np.uint8 and top.std() > 0
        assert base._renderer.height == SMALL[0] and base._renderer.width == SMALL[1]
        assert obs["agent_pos"].shape == (4,) and obs["agent_pos"].dtype == np.float32
        np.testing.assert_allclose(obs["agent_pos"], base.raw_obs[:4], rtol=1e-6)
        assert base.task == base.task_description == info["task"] == mw_tasks.get_task("pick-place-v3").instruction
        robot = base.embodiment
        assert (robot.state_dim, robot.action_dim, robot.action_kind) == (4, 4, "delta_eef")
        assert robot.camera_names == ["top"] and robot.gripper_dims == (3,) and robot.eef_position_dims == (0, 1, 2)
        assert factory.embodiment(env_cfg()) == robot
        with pytest.raises(ValueError, match="shape"):
            e.step(np.zeros(7, np.float32))
    finally:
        e.close()


def test_layouts_are_seeded():
    from sim.metaworld.env import MetaWorldEnv

    e = MetaWorldEnv("push-v3", cameras=False)
    try:
        a = e.reset(options={"layout": 2})[0]["agent_pos"], e.raw_obs.copy()
        b = e.reset(seed=7, options={"layout": 2})[0]["agent_pos"], e.raw_obs.copy()
        np.testing.assert_array_equal(a[1], b[1])
        e.reset(options={"layout": 2, "split": "heldout"})
        assert not np.allclose(a[1][4:7], e.raw_obs[4:7])  # the puck moved
    finally:
        e.close()


@pytest.mark.parametrize("task", ["reach-v3", "door-open-v3", "basketball-v3", "pick-place-v3", "shelf-place-v3"])
def test_experts_succeed_across_groups(task):
    from sim.experts import make_expert

    cfg = env_cfg(split="heldout")
    e = factory.make_env(cfg, task, cameras=False)
    try:
        expert = make_expert(e)
        for i in range(2):
            obs, _ = e.reset(seed=i, options=factory.reset_options(cfg, task, i))
            expert.reset()
            while True:
                obs, _, terminated, truncated, info = e.step(expert.act(obs))
                if terminated or truncated:
                    break
            assert info["is_success"], f"{task} layout {i}"
    finally:
        e.close()


def test_missing_metaworld_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "metaworld", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[metaworld\]"'):
        factory.make_env(env_cfg(), "reach-v3")


def test_experts_command_prints_tasks_and_groups(tmp_path):
    proc = run_vla("experts", "env=metaworld", "episodes_per_task=1", "tasks=[reach-v3,button-press-v3,hammer-v3,push-v3]",
                   f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    for line in ("| reach-v3 | 1 | 1 | 1.00 |", "| hammer-v3 | 1 | 1 | 1.00 |", "| **easy** (2 tasks) | 2 | 2 | 1.00 |",
                 "| **medium** (1 task) | 1 | 1 | 1.00 |", "| **hard** (1 task) | 1 | 1 | 1.00 |", "| **overall** | 4 | 4 | 1.00 |"):
        assert line in proc.stdout, line
    report = json.loads((tmp_path / "experts.json").read_text())
    assert [g["group"] for g in report["groups"]] == ["easy", "medium", "hard"]
    assert report["tasks"][0]["instruction"] == mw_tasks.get_task("reach-v3").instruction


def test_collect_writes_a_4d_dataset(tmp_path):
    root = tmp_path / "ds"
    proc = run_vla("collect", "env=metaworld", "episodes_per_task=1", "workers=0", "tasks=[reach-v3]",
                   "env.image_size=[48,64]", "videos=false", f"root={root}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    from lerobot.datasets import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata("local/vla_metaworld", root=root)
    shapes = {k: tuple(v["shape"]) for k, v in meta.features.items()}
    assert {k: shapes[k] for k in ("observation.images.top", "observation.state", "action")} == {
        "observation.images.top": (48, 64, 3), "observation.state": (4,), "action": (4,)}
    assert not any(k.startswith("observation.images.") and k != "observation.images.top" for k in shapes)
    assert meta.total_episodes == 1 and meta.fps == 80


def test_env_speed_bench_row(tmp_path):
    proc = run_vla("bench", "env-speed", "suites=[metaworld]", "steps=10", "image_size=[48,64]", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    rows = {r["cameras"]: r for r in json.loads((tmp_path / "env_speed.json").read_text())["rows"]}
    assert rows[True]["task"] == "button-press-v3" and rows[True]["steps_per_s"] > 0
