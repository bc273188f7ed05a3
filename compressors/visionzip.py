"""``visionzip``: VisionZip (arXiv 2412.04467): dominant tokens + a few merged contextual tokens.

1. Dominant: the tokens that receive the most attention in the vision tower. SigLIP has no CLS
   token, so VisionZip uses the mean attention each token receives. Pass it as ``attention``
   [B, N] when the caller has the vision tower's attention; otherwise we compute the same quantity
   for one parameter-free attention over the output features, softmax(X X^T / sqrt(D)), averaged
   over query rows (our fallback; identity q/k projections).
2. Contextual: of the remaining tokens, every step-th one (uniform, as in VisionZip) becomes a
   target; every other remaining token joins its most similar target (cosine similarity), and each
   contextual token is the mean of its group. (VisionZip's code adds the target to the mean of the
   others; the group mean keeps the token on the feature scale and matches ``kept``.)
Output: dominant tokens in original order, then contextual tokens. Budget = dominant + contextual.
``kept`` is the [B, N, budget] one-hot membership of every input token. Text-agnostic.
"""

from __future__ import annotations

import torch

from compressors._ops import (
    BudgetedCompressor,
    cosine_matrix,
    gather_tokens,
    kept_mask,
    mask_to_index,
    mean_by_assignment,
    topk_sorted,
)
from compressors.base import CompressorOutput, InstructionContext, register

CONTEXTUAL_SHARE = 10 / 64  # VisionZip's 54 dominant + 10 contextual at 64 tokens


@register
class VisionZip(BudgetedCompressor):
    """Attention-dominant tokens plus similarity-merged contextual tokens.

    Args:
        dim: visual token width D.
        budget: output tokens per camera (default 80, Compressor-VLA's per-camera count).
        contextual: how many of them are contextual (default round(budget * 10/64), VisionZip's split,
            kept within [1, budget - 1]). With 0 the non-dominant tokens are dropped (all-zero rows
            in ``kept``).
    """

    name = "visionzip"

    def __init__(self, dim: int, budget: int = 80, contextual: int | None = None) -> None:
        super().__init__(dim, budget)
        who = self.who
        if contextual is None:  # VisionZip's split, but at least one of each kind when budget >= 2
            contextual = min(max(round(budget * CONTEXTUAL_SHARE), 1), budget - 1)
        if isinstance(contextual, bool) or not isinstance(contextual, int) or not 0 <= contextual <= budget:
            raise ValueError(f"{who}: contextual must be an int in [0, budget={budget}], got {contextual!r}")
        self.contextual = contextual

    def saliency(self, x: torch.Tensor) -> torch.Tensor:
        """Fallback saliency [B, N]: mean attention received under softmax(X X^T / sqrt(D))."""
        return torch.softmax(x @ x.transpose(1, 2) / x.shape[-1] ** 0.5, dim=-1).mean(dim=1)

    def forward(
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
        *,
        attention: torch.Tensor | None = None,
    ) -> CompressorOutput:
        b, n, _ = self.check_input(visual_tokens, grid)
        who = self.who
        if attention is None:
            attention = self.saliency(visual_tokens)
        elif attention.shape != (b, n):
            raise ValueError(f"{who}: attention must be [{b}, {n}] (saliency per token), got {tuple(attention.shape)}")
        n_dom, n_ctx = self.budget - self.contextual, self.contextual

        dominant = topk_sorted(attention, n_dom)  # [B, n_dom]
        assign = torch.full((b, n), -1, dtype=torch.long, device=visual_tokens.device)
        assign.scatter_(1, dominant, torch.arange(n_dom, device=assign.device).expand(b, -1))
        if n_ctx:
            rest = mask_to_index(~kept_mask(dominant, n), n - n_dom)  # [B, n - n_dom]
            step = (n - n_dom) // n_ctx
            targets = rest[:, : step * n_ctx : step]  # uniform targets among the remaining tokens
            sim = cosine_matrix(gather_tokens(visual_tokens, rest), gather_tokens(visual_tokens, targets))
            group = sim.argmax(dim=2)  # [B, n - n_dom]: most similar target of each remaining token
            slots = torch.arange(n_ctx, device=group.device).expand(b, -1)
            group.scatter_(1, slots * step, slots)  # a target always joins its own group (ties)
            assign.scatter_(1, rest, n_dom + group)
        tokens, membership = mean_by_assignment(visual_tokens, assign, self.budget)
        return CompressorOutput(tokens=tokens, kept=membership, extras={"dominant": dominant, "saliency": attention})
