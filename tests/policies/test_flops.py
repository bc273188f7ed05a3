"""Measured FLOPs (vla.cost.count_flops) against the analytic count of the backbone.

Backbone FLOPs of one call, counted as FlopCounterMode counts them (matmuls; attention scores as a
full S x S product; causal masking does not reduce the count):

    per layer:  2*S*(d*dq + 2*d*dkv + dq*d + 3*d*I)     projections + SwiGLU MLP   (linear in S)
              + 2*S*S*(dq + dq)                          QK^T and PV                (quadratic in S)
    plus the projector on the Nv visual tokens 2*Nv*(dv*d + d*d) and the state token 2*s*d,
with S = Nv + T + 1 + Q. Hence FLOPs(S) = a*S + b*S^2 (+ the projector, linear in Nv), and for
two token counts S1 < S2:  (S1/S2)^2 <= FLOPs(S1)/FLOPs(S2) <= S1/S2 -- the tolerance band
the "FLOPs fall with the token ratio" test uses. The analytic value itself must match to 0.5 %.
"""

from __future__ import annotations

import pytest
import yaml

from _policy_helpers import CONFIGS, fake_batch, tiny_config
from vla.cost import count_flops


def analytic_backbone_flops(cfg, n_visual: int, n_text: int, n_queries: int, kept_after: int | None = None,
                            layer: int | None = None) -> int:
    b = cfg.backbone
    d, hd = b.hidden_size, b.hidden_size // b.num_heads
    dq, dkv = b.num_heads * hd, b.num_kv_heads * hd
    linear = 2 * (d * dq + 2 * d * dkv + dq * d + 3 * d * b.intermediate_size)

    def layer_flops(s: int) -> int:
        return linear * s + 2 * s * s * (dq + dq)

    s_full = n_visual + n_text + 1 + n_queries
    layers = [s_full] * b.num_layers
    if kept_after is not None:
        s_short = kept_after + n_text + 1 + n_queries
        layers = [s_full] * layer + [s_short] * (b.num_layers - layer)
    dv = cfg.vision.hidden_size
    projector = 2 * n_visual * (dv * d + d * d)
    state = 2 * 8 * d
    rope = 2 * (hd // 2) * s_full * (1 + (kept_after is not None))  # inv_freq outer product (bmm)
    return sum(layer_flops(s) for s in layers) + projector + state + rope


def backbone_flops(compressor, model=None) -> tuple[int, object]:
    from policies.modeling_vla import VLAPolicy

    cfg = tiny_config(compressor, model=model)
    policy = VLAPolicy(cfg).eval()
    batch = fake_batch(cfg, batch_size=1, with_action=False)
    return count_flops(policy, batch)["stages"]["backbone"], cfg


@pytest.mark.parametrize("method", ["none", "pool", "compressor_vla"])
def test_backbone_flops_match_the_analytic_count(method):
    measured, cfg = backbone_flops(method)
    n_visual = 2 * {"none": 256, "pool": 64, "compressor_vla": 80}[method]
    expected = analytic_backbone_flops(cfg, n_visual, n_text=7, n_queries=cfg.n_queries)
    assert measured == pytest.approx(expected, rel=0.005)


def test_in_lm_flops_drop_after_the_selection_layer():
    measured, cfg = backbone_flops("fastv")
    expected = analytic_backbone_flops(cfg, 512, n_text=7, n_queries=cfg.n_queries, kept_after=256, layer=2)
    assert measured == pytest.approx(expected, rel=0.005)


def test_flops_fall_with_the_token_ratio_pool_vs_none():
    full, cfg = backbone_flops("none")
    pooled, _ = backbone_flops("pool")
    s_full = 512 + 7 + 1 + cfg.n_queries
    s_pool = 128 + 7 + 1 + cfg.n_queries
    ratio, r = pooled / full, s_pool / s_full
    assert r**2 <= ratio <= r  # the a*S + b*S^2 band (module docstring)


def test_cpu_preset_backbone_is_most_of_the_flops():
    """The demo model: uncompressed, the language backbone is >= 60 % of one call's FLOPs."""
    cpu = yaml.safe_load((CONFIGS / "model" / "cpu.yaml").read_text())
    from policies.modeling_vla import VLAPolicy

    cfg = tiny_config("none", model=cpu)
    flops = count_flops(VLAPolicy(cfg).eval(), fake_batch(cfg, batch_size=1, with_action=False))
    share = flops["stages"]["backbone"] / flops["total"]
    assert share >= 0.6, flops
    assert sum(flops["stages"].values()) == flops["total"]  # stages partition the call

