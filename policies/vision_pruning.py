"""Instruction-guided token halting inside the vision tower (``vision.prune_after`` / ``prune_keep``).

At `gpu` scale the two SigLIP camera passes are about half of a call's FLOPs, and no LM-side method
(token compression, layer pruning) touches them. Here every patch runs the first ``after`` layers;
then only the ``keep`` fraction most relevant to the instruction runs the remaining layers, and the
others keep their layer-``after`` features (halted, as in A-ViT / EViT-style early exits). The token
grid stays complete, so the compressor after the tower (STC's spatial windows, SRC's regions) sees
every position. Cost of the tower: about ``after / L + (1 - after / L) * keep`` of the full one.

Relevance = cosine between a patch's layer-``after`` feature and the instruction in vision space
(``instr_to_visual(pooled instruction)``: the projection the instruction-guided compressors already
learn). It is a load-time switch (no weights of its own): `accel=fast` turns it on for deep towers
(configs/accel/fast.yaml ``vision_prune``). A policy trained without it has never seen halted
features, so its success with it must be measured, not assumed (docs/experiments/compression_scale.md).
"""

from __future__ import annotations

from torch import Tensor, nn


def kept_count(num_tokens: int, keep: float) -> int:
    return max(1, min(num_tokens, round(keep * num_tokens)))


def run_pruned_tower(tower: nn.Module, pixels: Tensor, after: int, keep: float, query: Tensor | None) -> Tensor:
    """SigLIP ``tower`` on ``pixels`` [N, 3, S, S] with halting after layer ``after``; ``query`` [N, Dv]
    the instruction in vision space (None: keep the tokens with the largest feature norm). Returns the
    last hidden state [N, P, Dv] (post-layernorm), like ``tower(pixel_values=...).last_hidden_state``.
    Forward hooks on the embeddings and layers (the instruction FiLM) apply as in the full tower."""
    vm = tower.vision_model
    layers = vm.encoder.layers
    if not 0 < after < len(layers):
        raise ValueError(f"vision.prune_after must be in 1..{len(layers) - 1} for this {len(layers)}-layer tower, got {after}")
    h = vm.embeddings(pixels)
    for layer in layers[:after]:
        h = layer(h, None)
    k = kept_count(h.shape[1], keep)
    if k < h.shape[1]:
        feats = nn.functional.normalize(h.float(), dim=-1)
        score = feats.norm(dim=-1) if query is None else (feats @ nn.functional.normalize(query.float(), dim=-1)[:, :, None])[..., 0]
        index = score.topk(k, dim=1).indices.sort(dim=1).values  # [N, k], in grid order
        gather = index[..., None].expand(-1, -1, h.shape[-1])
        part = h.gather(1, gather)
        for layer in layers[after:]:
            part = layer(part, None)
        h = h.scatter(1, gather, part)
    else:
        for layer in layers[after:]:
            h = layer(h, None)
    return vm.post_layernorm(h)


def check_prune(after: int | None, keep: float, num_layers: int) -> None:
    if after is None:
        return
    if not (isinstance(after, int) and 0 < after < num_layers):
        raise ValueError(f"vision.prune_after must be an integer in 1..{num_layers - 1} (the tower has {num_layers} "
                         f"layers), or null; got {after!r}")
    if not (isinstance(keep, (int, float)) and 0 < keep <= 1):
        raise ValueError(f"vision.prune_keep must be in (0, 1], got {keep!r}")


__all__ = ["check_prune", "kept_count", "run_pruned_tower"]
