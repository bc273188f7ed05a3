"""Token halting inside the vision tower (policies/vision_pruning.py) and accel's ``vision_prune``."""

from __future__ import annotations

import copy

import pytest
import torch

from _policy_helpers import TINY, fake_batch, tiny_policy
from policies.vision_pruning import kept_count, run_pruned_tower
from vla.accel import accel_spec, accelerate
from vla.cost import count_flops

DEEP = {**TINY, "vision": {**TINY["vision"], "num_layers": 12}}  # deep enough for accel=fast's rule


@pytest.fixture(scope="module")
def deep_policy():
    policy = tiny_policy(model=DEEP)
    policy.eval()
    return policy


def _pixels(policy, n=2):
    size = policy.config.vision.image_size
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_keeping_every_patch_is_the_full_tower(deep_policy):
    tower, pixels = deep_policy.model.vision, _pixels(deep_policy)
    with torch.no_grad():
        full = tower(pixel_values=pixels).last_hidden_state
        same = run_pruned_tower(tower, pixels, after=3, keep=1.0, query=None)
    torch.testing.assert_close(same, full)


def test_the_patches_nearest_the_instruction_run_the_rest_of_the_tower(deep_policy):
    tower, pixels = deep_policy.model.vision, _pixels(deep_policy, 1)
    vm = tower.vision_model
    with torch.no_grad():
        early = vm.embeddings(pixels)
        for layer in vm.encoder.layers[:3]:
            early = layer(early, None)
        target = 5  # the instruction "points at" patch 5: its layer-3 feature is the query
        out = run_pruned_tower(tower, pixels, after=3, keep=0.25, query=early[:, target])
        halted = vm.post_layernorm(early)
    n = early.shape[1]
    recomputed = (out - halted).abs().amax(-1)[0] > 1e-6
    assert int(recomputed.sum()) == kept_count(n, 0.25)
    assert bool(recomputed[target])  # the patch the instruction names runs the whole tower
    similarity = torch.nn.functional.cosine_similarity(early[0], early[0, target][None], dim=-1)
    assert similarity[recomputed].min() >= similarity[~recomputed].max()  # and so do the ones nearest it


def test_accel_fast_prunes_deep_towers_only_and_cuts_their_flops(deep_policy):
    spec = accel_spec("fast")
    shallow = tiny_policy()
    _, notes = accelerate(copy.deepcopy(shallow), None, {**spec.__dict__, "keep_ratio": None, "compressor": None})
    assert notes["vision_prune"] == f"off: a {TINY['vision']['num_layers']}-layer tower (< min_layers 12)"
    fast = copy.deepcopy(deep_policy)
    _, notes = accelerate(fast, None, {**spec.__dict__, "keep_ratio": None, "compressor": None, "cache_interval": 1})
    after = round(0.15 * 12)
    assert notes["vision_prune"] == f"after layer {after} of 12, keep 0.25 of the patches"
    batch = fake_batch(deep_policy.config, batch_size=1, with_action=False)
    base = count_flops(deep_policy, batch)["stages"]["vision"]
    pruned = count_flops(fast, batch)["stages"]["vision"]
    # at most after/L + (1 - after/L) * keep of the tower's FLOPs (less: attention is quadratic in the
    # patches kept), and more than the first `after` layers alone
    linear = after / 12 + (1 - after / 12) * 0.25
    assert after / 12 < pruned / base <= linear + 0.01, (pruned / base, linear)
    with torch.no_grad():
        actions = fast.predict_action_chunk(batch)
    assert torch.isfinite(actions).all()


@pytest.mark.parametrize("after, keep, message", [
    (0, 0.5, "vision.prune_after must be an integer in 1..11"),
    (12, 0.5, "vision.prune_after must be an integer in 1..11"),
    (3, 0.0, r"vision.prune_keep must be in \(0, 1\]"),
])
def test_bad_settings_are_named(after, keep, message):
    with pytest.raises(ValueError, match=message):
        tiny_policy(model={**DEEP, "vision": {**DEEP["vision"], "prune_after": after, "prune_keep": keep}})
