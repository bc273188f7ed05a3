"""`vla eval` in-process: Wilson intervals, the expert baseline, a saved checkpoint, bad input."""

import json
import shutil
from pathlib import Path

import imageio.v2 as imageio
import pytest
from hydra import compose, initialize_config_dir

from vla.configs import CONFIG_DIR
from vla.evaluate import evaluate, make_plan, wilson_interval

TASKS = ["place_red_on_blue_plate", "push_red_left"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    from tiny_models import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def eval_cfg(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("eval", overrides=list(overrides))


def video_frames(path: str) -> int:
    with imageio.get_reader(path) as reader:
        return sum(1 for _ in reader)


@pytest.mark.parametrize(
    "k, n, lo, hi",
    # 95 % limits computed independently as the roots of the score-test quadratic
    # (p_hat - p)^2 = z^2 p (1 - p) / n, which is how Wilson (1927) defines the interval.
    [
        (5, 10, 0.2366, 0.7634),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (1, 20, 0.0089, 0.2361),
        (81, 263, 0.2553, 0.3662),
    ],
)
def test_wilson_interval_known_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    lo, hi = wilson_interval(7, 10, z=2.5758)  # 99 % is wider than 95 %
    lo95, hi95 = wilson_interval(7, 10)
    assert lo < lo95 < 0.7 < hi95 < hi


def test_expert_eval_writes_reports_and_videos(tmp_path):
    cfg = eval_cfg("checkpoint=expert", "env=tabletop", "episodes=2", f"tasks=[{','.join(TASKS)}]")
    report = evaluate(cfg, tmp_path)
    assert [r["task"] for r in report["tasks"]] == TASKS
    for row in report["tasks"]:
        assert row["episodes"] == 2 and row["success_rate"] == 1.0
        assert row["ci95"][1] == 1.0 and 0.0 < row["ci95"][0] < 1.0
        assert len(row["videos"]) == 1 and video_frames(row["videos"][0]) == row_first_length(report, row) + 1
    assert report["overall"]["success_rate"] == 1.0 and report["split"] == "heldout"
    assert report["latency_ms"]["calls"] > 0 and report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert on_disk["overall"] == report["overall"]
    md = (tmp_path / "eval.md").read_text()
    assert "| place_red_on_blue_plate | 1.00 (2/2) |" in md and "videos/place_red_on_blue_plate_ep000.mp4" in md
    assert report["reproduce"].startswith("vla eval checkpoint=expert env=tabletop episodes=2")


def row_first_length(report: dict, row: dict) -> int:
    return next(e["length"] for e in report["episodes"] if e["task"] == row["task"] and e["episode"] == 0)


def test_results_do_not_depend_on_num_envs(tmp_path):
    args = ["checkpoint=expert", "episodes=2", "tasks=[push_red_left]", "video=false"]
    serial = evaluate(eval_cfg(*args, "num_envs=1"), tmp_path / "a")
    parallel = evaluate(eval_cfg(*args, "num_envs=2"), tmp_path / "b")
    assert parallel["num_envs"] == 2
    key = lambda r: [(e["task"], e["episode"], e["seed"], e["success"], e["length"]) for e in r["episodes"]]  # noqa: E731
    assert key(serial) == key(parallel)


def test_random_checkpoint_runs_end_to_end(tmp_path, tiny_ckpt):
    ckpt = tiny_ckpt
    cfg = eval_cfg(f"checkpoint={ckpt}", "episodes=1", "tasks=[push_red_left]", "env.max_episode_steps=10")
    report = evaluate(cfg, tmp_path / "out")
    row = report["tasks"][0]
    assert row["episodes"] == 1 and 0.0 <= row["success_rate"] <= 1.0 and len(row["ci95"]) == 2
    assert report["episodes"][0]["length"] == 10  # truncated by the env's horizon
    # tiny: chunk 8, n_action_steps 4 -> 3 calls for 10 steps; per-stage timings from the policy
    assert report["latency_ms"]["calls"] == 3 and "model" in report["latency_ms"]["stages_mean"]
    assert report["visual_tokens_mean"] == 512
    assert report["policy"]["type"] == "vla" and report["policy"]["params"] > 0
    assert Path(row["videos"][0]).is_file() and video_frames(row["videos"][0]) == 11
    assert report["checkpoint"] == str(ckpt.absolute())


def test_replan_sets_calls_per_episode(tmp_path, tiny_ckpt):
    cfg = eval_cfg(f"checkpoint={tiny_ckpt}", "episodes=1", "tasks=[push_red_left]", "env.max_episode_steps=6",
                   "replan=2", "video=false")
    report = evaluate(cfg, tmp_path / "out")
    assert report["latency_ms"]["calls"] == 3 and report["replan"] == 2


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        make_plan(eval_cfg(f"checkpoint={tmp_path / 'does_not_exist'}"), tmp_path)


def test_incomplete_checkpoint_names_the_missing_file(tmp_path, tiny_ckpt):
    ckpt = Path(shutil.copytree(tiny_ckpt, tmp_path / "ckpt"))
    (ckpt / "policy_postprocessor.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing policy_postprocessor.json"):
        make_plan(eval_cfg(f"checkpoint={ckpt}"), tmp_path)


def test_unknown_task_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"Did you mean 'push_red_left'.*Valid tasks.*place_red_on_blue_plate"):
        make_plan(eval_cfg("checkpoint=expert", "tasks=[push_red_lft]"), tmp_path)


def test_bad_numbers_are_named(tmp_path):
    for override, match in [("episodes=0", "episodes"), ("num_envs=0", "num_envs"), ("replan=0", "replan")]:
        with pytest.raises(ValueError, match=match):
            make_plan(eval_cfg("checkpoint=expert", override), tmp_path)



def test_task_selection_follows_env_tasks_unless_tasks_is_given(tmp_path):
    assert make_plan(eval_cfg("checkpoint=random", "env.tasks=[push_red_left]"), tmp_path).tasks == ["push_red_left"]
    assert make_plan(eval_cfg("checkpoint=random", "env.tasks=[push_red_left]", "tasks=[red_in_bowl]"),
                     tmp_path).tasks == ["red_in_bowl"]
    assert len(make_plan(eval_cfg("checkpoint=random"), tmp_path).tasks) == 13


def test_random_baseline_is_seeded_and_fails_a_manipulation_task(tmp_path):
    import numpy as np

    from sim.tabletop.env import TabletopEnv
    from vla.runtime import RandomPolicy

    policy = RandomPolicy(TabletopEnv(cameras=False))
    draws = []
    for _ in range(2):  # the evaluator seeds numpy per episode, then resets the policy
        np.random.seed(7)
        policy.reset()
        draws.append(np.concatenate([policy.infer({})["actions"] for _ in range(3)]))
    assert np.array_equal(*draws) and draws[0].shape == (3, 7) and np.abs(draws[0]).max() <= 1.0
    report = evaluate(eval_cfg("checkpoint=random", "episodes=2", "tasks=[place_red_on_blue_plate]", "video=false",
                               "env.max_episode_steps=40"), tmp_path)
    assert report["policy"]["type"] == "random" and report["overall"]["success_rate"] == 0.0
    assert [e["length"] for e in report["episodes"]] == [40, 40]
