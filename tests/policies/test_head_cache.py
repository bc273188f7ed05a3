"""EfficientVLA action-head step cache (policies/action_heads.py, ``head.cache_interval``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from _policy_helpers import fake_batch, noise_for, tiny_config
from policies.action_heads import FlowMatchingHead, _modulate, timestep_embedding
from policies.configuration_vla import ActionHeadConfig

STEPS = 10


def make_head(**kw) -> FlowMatchingHead:
    torch.manual_seed(0)
    cfg = ActionHeadConfig(hidden_size=32, num_layers=2, num_heads=2, num_flow_steps=STEPS, **kw)
    head = FlowMatchingHead(cfg, cond_dim=48, chunk_size=8, action_dim=7).eval()
    with torch.no_grad():  # non-trivial adaLN so the flow time matters in every block
        for block in head.blocks:
            block.ada.weight.normal_(0, 0.1)
    return head


def reference_sample(head: FlowMatchingHead, cond, noise, interval: int | None = None) -> torch.Tensor:
    """Euler integration written out from the blocks' branches; ``interval`` = the cache as specified."""
    cond = head.cond_in(cond)
    x, dt = noise, -1.0 / head.num_steps
    stored: dict[int, tuple] = {}
    for step in range(head.num_steps):
        t = torch.full((x.shape[0],), 1.0 + step * dt)
        temb = head.time_mlp(timestep_embedding(t, head._width))
        h = head.action_in(x) + head.pos
        for i, block in enumerate(head.blocks):
            if interval is None or step % interval == 0:
                s1, c1, g1, s2, c2, g2 = block.modulation(temb)
                a = block.attn_branch(h, cond, s1, c1, g1)
                m = block.mlp_branch(h + a, s2, c2, g2)
                stored[i] = (a, m)
            a, m = stored[i]
            h = h + a + m
        shift, scale = head.ada_out(F.silu(temb)).chunk(2, dim=-1)
        x = x + dt * head.action_out(_modulate(head.norm_out(h), shift, scale))
    return x


@torch.no_grad()
def test_interval_one_reproduces_the_uncached_actions_exactly():
    head = make_head(cache_interval=1)
    cond, noise = torch.randn(2, 8, 48), torch.randn(2, 8, 7)
    assert torch.equal(head.sample(cond, noise), reference_sample(head, cond, noise))


@torch.no_grad()
@pytest.mark.parametrize("interval", [2, 3, 5])
def test_interval_n_reuses_the_branch_outputs_of_the_last_refresh_step(interval):
    head = make_head(cache_interval=interval)
    cond, noise = torch.randn(2, 8, 48), torch.randn(2, 8, 7)
    cached = head.sample(cond, noise)
    torch.testing.assert_close(cached, reference_sample(head, cond, noise, interval), rtol=0, atol=1e-6)
    uncached = reference_sample(head, cond, noise)
    assert not torch.allclose(cached, uncached, atol=1e-4)  # the cache really skips work
    assert (cached - uncached).abs().max() < 0.5 * uncached.abs().max()  # ... and stays an approximation


@torch.no_grad()
@pytest.mark.parametrize("interval", [2, 3, 5, 10])
def test_interval_n_cuts_block_flops_by_the_expected_ratio(interval):
    head = make_head()
    cond, noise = torch.randn(1, 8, 48), torch.randn(1, 8, 7)

    def flops(n: int) -> tuple[int, int]:
        head.cache_interval = n
        with FlopCounterMode(display=False) as mode:
            head.sample(cond, noise)
        return mode.get_total_flops(), sum(mode.get_flop_counts()["FlowBlock"].values())

    total_1, blocks_1 = flops(1)
    total_n, blocks_n = flops(interval)
    refresh = math.ceil(STEPS / interval)
    assert blocks_1 > 0 and blocks_n * STEPS == blocks_1 * refresh  # exactly ceil(K/N)/K of the block FLOPs
    assert total_1 - total_n == blocks_1 - blocks_n  # nothing else changes


def test_policy_cache_interval_is_inference_only():
    from policies.modeling_vla import VLAPolicy

    torch.manual_seed(0)
    plain = VLAPolicy(tiny_config("none"))
    cached = VLAPolicy(tiny_config("none", head={"cache_interval": 2}))
    cached.load_state_dict(plain.state_dict())
    assert plain.config.fingerprint() == cached.config.fingerprint()  # loadable with another interval
    batch, noise = fake_batch(plain.config), noise_for(plain.config)
    torch.manual_seed(1)
    loss_plain = plain(batch)[0]
    torch.manual_seed(1)
    assert torch.equal(loss_plain, cached(batch)[0])  # training never caches
    with pytest.raises(ValueError, match="cache_interval must be >= 1"):
        tiny_config("none", head={"cache_interval": 0})
    a = plain.predict_action_chunk(fake_batch(plain.config, with_action=False), noise=noise)
    b = cached.predict_action_chunk(fake_batch(plain.config, with_action=False), noise=noise)
    assert a.shape == b.shape and not torch.equal(a, b)
