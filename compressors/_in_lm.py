"""Shared budget handling and input checks of the in-LM selection methods (FastV, EfficientVLA)."""

from __future__ import annotations

import math

import torch

from compressors._ops import check_budget, check_tokens, positive_int
from compressors.base import CompressorOutput, InLMCompressor


class BudgetedInLM(InLMCompressor):
    """An in-LM method keeping ``budget`` visual tokens, or ``round(keep_ratio * Nv)`` when budget is None.

    Both counts are over all cameras together (the backbone sees one visual sequence). ``dim`` is
    the visual width every compressor is built with; selection works at any backbone width.
    """

    def __init__(self, dim: int, layer: int, budget: int | None, keep_ratio: float) -> None:
        super().__init__()
        who = type(self).__name__
        self.dim = positive_int(dim, "dim", who)
        self.layer = positive_int(layer, "layer", who)
        self.budget = None if budget is None else positive_int(budget, "budget", who)
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"{who}: keep ratio must be in (0, 1], got {keep_ratio}")
        self.keep_ratio = float(keep_ratio)

    def forward(self, visual_tokens, grid, instruction=None) -> CompressorOutput:
        """Pre-LM identity (the selection happens in ``select``), with the usual input checks."""
        check_tokens(visual_tokens, grid, self.dim, type(self).__name__)
        return super().forward(visual_tokens, grid, instruction)

    def keep_count(self, n_visual: int) -> int:
        if self.budget is not None:
            return check_budget(self.budget, n_visual, type(self).__name__)
        return max(1, math.floor(self.keep_ratio * n_visual + 0.5))  # round half up, keep >= 1

    def _check_select(
        self,
        hidden: torch.Tensor,
        attn: torch.Tensor | None,
        visual_index: torch.Tensor,
        instruction_index: torch.Tensor | None,
        budget: int | None,
    ) -> tuple[torch.Tensor, int]:
        """Validate a ``select`` call; return (head-averaged attention [B, S, S], tokens to keep)."""
        who = type(self).__name__
        # hidden's width is the backbone's, not necessarily ``dim`` (the visual width given to build()).
        if hidden.dim() != 3:
            raise ValueError(f"{who}: hidden must be [B, S, D], got {tuple(hidden.shape)}")
        b, s, _ = hidden.shape
        if attn is None:
            raise ValueError(
                f"{who}: needs the attention probabilities of layer {self.layer - 1}; run the backbone with "
                "eager attention (attn_implementation='eager') and output_attentions at that layer"
            )
        if attn.dim() != 4 or attn.shape[0] != b or attn.shape[2:] != (s, s):
            raise ValueError(f"{who}: attn must be [{b}, H, {s}, {s}], got {tuple(attn.shape)}")
        for label, index in (("visual_index", visual_index), ("instruction_index", instruction_index)):
            if index is None:
                continue
            if index.dim() != 1 or index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= s:
                raise ValueError(f"{who}: {label} must be a non-empty 1-D index into the {s} positions")
        n_visual = visual_index.numel()
        if budget is None:
            keep = self.keep_count(n_visual)
        else:
            keep = check_budget(positive_int(budget, "budget", who), n_visual, who)
        return attn.mean(dim=1), keep
