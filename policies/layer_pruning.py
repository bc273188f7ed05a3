"""EfficientVLA layer pruning (arXiv 2506.10100, part 1): drop the decoder layers that change the
hidden state least.

    importance = layer_importance(policy, batches)            # I(l) per current layer, from real hidden states
    remove = least_important(importance, keep=3)              # indices of the L - keep lowest, ascending
    removed = remove_layers(policy, remove)                   # ModuleList surgery + config update

Importance of layer l: I(l) = 1 - mean cos(x_l, x_{l+1}), the cosine similarity between the
layer's input and output hidden state of every token position, averaged over all positions of
all calibration samples (instruction padding excluded). A layer whose output is almost its input
(I near 0) contributes little and is removed first; the removed layers need not be adjacent.

The hidden states are captured with forward hooks on the decoder layers during ordinary policy
calls (``predict_action_chunk``), so they are exactly what the policy computes, including any
in-LM token selection (after the selection layer the shorter sequence is measured).

After surgery ``config.backbone.num_layers`` is the number of layers kept and
``config.backbone.removed_layers`` lists the removed layers by their ORIGINAL index (pruning a
pruned model composes), so ``VLAPolicy.from_pretrained`` rebuilds the pruned shape from the config
alone and the architecture fingerprint differs from the unpruned one. Layers are renumbered
0..kept-1 in the weights. In-LM compressors act at a layer index of the pruned stack, so that
index must stay below the number of layers kept.

Calibration data and the ``vla prune`` command live in ``vla/prune.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def decoder_layers(policy) -> nn.ModuleList:
    return policy.model.backbone.lm.layers


def original_indices(backbone_cfg) -> list[int]:
    """Original index of each current decoder layer (identity for an unpruned model)."""
    removed = set(backbone_cfg.removed_layers)
    total = backbone_cfg.num_layers + len(removed)
    return [i for i in range(total) if i not in removed]


@torch.no_grad()
def layer_importance(policy, batches: Iterable[dict[str, Any]], noise_seed: int = 0) -> dict[str, Any]:
    """I(l) = 1 - mean cos(x_l, x_{l+1}) for every current decoder layer over ``batches``.

    ``batches`` are preprocessed policy batches (what ``processor_vla`` emits). Returns
    ``{"importance": [L], "mean_cos": [L], "positions": [L] (token positions averaged per layer),
    "samples": int}``.
    """
    layers = decoder_layers(policy)
    n = len(layers)
    sums = torch.zeros(n, dtype=torch.float64)
    counts = torch.zeros(n, dtype=torch.float64)
    state: dict[str, torch.Tensor | None] = {"mask": None}

    def capture_mask(_module, args, kwargs):  # LanguageBackbone.forward(embeds, key_mask, ...)
        state["mask"] = args[1] if len(args) > 1 else kwargs.get("key_mask")

    def hook_for(i: int):
        def hook(_module, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, tuple) else output
            cos = F.cosine_similarity(x.double(), y.double(), dim=-1)  # [B, S]
            mask = state["mask"]
            if mask is not None and mask.shape == cos.shape:  # before any in-LM selection: skip padding
                weights = mask.to(cos.dtype)
            else:
                weights = torch.ones_like(cos)
            sums[i] += float((cos * weights).sum())
            counts[i] += float(weights.sum())

        return hook

    handles = [policy.model.backbone.register_forward_pre_hook(capture_mask, with_kwargs=True)]
    handles += [layer.register_forward_hook(hook_for(i), with_kwargs=True) for i, layer in enumerate(layers)]
    samples = 0
    was_training = policy.training
    policy.eval()
    try:
        for batch in batches:
            b = _batch_size(batch, policy.config)
            cfg = policy.config
            noise = torch.randn(b, cfg.chunk_size, cfg.action_dim, generator=torch.Generator().manual_seed(noise_seed))
            policy.predict_action_chunk(batch, noise=noise.to(next(policy.parameters()).device))
            samples += b
    finally:
        for h in handles:
            h.remove()
        policy.train(was_training)
    if samples == 0:
        raise ValueError("layer_importance: no calibration batches were given")
    mean_cos = (sums / counts.clamp(min=1)).tolist()
    return {
        "importance": [1.0 - c for c in mean_cos],
        "mean_cos": mean_cos,
        "positions": counts.tolist(),
        "samples": samples,
    }


def _batch_size(batch: dict[str, Any], config) -> int:
    return int(batch[config.camera_keys[0]].shape[0])


def keep_count(num_layers: int, keep_layers: int | None = None, keep_ratio: float | None = None) -> int:
    """Layers to keep: ``keep_layers`` exactly, or ``round(keep_ratio * num_layers)`` (>= 1)."""
    if (keep_layers is None) == (keep_ratio is None):
        raise ValueError(f"give exactly one of keep_layers / keep_ratio (got {keep_layers} / {keep_ratio})")
    if keep_layers is None:
        if not 0.0 < float(keep_ratio) <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        keep_layers = max(1, math.floor(float(keep_ratio) * num_layers + 0.5))
    keep_layers = int(keep_layers)
    if not 1 <= keep_layers <= num_layers:
        raise ValueError(
            f"keep_layers must be in [1, {num_layers}] (the backbone has {num_layers} layers), got {keep_layers}"
        )
    return keep_layers


def least_important(importance: list[float], keep: int) -> list[int]:
    """Indices of the ``len(importance) - keep`` least important layers, ascending (ties: earlier first)."""
    order = sorted(range(len(importance)), key=lambda i: (importance[i], i))
    return sorted(order[: len(importance) - keep])


def min_layers(policy) -> int:
    """Fewest layers the policy can keep: an in-LM compressor needs its selection layer to exist."""
    model = policy.model
    return model.compressor.layer + 1 if model.in_lm else 1


def remove_layers(policy, remove: list[int]) -> list[int]:
    """Remove decoder layers (current indices) in place; return their ORIGINAL indices.

    Updates the HF module list, each kept attention's ``layer_idx``, the HF config and the policy
    config (``backbone.num_layers``, ``backbone.removed_layers``).
    """
    lm = policy.model.backbone.lm
    n = len(lm.layers)
    remove = sorted(set(int(i) for i in remove))
    if any(not 0 <= i < n for i in remove):
        raise ValueError(f"layer indices to remove must be in [0, {n}), got {remove}")
    kept_count = n - len(remove)
    if kept_count < min_layers(policy):
        comp = policy.model.compressor
        raise ValueError(
            f"cannot keep {kept_count} of {n} layers: the in-LM compressor '{comp.name}' selects tokens at layer "
            f"{comp.layer}, so at least {comp.layer + 1} layers must remain"
        )
    cfg = policy.config.backbone
    originals = original_indices(cfg)
    kept = [layer for i, layer in enumerate(lm.layers) if i not in remove]
    lm.layers = nn.ModuleList(kept)
    for new_index, layer in enumerate(kept):
        if hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = new_index
    lm.config.num_hidden_layers = kept_count
    removed_original = [originals[i] for i in remove]
    cfg.num_layers = kept_count
    cfg.removed_layers = sorted(list(cfg.removed_layers) + removed_original)
    return removed_original


def prune_policy(
    policy,
    batches: Iterable[dict[str, Any]],
    keep_layers: int | None = None,
    keep_ratio: float | None = None,
) -> dict[str, Any]:
    """Measure I(l) on ``batches`` and remove the least important layers in place.

    Returns the importance report plus ``removed`` / ``kept`` (original indices) and the layer
    counts before and after.
    """
    cfg = policy.config.backbone
    before = len(decoder_layers(policy))
    keep = keep_count(before, keep_layers, keep_ratio)
    if keep < min_layers(policy):
        raise ValueError(
            f"keep {keep} layers is too few: the in-LM compressor '{policy.model.compressor.name}' acts at layer "
            f"{policy.model.compressor.layer}; keep at least {min_layers(policy)}"
        )
    originals = original_indices(cfg)
    report = layer_importance(policy, batches)
    report["layers"] = originals  # original index of each measured layer
    removed = remove_layers(policy, least_important(report["importance"], keep))
    report.update(
        removed=removed,
        kept=[i for i in originals if i not in removed],
        num_layers_before=before,
        num_layers_after=len(decoder_layers(policy)),
    )
    return report
