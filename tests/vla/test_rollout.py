"""The rollout engine (vla/rollout.py): the same per-episode results as the four loops it replaced,
and the loop's rules (re-planning, observe, step guard, action check, subscribers, worker pool).

The recorded values (rollout_golden.json) were produced by tests/vla/rollout_cases.py on the code
before the engine existed: per episode the reset seed, length, success and a hash of the actions
the env executed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import rollout_cases  # noqa: E402

from policies.embodiment import Camera, Embodiment, EmbodimentError  # noqa: E402
from vla.rollout import (  # noqa: E402
    STEP_GUARD,
    DatasetRecorder,
    EpisodeSpec,
    ExpertAgent,
    Metrics,
    Subscriber,
    Video,
    WorkerPool,
    episode_seed,
    run_episode,
)

GOLDEN = json.loads(rollout_cases.GOLDEN.read_text())
NEEDS = {"experts_aloha": "gym_aloha", "experts_metaworld": "metaworld", "libero_measure": "libero"}
FAST = ["eval_tiny", "eval_tiny_replan", "eval_expert", "eval_random", "experts_tabletop", "experts_noise",
        "record", "record_intended", "collect", "experts_aloha", "experts_metaworld", "libero_measure"]


@pytest.mark.parametrize("case", FAST)
def test_same_per_episode_results_as_before_the_engine(case):
    # The extras these cases need (NEEDS) are part of make install: a missing one fails, never skips.
    got = rollout_cases.run_case(case)
    assert got == GOLDEN[case]


def test_eval_worker_pool_gives_the_recorded_results(tmp_path):
    """num_envs=2 (forkserver workers through WorkerPool): the same episodes as the serial golden run."""
    from vla.evaluate import evaluate

    cfg = rollout_cases._compose("eval", ["video=false", "threads=1", "checkpoint=expert", "episodes=2",
                                          "tasks=[push_red_left,stack_red_on_green]", "num_envs=2"])
    report = evaluate(cfg, tmp_path)
    eps = [{k: e[k] for k in ("task", "episode", "seed", "success", "length")} for e in report["episodes"]]
    assert report["num_envs"] == 2 and eps == GOLDEN["eval_expert"]["report"]


# ── the loop's rules, on a tiny fake env ───────────────────────────────────────────────────


class CountEnv:
    """1-D state = steps taken; success after ``goal`` steps; truncates at ``horizon`` (None: never)."""

    metadata = {"render_fps": 10}

    def __init__(self, goal: int = 5, horizon: int | None = 50) -> None:
        self.goal, self.horizon = goal, horizon
        self.embodiment = Embodiment((Camera("cam", 4, 4),), 1, 2, action_low=(-1.0, -1.0), action_high=(1.0, 1.0))
        self.actions: list[np.ndarray] = []
        self.resets: list[tuple] = []

    @property
    def unwrapped(self):
        return self

    def _obs(self) -> dict:
        return {"pixels": {"cam": np.full((4, 4, 3), len(self.actions), np.uint8)},
                "agent_pos": np.array([len(self.actions)], np.float32)}

    def reset(self, seed=None, options=None):
        self.resets.append((seed, options))
        self.actions = []
        return self._obs(), {"task": "count"}

    def step(self, action):
        self.actions.append(np.asarray(action))
        n = len(self.actions)
        ok = n >= self.goal
        return self._obs(), 0.0, ok, self.horizon is not None and n >= self.horizon, {"is_success": ok}

    def close(self) -> None:
        pass


class ChunkPolicy:
    def __init__(self, chunk: int = 4, n_action_steps: int | None = None, value: float = 0.5) -> None:
        self.chunk, self.value, self.calls, self.observed = chunk, value, 0, 0
        if n_action_steps is not None:
            self.n_action_steps = n_action_steps

    def reset(self) -> None:
        self.calls = self.observed = 0

    def infer(self, obs):
        assert set(obs) == {"images", "state", "instruction"}
        self.calls += 1
        return {"actions": np.full((self.chunk, 2), self.value, np.float32), "visual_tokens": 7,
                "timing_ms": {"model": 1.0}}

    def observe(self, obs) -> None:
        self.observed += 1


def test_replan_observe_and_metrics():
    env, policy, metrics = CountEnv(goal=10), ChunkPolicy(chunk=4, n_action_steps=3), Metrics()
    r = run_episode(env, policy, EpisodeSpec("count", 0, 123, {"layout": 0}), subscribers=[metrics])
    assert (r.success, r.length, r.done, r.instruction) == (True, 10, True, "count")
    # n_action_steps=3: calls at steps 0, 3, 6, 9; every frame in between is observed (2 per full call)
    assert policy.calls == r.calls == 4 and policy.observed == 3 * 2
    assert env.resets == [(123, {"layout": 0})]
    assert len(metrics.latency_ms) == 4 and metrics.stage_ms == {"model": 4.0} and metrics.visual_tokens == 7
    r = run_episode(env, ChunkPolicy(chunk=4), EpisodeSpec("count", 0, 1), replan=2)
    assert r.calls == 5  # replan beats the chunk length


def test_actions_are_checked_against_the_robot():
    env = CountEnv(goal=3)
    run_episode(env, ChunkPolicy(value=5.0), EpisodeSpec("count", 0, 0))
    assert all(np.all(a == 1.0) and a.dtype == np.float32 for a in env.actions)  # clipped into the limits

    class Nan(ChunkPolicy):
        def infer(self, obs):
            return {"actions": np.full((2, 2), np.nan, np.float32)}

    with pytest.raises(FloatingPointError, match="non-finite"):
        run_episode(env, Nan(), EpisodeSpec("count", 0, 0))

    class Expert:
        def reset(self, seed=None):
            self.seed = seed

        def act(self, obs):
            return np.zeros(3, np.float32)  # wrong dim for the robot

    with pytest.raises(EmbodimentError, match="expected"):
        run_episode(env, ExpertAgent(Expert()), EpisodeSpec("count", 0, 0))


def test_step_guard_and_max_steps():
    env = CountEnv(goal=10**9, horizon=None)
    r = run_episode(env, ChunkPolicy(chunk=7), EpisodeSpec("count", 0, None), max_steps=12)
    assert (r.length, r.done, r.success) == (12, False, False)
    assert 0 < STEP_GUARD


def test_expert_agent_gets_the_episode_seed_and_env_observations():
    seen = []

    class Expert:
        def reset(self, seed=None):
            seen.append(seed)

        def act(self, obs):
            assert "pixels" in obs and "agent_pos" in obs
            return np.array([0.1, -0.1], np.float32)

    env, rec = CountEnv(goal=4), DatasetRecorder()
    r = run_episode(env, Expert(), EpisodeSpec("count", 2, 9, None, agent_seed=9), subscribers=[rec])
    images, states, actions = rec.arrays()
    assert seen == [9] and r.length == 4 and actions.shape == (4, 2)
    assert states[:, 0].tolist() == [0, 1, 2, 3]  # the observation *before* each step
    assert images["cam"].shape == (4, 4, 4, 3)


def test_subscriber_hooks_and_video_frames(tmp_path):
    events = []

    class Log(Subscriber):
        def on_episode_start(self, ctx, obs):
            events.append("start")

        def on_infer(self, ctx, obs, out, ms):
            events.append("infer")

        def on_step(self, ctx, obs, action, next_obs, info):
            events.append("step")

        def on_episode_end(self, ctx, result):
            events.append(f"end {result.length}")

    video = Video(tmp_path / "v.mp4", fps=5)
    run_episode(CountEnv(goal=3), ChunkPolicy(chunk=2, n_action_steps=2), EpisodeSpec("count", 0, 0),
                subscribers=[Log(), video])
    assert events == ["start", "infer", "step", "step", "infer", "step", "end 3"]
    assert len(video.frames["cam"]) == 4 and Path(video.written).stat().st_size > 0


def test_episode_seed_is_the_one_eval_and_collect_used():
    from sim.collect import episode_seed as collect_seed
    from vla.evaluate import episode_seed as eval_seed

    assert eval_seed is collect_seed is episode_seed
    assert episode_seed(0, "push_red_left", 0) == GOLDEN["eval_expert"]["report"][0]["seed"]


# ── the worker pool ─────────────────────────────────────────────────────────────────────────


def _square(x: int) -> tuple[int, int]:
    import time

    time.sleep(0.05 * (3 - x % 3))  # later jobs finish first
    return x * x, os.getpid()


def test_worker_pool_returns_results_in_job_order():
    with WorkerPool(2) as pool:
        done = []
        results = pool.map(_square, [(i,) for i in range(6)], on_result=lambda job, r: done.append(job[0]))
    assert [r[0] for r in results] == [i * i for i in range(6)] and sorted(done) == list(range(6))
    assert os.getpid() not in {r[1] for r in results}
    with WorkerPool(0) as pool:  # in this process
        assert [r[1] for r in pool.map(_square, [(1,), (2,)])] == [os.getpid()] * 2


def test_worker_pool_names_the_failed_episode():
    with pytest.raises(RuntimeError, match="episode 3 of task 't' failed in a worker: KeyError"):
        with WorkerPool(1) as pool:
            assert pool.map(_fail_job, []) == []  # nothing to do is fine
            pool.map(_fail_job, [("t", 3)])


def _fail_job(task: str, i: int) -> None:
    raise KeyError(i)
