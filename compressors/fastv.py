"""``fastv``: FastV (arXiv 2403.06764): after LM layer K, drop the visual tokens that receive the
least attention.

Score of visual token i = attention it receives at layer K-1, averaged over heads and over *all*
query positions of the sequence (FastV's reference code averages every row; the paper also
mentions the last token alone, which is noisier). Under a causal mask later rows simply add zeros
for earlier tokens, exactly as in FastV. The R = 50 % lowest-scoring visual tokens are dropped, or
an explicit ``budget`` is kept.
"""

from __future__ import annotations

import torch

from compressors._in_lm import BudgetedInLM
from compressors._ops import kept_mask, topk_sorted
from compressors.base import register


@register
class FastV(BudgetedInLM):
    """Attention-received visual token pruning inside the language backbone.

    Args:
        dim: visual token width (uniform build signature; any backbone width works).
        layer: K, the first layer that sees the pruned sequence (paper: 2).
        ratio: R, fraction of the visual tokens dropped (paper: 0.5) when ``budget`` is None.
        budget: visual tokens kept (all cameras together); overrides ``ratio``.
    """

    name = "fastv"

    def __init__(self, dim: int, layer: int = 2, ratio: float = 0.5, budget: int | None = None) -> None:
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"FastV: drop ratio R must be in [0, 1), got {ratio}")
        super().__init__(dim, layer, budget, keep_ratio=1.0 - ratio)
        self.ratio = float(ratio)

    def select(
        self,
        hidden: torch.Tensor,
        attn: torch.Tensor | None,
        visual_index: torch.Tensor,
        instruction_index: torch.Tensor | None = None,
        budget: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        attn_mean, keep = self._check_select(hidden, attn, visual_index, None, budget)
        received = attn_mean[:, :, visual_index].mean(dim=1)  # [B, Nv], mean over query positions
        index = topk_sorted(received, keep)
        return index, kept_mask(index, visual_index.numel())
