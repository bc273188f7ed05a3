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


def test_augmentation_is_reproducible_and_keeps_shapes():
    images = torch.rand(3, 3, 16, 16)
    out = []
    for _ in range(2):
        batch = {"cam": images.clone()}
        data.augment_images(batch, ["cam"], torch.Generator().manual_seed(0), shift=2, brightness=0.1, contrast=0.1)
        out.append(batch["cam"])
    assert out[0].shape == images.shape and torch.equal(out[0], out[1]) and not torch.equal(out[0], images)
    assert out[0].min() >= 0 and out[0].max() <= 1
