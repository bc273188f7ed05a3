"""`vla collect` on the real tabletop suite: round trip, resume, workers, bad input.

The SIGKILL test lives in test_collect_sigkill.py; store-level crash tests in test_dataset.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from sim.collect import collect, compose_config, make_plan, record_episode
from sim.dataset import SAMPLE_VIDEO_DIR, SUMMARY_JSON, SUMMARY_MD, read_fingerprint, read_ledger
from sim.experts import make_expert
from sim.factory import make_env
from sim.spaces import ACTION_KEY, CAMERAS, OBS_IMAGE_KEYS, OBS_STATE_KEY

REPO = Path(__file__).resolve().parents[2]
PUSH_TASKS = "[push_red_left,push_green_right]"


def run_collect(tmp_path: Path, name: str, *overrides: str):
    cfg = compose_config(["env=tabletop", "env.image_size=[64,64]", f"root={tmp_path / name}", *overrides])
    return collect(cfg, tmp_path / f"run_{name}_{len(list(tmp_path.glob(f'run_{name}_*')))}")


class _FlakyExpert:
    """The tabletop expert, except it idles (so fails) on odd layouts: a deterministic failure path."""

    def __init__(self, env):
        self.env, self.inner = env, make_expert(env)

    def reset(self) -> None:
        self.inner.reset()
        self.idle = self.env.unwrapped.layout_index % 2 == 1

    def act(self, obs) -> np.ndarray:
        return np.zeros(7, np.float32) if self.idle else self.inner.act(obs)


def flaky_expert(env) -> _FlakyExpert:
    return _FlakyExpert(env)


def read_through_dataloader(root: Path) -> dict[str, np.ndarray]:
    """Everything in the dataset as numpy, read the way training reads it: LeRobotDataset + DataLoader.

    num_workers=0: lerobot's torchcodec reader failed in *forked* DataLoader workers of the process
    that wrote the dataset (lerobot 0.6.1 / torchcodec 0.11); in-process reading is fine.
    """
    import torch

    from sim.dataset import open_dataset

    loader = torch.utils.data.DataLoader(open_dataset(root), batch_size=16, num_workers=0, shuffle=False)
    keys = ["agentview", "wrist", "state", "action", "episode_index", "frame_index", "task"]
    out: dict[str, list] = {k: [] for k in keys}
    specs = set()
    for b in loader:
        for cam in CAMERAS:
            x = b[OBS_IMAGE_KEYS[cam]]
            specs.add((cam, x.dtype, tuple(x.shape[1:]), bool(x.min() >= 0.0 and x.max() <= 1.0)))
            out[cam].append((x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy())
        for name, key in [("state", OBS_STATE_KEY), ("action", ACTION_KEY)]:
            specs.add((name, b[key].dtype, tuple(b[key].shape[1:]), True))
            out[name].append(b[key].numpy())
        out["episode_index"].append(b["episode_index"].numpy())
        out["frame_index"].append(b["frame_index"].numpy())
        out["task"].append(np.array(b["task"]))
    data = {k: np.concatenate(v) for k, v in out.items()}
    data["specs"] = specs
    return data


def test_round_trip_through_lerobot_dataset_and_dataloader(tabletop_dataset):
    import torch

    d = read_through_dataloader(tabletop_dataset)
    assert d["specs"] == {
        ("agentview", torch.float32, (3, 64, 64), True), ("wrist", torch.float32, (3, 64, 64), True),
        ("state", torch.float32, (8,), True), ("action", torch.float32, (7,), True),
    }
    fp = read_fingerprint(tabletop_dataset)
    env_cfg = OmegaConf.create(fp["env_config"])
    kept = [a for a in read_ledger(tabletop_dataset) if a.kept]
    assert Counter(a.task for a in kept) == {"place_red_on_blue_plate": 2, "red_in_bowl": 2, "push_red_left": 2}
    assert sorted(a.dataset_episode for a in kept) == list(range(6)) == sorted(set(d["episode_index"]))
    for a in kept:
        rows = d["episode_index"] == a.dataset_episode
        assert rows.sum() == a.length and (d["frame_index"][rows] == np.arange(a.length)).all()
        assert set(d["task"][rows]) == {a.instruction}
        # Ground truth: replay the same (task, episode) with the expert; sim + expert are deterministic.
        env = make_env(env_cfg, a.task)
        truth = record_episode(env, make_expert(env), env_cfg, a.task, a.episode, fp["seed"])
        env.close()
        assert truth.attempt.seed == a.seed and truth.attempt.success
        np.testing.assert_array_equal(d["state"][rows], truth.state)
        np.testing.assert_array_equal(d["action"][rows], truth.action)
        for cam in CAMERAS:  # lossy video: close, not equal
            err = np.abs(d[cam][rows].astype(np.float32) - truth.images[cam].astype(np.float32)).mean()
            assert err < 6.0, (a.task, a.episode, cam, err)
    assert OBS_IMAGE_KEYS["wrist"] in fp["features"] and fp["features"][ACTION_KEY]["shape"] == [7]
    assert fp["features"][OBS_STATE_KEY]["shape"] == [8] and fp["fps"] == 20


def test_resume_completes_to_the_requested_count_without_duplicates(tmp_path, capsys):
    common = (f"tasks={PUSH_TASKS}", "workers=0", "commit_interval_s=0")
    first = run_collect(tmp_path, "ds", "episodes_per_task=1", *common)
    assert first.summary["total_episodes"] == 2
    second = run_collect(tmp_path, "ds", "episodes_per_task=2", *common)
    assert [(a.task, a.episode) for a in second.attempts] == [("push_red_left", 1), ("push_green_right", 1)]

    ledger = read_ledger(second.root)
    keys = [(a.task, a.episode) for a in ledger]
    assert len(keys) == len(set(keys)) == 4
    assert Counter(a.task for a in ledger if a.kept) == {"push_red_left": 2, "push_green_right": 2}
    assert sorted(a.dataset_episode for a in ledger) == [0, 1, 2, 3]
    # Summary + one sample video per task, in the run dir and in the dataset.
    for base in (tmp_path / "run_ds_1", second.root / "meta"):
        summary = json.loads((base / "vla_summary.json").read_text())
        assert summary["total_episodes"] == 4 and summary["fps"] == 20
        assert {t["task"]: t["episodes"] for t in summary["tasks"]} == {"push_red_left": 2, "push_green_right": 2}
        assert summary["tasks"][0]["instruction"] == "push the red cube to the left"
    assert "| push_red_left | push the red cube to the left | 2 |" in (second.root / SUMMARY_MD).read_text()
    assert sorted(p.name for p in second.video_paths) == ["push_green_right.mp4", "push_red_left.mp4"]
    assert all(p.stat().st_size > 0 for p in second.video_paths)
    in_root = sorted(p.name for p in (second.root / SAMPLE_VIDEO_DIR).iterdir())
    assert in_root == ["push_green_right.mp4", "push_red_left.mp4"]
    out = capsys.readouterr().out
    assert "push_red_left" in out and "this run: attempted" in out and "reproduce: vla collect env=tabletop" in out
    assert not (tmp_path / ".ds.collect" / "next").exists() and not list((tmp_path / ".ds.collect/staging").iterdir())

    # The same root with other camera sizes: refused before anything is written, naming the change.
    with pytest.raises(ValueError) as err:
        run_collect(tmp_path, "ds", "episodes_per_task=3", "env.image_size=[32,32]", *common)
    assert "features.observation.images.agentview.shape: [64, 64, 3] in the dataset, [32, 32, 3] now" in str(err.value)
    assert "env_config.image_size: [64, 64] in the dataset, [32, 32] now" in str(err.value)
    assert len(read_ledger(second.root)) == 4 and json.loads((second.root / SUMMARY_JSON).read_text())


def test_workers_2_record_the_same_episodes_as_workers_1(tmp_path):
    # Odd layouts fail (flaky expert), so each task needs indices 0, 1 (dropped), 2 for N=2.
    common = ("episodes_per_task=2", f"tasks={PUSH_TASKS}", "expert=test_collect:flaky_expert", "max_steps=30")
    one = run_collect(tmp_path, "w1", "workers=1", *common)
    two = run_collect(tmp_path, "w2", "workers=2", *common)
    expected = {(t, i, i != 1) for t in ("push_red_left", "push_green_right") for i in range(3)}
    ledgers = [read_ledger(r.root) for r in (one, two)]
    for ledger in ledgers:
        assert {(a.task, a.episode, a.kept) for a in ledger} == expected
    from sim.dataset import open_dataset

    actions = []
    for r, ledger in zip((one, two), ledgers):
        hf = open_dataset(r.root).hf_dataset
        by_ep = {a.key: a.dataset_episode for a in ledger if a.kept}
        ep_col = np.array(hf["episode_index"])
        act = np.stack(hf[ACTION_KEY])
        actions.append({k: act[ep_col == e] for k, e in by_ep.items()})
    for key in actions[0]:
        np.testing.assert_array_equal(actions[0][key], actions[1][key])


def test_unknown_env_lists_the_valid_ones(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vla.cli", "collect", "env=tabletopp", f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    assert proc.returncode != 0
    assert "Could not find 'env/tabletopp'" in proc.stderr and "tabletop" in proc.stderr


def test_bad_tasks_and_counts_are_clear_errors():
    with pytest.raises(ValueError, match="unknown task 'push_red_lft'. Did you mean 'push_red_left'.*Valid tasks"):
        make_plan(compose_config(["env=tabletop", "tasks=[push_red_lft]"]))
    with pytest.raises(ValueError, match=r"episodes_per_task=0 is out of range \[1, inf\]"):
        make_plan(compose_config(["env=tabletop", "episodes_per_task=0"]))
    with pytest.raises(ValueError, match="env.suite 'nope' is not a known suite. Valid suites: tabletop"):
        make_plan(compose_config(["env=tabletop", "env.suite=nope"]))
    plan = make_plan(compose_config(["env=tabletop", "tasks='push_red_left,red_in_bowl'"]))
    assert plan.tasks == ["push_red_left", "red_in_bowl"]
    assert plan.root == Path("outputs/datasets/tabletop").absolute() and plan.repo_id == "local/vla_tabletop"
    assert plan.fps == 20 and plan.max_attempts_per_task == 2 * plan.episodes_per_task + 10


def test_rollout_video_shows_both_cameras_side_by_side_under_the_instruction(tmp_path):
    import av

    from sim.video import compose_frame, write_rollout_video

    frames = {"agentview": np.full((5, 64, 64, 3), 200, np.uint8), "wrist": np.full((5, 64, 64, 3), 50, np.uint8)}
    frame = compose_frame({c: v[0] for c, v in frames.items()}, "put the red cube on the blue plate", scale=2)
    banner = frame.shape[0] - 128
    assert frame.shape[1] == 256 and banner > 0 and frame.shape[0] % 2 == 0
    assert (frame[banner:, :128] == 200).all() and (frame[banner:, 128:] == 50).all()
    assert frame[:banner].max() == 255  # white text drawn on the dark banner
    path = write_rollout_video(tmp_path / "v.mp4", frames, "put the red cube on the blue plate", fps=20, label="ep 0")
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert (stream.frames, stream.width, stream.codec_context.name) == (5, 256, "h264")
    with pytest.raises(ValueError, match="different frame counts"):
        write_rollout_video(tmp_path / "w.mp4", {"a": frames["wrist"], "b": frames["wrist"][:3]}, "x", 20)


def test_keep_failed_records_failed_attempts_as_episodes(tmp_path):
    result = run_collect(
        tmp_path, "kf", "episodes_per_task=2", "tasks=[push_red_left]", "workers=0", "keep_failed=true",
        "expert=test_collect:flaky_expert", "max_steps=30", "videos=false",
    )
    ledger = read_ledger(result.root)
    assert [(a.episode, a.success, a.kept, a.dataset_episode) for a in ledger] == [(0, True, True, 0), (1, False, True, 1)]
    assert ledger[1].length == 30
    task = result.summary["tasks"][0]
    assert (task["episodes"], task["attempted"], task["success_rate"]) == (2, 2, 0.5)


def test_expert_options_slow_the_demos_and_are_part_of_the_dataset_identity(tmp_path):
    common = ("tasks=[push_red_left]", "workers=0", "videos=false", "episodes_per_task=1")
    fast = run_collect(tmp_path, "fast", *common)
    slow = run_collect(tmp_path, "slow", *common, "+expert_kwargs.max_speed=0.5")
    assert slow.summary["expert_success_rate"] == 1.0
    data = read_through_dataloader(slow.root)
    translation = np.abs(data[ACTION_KEY][:, :3])
    assert translation.max() <= 0.5 + 1e-6 and translation.max() > 0.45  # saturates at the new limit
    assert slow.summary["total_frames"] > 1.5 * fast.summary["total_frames"]  # ~half speed, ~2x frames
    assert read_fingerprint(slow.root)["expert"] == "sim.experts:make_expert(max_speed=0.5)"
    assert read_fingerprint(fast.root)["expert"] == "sim.experts:make_expert"  # unchanged without options
    assert "+expert_kwargs.max_speed=0.5" in slow.summary["reproduce"]
    # Appending with other expert options would mix two behaviours in one dataset: refused.
    with pytest.raises(ValueError, match=r"expert: .*max_speed=0.5.* in the dataset"):
        run_collect(tmp_path, "slow", *common[:-1], "episodes_per_task=2", "+expert_kwargs.max_speed=0.8")
    with pytest.raises(ValueError, match=r"max_speed must be in \(0, 1\]"):
        run_collect(tmp_path, "bad", *common, "+expert_kwargs.max_speed=2.0")


def test_noisy_expert_demos_are_reproducible_per_episode(tmp_path):
    """Expert noise is seeded per episode: the same command records the same actions, and an
    episode's actions do not depend on which episodes ran before it in the same worker."""
    common = ("tasks=[push_red_left]", "workers=0", "videos=false", "+expert_kwargs.noise=0.5")
    runs = [read_through_dataloader(run_collect(tmp_path, name, *common, f"episodes_per_task={n}").root)
            for name, n in (("a", 2), ("b", 2), ("c", 1))]
    np.testing.assert_array_equal(runs[0][ACTION_KEY], runs[1][ACTION_KEY])
    first = runs[0]["episode_index"] == 0
    np.testing.assert_array_equal(runs[0][ACTION_KEY][first], runs[2][ACTION_KEY])
    assert not np.array_equal(runs[0][ACTION_KEY][first][:5], runs[0][ACTION_KEY][~first][:5])  # noise differs per episode


def test_intended_action_labels_record_the_noise_free_expert_on_the_noisy_trajectory(tmp_path):
    """DART-style demos: the env executes the noisy action (same states as a noisy demo), the
    dataset holds what the expert meant; the label choice is part of the dataset identity."""
    common = ("tasks=[push_red_left]", "workers=0", "videos=false", "episodes_per_task=1", "+expert_kwargs.noise=0.5")
    executed = read_through_dataloader(run_collect(tmp_path, "executed", *common).root)
    intended_run = run_collect(tmp_path, "intended", *common, "action_label=intended")
    intended = read_through_dataloader(intended_run.root)
    np.testing.assert_array_equal(executed["state"], intended["state"])  # same trajectory
    assert not np.allclose(executed[ACTION_KEY][:, :3], intended[ACTION_KEY][:, :3])
    np.testing.assert_array_equal(executed[ACTION_KEY][:, 6], intended[ACTION_KEY][:, 6])  # jaw is never noisy
    # Without noise the expert means what it does: both labellings record the same actions.
    clean = [read_through_dataloader(run_collect(tmp_path, f"clean_{label}", *common[:4], f"action_label={label}").root)
             for label in ("executed", "intended")]
    np.testing.assert_array_equal(clean[0][ACTION_KEY], clean[1][ACTION_KEY])
    assert read_fingerprint(intended_run.root)["action_label"] == "intended"
    assert "action_label" not in read_fingerprint(tmp_path / "executed")  # old datasets still match
    assert "action_label=intended" in intended_run.summary["reproduce"]
    with pytest.raises(ValueError, match="action_label"):  # appending the other kind of label: refused
        run_collect(tmp_path, "intended", *common[:3], "episodes_per_task=2", common[4])
    with pytest.raises(ValueError, match="action_label 'clean' is not one of: executed, intended"):
        run_collect(tmp_path, "bad", *common, "action_label=clean")


def test_a_large_backlog_is_written_in_slices(tmp_path, monkeypatch, capsys):
    """Staged episodes go into the dataset COMMIT_MAX_EPISODES at a time (the bar shows progress),
    and the result is the same complete dataset."""
    import sim.collect

    monkeypatch.setattr(sim.collect, "COMMIT_MAX_EPISODES", 2)
    result = run_collect(tmp_path, "sliced", "tasks=[push_red_left]", "workers=0", "videos=false",
                         "episodes_per_task=5", "commit_interval_s=1000")
    assert result.summary["this_run"]["commits"] == 3  # 2 + 2 + 1, all at the end (interval never reached)
    assert sorted(a.dataset_episode for a in read_ledger(result.root) if a.kept) == list(range(5))
    assert "written 5" in capsys.readouterr().err


def test_start_jitter_is_part_of_the_dataset_identity_only_when_set():
    """A dataset recorded from jittered starts must not be appended to from home starts; at 0 the
    fingerprint is the same as before the option existed."""
    home = make_plan(compose_config(["env=tabletop"])).fingerprint()
    jittered = make_plan(compose_config(["env=tabletop", "env.start_jitter=0.12"])).fingerprint()
    assert "start_jitter" not in home["env_config"]
    assert jittered["env_config"]["start_jitter"] == 0.12 and jittered != home


def test_the_dataset_records_its_robot(tabletop_dataset):
    """meta/vla_embodiment.json: training reads the action kind and limits from it, not a guess."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    from vla.training.data import dataset_embodiment

    robot = dataset_embodiment(LeRobotDatasetMetadata("local/vla_tabletop", root=tabletop_dataset))
    assert (tabletop_dataset / "meta" / "vla_embodiment.json").is_file()
    assert robot.action_kind == "delta_eef" and robot.camera_names == ["agentview", "wrist"]
    assert robot.limits[0].tolist() == [-1.0] * 7 and robot.gripper_dims == (6,)
    assert robot.eef_position_dims == (0, 1, 2)
