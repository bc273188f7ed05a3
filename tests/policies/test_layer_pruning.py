"""EfficientVLA layer pruning (policies/layer_pruning.py, vla/prune.py) on constructed models.

A decoder layer whose attention output projection and MLP down projection are zero returns its
input unchanged (x_{l+1} = x_l, so cos = 1 and I(l) = 0): pruning must remove exactly those layers,
and since they were identities the pruned policy must predict the same actions.
"""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from _policy_helpers import STATS, TINY, fake_batch, noise_for, tiny_config
from policies.layer_pruning import keep_count, layer_importance, least_important, prune_policy, remove_layers
from policies.modeling_vla import CheckpointError, VLAPolicy

FIVE_LAYERS = {**TINY, "backbone": {**TINY["backbone"], "num_layers": 5}}


def make_identity(policy, index: int) -> None:
    layer = policy.model.backbone.lm.layers[index]
    with torch.no_grad():
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()


def five_layer_policy(compressor="none", identity=(1, 3)):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny_config(compressor, model=FIVE_LAYERS)).eval()
    for i in identity:
        make_identity(policy, i)
    return policy


def test_prune_removes_the_near_identity_layers_and_keeps_the_actions(tmp_path):
    from policies.processor_vla import make_vla_pre_post_processors
    from vla.checkpoint import load_checkpoint, save_checkpoint

    policy = five_layer_policy()
    batch, noise = fake_batch(policy.config, with_action=False), noise_for(policy.config)
    before = policy.predict_action_chunk(batch, noise=noise)
    fingerprint = policy.config.fingerprint()

    report = prune_policy(policy, [batch, fake_batch(policy.config, seed=3, with_action=False)], keep_layers=3)
    assert report["importance"][1] == pytest.approx(0.0, abs=1e-9)
    assert report["importance"][3] == pytest.approx(0.0, abs=1e-9)
    assert min(report["importance"][i] for i in (0, 2, 4)) > 1e-4
    assert report["removed"] == [1, 3] and report["kept"] == [0, 2, 4]
    assert len(policy.model.backbone.lm.layers) == 3
    assert policy.config.backbone.num_layers == 3 and policy.config.backbone.removed_layers == [1, 3]
    assert policy.config.fingerprint() != fingerprint
    torch.testing.assert_close(policy.predict_action_chunk(batch, noise=noise), before, rtol=1e-5, atol=1e-6)

    pre, post = make_vla_pre_post_processors(policy.config, dataset_stats=STATS)
    save_checkpoint(tmp_path / "pruned", policy, pre, post)
    saved = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert saved["backbone"]["num_layers"] == 3 and saved["backbone"]["removed_layers"] == [1, 3]
    loaded = load_checkpoint(tmp_path / "pruned")
    assert len(loaded.policy.model.backbone.lm.layers) == 3
    assert loaded.policy.config.fingerprint() == policy.config.fingerprint()
    torch.testing.assert_close(loaded.policy.predict_action_chunk(batch, noise=noise), before, rtol=1e-5, atol=1e-6)
    with pytest.raises(CheckpointError, match="backbone.num_layers: checkpoint 3 != requested 5"):
        load_checkpoint(tmp_path / "pruned", config=tiny_config("none", model=FIVE_LAYERS))


def test_importance_is_computed_from_the_hidden_states():
    policy = five_layer_policy(identity=())
    batches = [fake_batch(policy.config, with_action=False)]
    first = layer_importance(policy, batches)["importance"]
    assert all(i > 1e-4 for i in first)
    make_identity(policy, 2)  # only layer 2 changes: its I(l) drops to 0, the layers before are untouched
    second = layer_importance(policy, batches)["importance"]
    assert second[2] == pytest.approx(0.0, abs=1e-9)
    assert second[:2] == pytest.approx(first[:2], rel=1e-9)
    with torch.no_grad():  # a layer that rewrites its input more counts as more important
        policy.model.backbone.lm.layers[0].mlp.down_proj.weight.mul_(20.0)
    assert layer_importance(policy, batches)["importance"][0] > first[0] * 2
    other = layer_importance(policy, [fake_batch(policy.config, seed=5, with_action=False)])["importance"]
    assert other != layer_importance(policy, batches)["importance"]  # depends on the calibration data


def test_pruning_a_pruned_model_records_original_indices():
    policy = five_layer_policy(identity=())
    assert remove_layers(policy, [1]) == [1]
    assert remove_layers(policy, [1, 3]) == [2, 4]  # current [0, 2, 3, 4] -> drop positions 1 and 3
    assert policy.config.backbone.removed_layers == [1, 2, 4] and policy.config.backbone.num_layers == 2
    assert [layer.self_attn.layer_idx for layer in policy.model.backbone.lm.layers] == [0, 1]
    chunk = policy.predict_action_chunk(fake_batch(policy.config, with_action=False), noise=noise_for(policy.config))
    assert torch.isfinite(chunk).all()


def test_selection_helpers_and_in_lm_guard():
    assert least_important([0.3, 0.1, 0.5, 0.1], keep=2) == [1, 3]  # not necessarily adjacent
    assert keep_count(4, keep_ratio=0.67) == 3 and keep_count(32, keep_ratio=0.875) == 28
    with pytest.raises(ValueError, match="exactly one"):
        keep_count(4, 2, 0.5)
    with pytest.raises(ValueError, match="keep_layers must be in"):
        keep_count(4, keep_layers=5)
    policy = five_layer_policy({"name": "fastv", "layer": 2, "ratio": 0.5}, identity=())
    with pytest.raises(ValueError, match="at least 3"):
        prune_policy(policy, [fake_batch(policy.config, with_action=False)], keep_layers=2)


def test_vla_prune_on_a_real_dataset(tmp_path, tabletop_dataset):
    """`vla prune` end to end: real dataset frames through the checkpoint's preprocessor, files written."""
    from policies.processor_vla import make_vla_pre_post_processors
    from vla.checkpoint import load_checkpoint, read_fingerprint, save_checkpoint
    from vla.prune import run

    policy = five_layer_policy(identity=(2,))
    pre, post = make_vla_pre_post_processors(policy.config, dataset_stats=STATS)
    save_checkpoint(tmp_path / "ckpt", policy, pre, post)
    cfg = OmegaConf.create({"checkpoint": str(tmp_path / "ckpt"), "calib": str(tabletop_dataset), "keep_layers": 4,
                            "keep_ratio": None, "calib_batches": 2, "calib_batch_size": 3, "out": None, "seed": 0,
                            "device": "cpu", "threads": None})
    report = run(cfg, tmp_path / "run", ["keep_layers=4"])
    assert report["samples"] == 6 and report["calib"] == str(tabletop_dataset)
    assert report["removed"] == [2] and report["num_layers_after"] == 4
    for name in ("layer_importance.json", "layer_importance.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert "vla prune checkpoint=" in report["reproduce"] and "keep_layers=4" in report["reproduce"]
    out = tmp_path / "run" / "checkpoint"
    assert read_fingerprint(out)["architecture"]["backbone.removed_layers"] == [2]
    assert load_checkpoint(out).policy.config.backbone.removed_layers == [2]
