"""`vla train` data: dataset lookup errors, feature checks, the frame cache, the step-indexed order."""

from __future__ import annotations

import json

import pytest
import torch

from train_helpers import dataset_root, write_dataset
from vla.training import data

CAMERAS = ["observation.images.agentview", "observation.images.wrist"]


@pytest.fixture(scope="module")
def source(tabletop_dataset):
    return data.resolve_dataset(dataset_root(tabletop_dataset))


def test_missing_dataset_names_the_path_and_what_was_expected(tmp_path):
    with pytest.raises(data.DatasetError) as e:
        data.resolve_dataset(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value) and "LeRobot v3.0" in str(e.value)


def test_folder_that_is_not_a_lerobot_dataset(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(data.DatasetError, match="meta/info.json"):
        data.load_metadata(data.resolve_dataset(tmp_path))
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v2.1"}))
    with pytest.raises(data.DatasetError, match="v2.1"):
        data.load_metadata(data.resolve_dataset(tmp_path))


def test_feature_mismatch_names_the_feature(tmp_path):
    meta = data.load_metadata(data.resolve_dataset(write_dataset(tmp_path / "ds", state_dim=6, cameras=("agentview",))))
    with pytest.raises(data.DatasetError) as e:
        data.check_features(meta, CAMERAS, state_dim=8, action_dim=7)
    msg = str(e.value)
    assert "observation.images.wrist" in msg and "observation.state" in msg and "6" in msg


def test_frame_cache_serves_the_same_items_as_lerobot(source):
    meta = data.load_metadata(source)
    episodes = [1, meta.total_episodes - 1]
    cached = data.make_dataset(source, meta, chunk_size=8, episodes=episodes, cache="true")
    plain = data.make_dataset(source, meta, chunk_size=8, episodes=episodes, cache="false")
    assert isinstance(cached, data.FrameCache) and len(cached) == len(plain)
    for i in [0, 3, len(plain) // 2, len(plain) - 2, len(plain) - 1]:  # incl. padded chunk ends
        a, b = cached[i], plain[i]
        assert a.keys() >= b.keys() - {"task"} and a["task"] == b["task"]
        for key, value in b.items():
            if key != "task":
                assert a[key].dtype == value.dtype and torch.equal(a[key], value), (i, key)
    assert cached[len(plain) - 1][data.ACTION_IS_PAD][1:].all()


def test_step_sampler_is_a_pure_function_of_seed_step_and_rank():
    full = data.StepBatchSampler(10, 4, seed=3, start_step=0, steps=6)
    resumed = data.StepBatchSampler(10, 4, seed=3, start_step=4, steps=6)
    assert list(full)[4:] == list(resumed)
    stream = [i for batch in list(full)[:5] for i in batch]  # 20 draws = 2 epochs of 10
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]  # a new permutation each epoch
    other_seed = data.StepBatchSampler(10, 4, seed=4, start_step=0, steps=6)
    assert list(other_seed) != list(full)
    r0 = data.StepBatchSampler(100, 4, 0, 0, 3, rank=0, world=2)
    r1 = data.StepBatchSampler(100, 4, 0, 0, 3, rank=1, world=2)
    assert not set(r0.indices(2)) & set(r1.indices(2))


def test_step_sampler_draws_its_focus_rows_from_their_own_stream():
    focus = [0, 10, 20, 30, 40]
    full = data.StepBatchSampler(50, 4, seed=3, start_step=0, steps=10, focus=focus, focus_per_batch=2)
    resumed = data.StepBatchSampler(50, 4, seed=3, start_step=6, steps=10, focus=focus, focus_per_batch=2)
    assert list(full)[6:] == list(resumed)
    batches = list(full)
    assert all(len(b) == 4 and b[2] in focus and b[3] in focus for b in batches)
    drawn = [i for b in batches for i in b[2:]]  # 20 draws = 4 epochs of the 5 focus rows
    assert all(sorted(drawn[e * 5:(e + 1) * 5]) == focus for e in range(4))
    main = [i for b in batches for i in b[:2]]  # the main stream is still a permutation of all rows
    assert len(set(main)) == len(main)
    # off (no focus rows per batch) is exactly the sampler without a focus set
    off = data.StepBatchSampler(50, 4, seed=3, start_step=0, steps=10, focus=focus, focus_per_batch=0)
    assert list(off) == list(data.StepBatchSampler(50, 4, seed=3, start_step=0, steps=10))
    with pytest.raises(ValueError, match="focus set is empty"):
        data.StepBatchSampler(50, 4, 0, 0, 1, focus=[], focus_per_batch=1)


def test_start_rows_are_the_first_frames_of_every_episode_whatever_the_dataset_class(source):
    meta = data.load_metadata(source)
    episodes = [0, meta.total_episodes - 1]
    cached = data.make_dataset(source, meta, chunk_size=4, episodes=episodes, cache="true")
    plain = data.make_dataset(source, meta, chunk_size=4, episodes=episodes, cache="false")
    wrapped = data.make_dataset(source, meta, chunk_size=4, episodes=episodes, cache="true", keypose=data.EEF_ARM_KEYPOSE)
    rows = data.start_rows(cached, 3)
    assert rows == data.start_rows(plain, 3) == data.start_rows(wrapped, 3)
    assert len(rows) == 3 * len(episodes)
    assert sorted(int(cached[i]["frame_index"]) for i in rows) == [0, 0, 1, 1, 2, 2]


def test_augmentation_is_reproducible_and_keeps_shapes():
    images = torch.rand(3, 3, 16, 16)
    out = []
    for _ in range(2):
        batch = {"cam": images.clone()}
        data.augment_images(batch, ["cam"], torch.Generator().manual_seed(0), shift=2, brightness=0.1, contrast=0.1)
        out.append(batch["cam"])
    assert out[0].shape == images.shape and torch.equal(out[0], out[1]) and not torch.equal(out[0], images)
    assert out[0].min() >= 0 and out[0].max() <= 1


def test_keypose_target_is_the_gripper_position_at_the_next_gripper_event():
    # Episode 0: open, open, close (grasp at row 2), closed, open (release at row 4), open.
    # Episode 1: the gripper never changes: every row aims at the episode's last row.
    pos = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [10.0], [11.0], [12.0]]).expand(-1, 3)
    state = torch.cat([pos, torch.zeros(9, 5)], dim=1)
    gripper = torch.tensor([-1.0, -1, 1, 1, -1, -1, 1, 1, 1])
    action = torch.cat([torch.zeros(9, 6), gripper[:, None]], dim=1)
    episode = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1])
    target = data.keypose_targets(state, action, episode)
    next_event_row = torch.tensor([2, 2, 4, 4, 5, 5, 8, 8, 8])
    assert torch.equal(target, pos[next_event_row] - pos)


def test_keypose_targets_of_recorded_demos_point_at_the_cube_the_instruction_names(source):
    """On `vla collect` demos, the first frame's keypose is the grasp of the named cube: checked
    against the cube positions of the same scene, rebuilt from the episode's ledger entry."""
    from omegaconf import OmegaConf

    from sim.dataset import read_fingerprint, read_ledger
    from sim.factory import make_env, reset_options
    from sim.tabletop.scene import cube_names
    from sim.tabletop.tasks import TASKS

    meta = data.load_metadata(source)
    env_cfg = OmegaConf.create(read_fingerprint(source.root)["env_config"])
    cached = data.make_dataset(source, meta, chunk_size=8, cache="true", keypose=data.EEF_ARM_KEYPOSE)
    plain = data.make_dataset(source, meta, chunk_size=8, cache="false", keypose=data.EEF_ARM_KEYPOSE)
    first = {int(cached[i]["episode_index"]): cached[i] for i in range(len(cached)) if int(cached[i]["frame_index"]) == 0}
    for i in (0, len(plain) - 1):  # the same target whichever way frames are served
        assert torch.equal(cached[i][data.KEYPOSE], plain[i][data.KEYPOSE])
    picks = [a for a in read_ledger(source.root) if a.kept and TASKS[a.task].family != "push"]
    assert len(picks) >= 4  # the push family keeps its jaw closed: no grasp event to aim at
    for a in picks:
        env = make_env(env_cfg, a.task, cameras=False)
        env.reset(seed=a.seed, options=reset_options(env_cfg, a.task, a.episode))
        cubes = {name: env.unwrapped.object_pos(name)[:2] for name in cube_names()}
        env.close()
        item = first[a.dataset_episode]
        grasp = (item["observation.state"][:3] + item[data.KEYPOSE]).numpy()[:2]
        named = TASKS[a.task].obj
        assert abs(grasp - cubes[named]).max() < 0.01, (a.task, grasp, cubes)
        assert all(abs(grasp - xy).max() > 0.03 for name, xy in cubes.items() if name != named)


def test_frame_cache_at_the_model_size_serves_what_the_policy_would_see(source):
    """cache_image_size: frames are kept resized (4x less memory for 64 px from 128 px), equal to the
    policy's own input resize of the full-size frames up to uint8 rounding."""
    from policies.processor_vla import resize_images

    meta = data.load_metadata(source)
    full = data.make_dataset(source, meta, chunk_size=8, episodes=[0], cache="true")
    small = data.make_dataset(source, meta, chunk_size=8, episodes=[0], cache="true", cache_image_size=32)
    for key in CAMERAS:
        assert small.frames[key].numel() * 4 == full.frames[key].numel()
    for i in (0, len(full) - 1):
        for key in CAMERAS:
            a, b = small[i][key], full[i][key]
            assert a.shape == (3, 32, 32) and a.dtype == torch.uint8 and b.shape == (3, 64, 64)
            expected = resize_images(b[None].float() / 255, 32)[0] * 255
            assert (a.float() - expected).abs().max() <= 0.5 + 1e-4
