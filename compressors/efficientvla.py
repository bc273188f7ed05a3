"""``efficientvla``: EfficientVLA's task-aware diverse visual token selection (arXiv 2506.10100).

Applied at LM layer 2 (tokens dropped from there on), with the attention of the layer before:
1. Task relevance r_i = sum_j attention(visual i <-> instruction j), averaged over heads, then
   min-max normalised to s_i. We add both directions, attn[j -> i] + attn[i -> j]: under a causal
   mask only the later token can attend to the earlier one, so this is the same score whichever
   of image/instruction comes first in the prompt.
2. Keep the K_key = 4 top tokens by s_i; of the remaining budget K_aug = budget - K_key take
   floor(alpha * K_aug) more by s_i (alpha = 0.5).
3. Fill the rest greedily with the token least similar to the set kept so far (maximise
   1 - max cosine similarity of the layer's hidden states); the set grows with each pick
   (the paper's "least similar to the kept set" with the greedy reading).
Positions are returned ascending, so the kept tokens keep their sequence order.
"""

from __future__ import annotations

import math

import torch

from compressors._in_lm import BudgetedInLM
from compressors._ops import cosine_matrix, greedy_max_min, kept_mask, mask_to_index
from compressors.base import register

DEFAULT_KEEP_RATIO = 112 / 256  # the paper's 112 of CogACT's 256 visual tokens


@register
class EfficientVLASelection(BudgetedInLM):
    """Task-relevant + diverse visual token selection inside the language backbone.

    Args:
        dim: visual token width (uniform build signature; any backbone width works).
        layer: LM layer from which the tokens are dropped (paper: 2).
        budget: K_final, visual tokens kept over all cameras (paper: 56..112); None -> keep_ratio.
        keep_ratio: fraction kept when ``budget`` is None (default 112/256, the paper's setting).
        k_key: K_key, top task-relevant tokens always kept (paper: 4).
        alpha: share of the remaining budget filled by task relevance (paper: 0.5).
    """

    name = "efficientvla"

    def __init__(
        self,
        dim: int,
        layer: int = 2,
        budget: int | None = None,
        keep_ratio: float = DEFAULT_KEEP_RATIO,
        k_key: int = 4,
        alpha: float = 0.5,
    ) -> None:
        super().__init__(dim, layer, budget, keep_ratio)
        if isinstance(k_key, bool) or not isinstance(k_key, int) or k_key < 0:
            raise ValueError(f"EfficientVLASelection: k_key must be an int >= 0, got {k_key!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"EfficientVLASelection: alpha must be in [0, 1], got {alpha}")
        self.k_key = k_key
        self.alpha = float(alpha)

    def split(self, budget: int) -> tuple[int, int, int]:
        """(key, task-relevant, diverse) token counts for a budget; they sum to ``budget``."""
        n_key = min(self.k_key, budget)
        n_task = math.floor(self.alpha * (budget - n_key))
        return n_key, n_task, budget - n_key - n_task

    def select(
        self,
        hidden: torch.Tensor,
        attn: torch.Tensor | None,
        visual_index: torch.Tensor,
        instruction_index: torch.Tensor | None = None,
        budget: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if instruction_index is None:
            raise ValueError("EfficientVLASelection: needs instruction_index (positions of the instruction tokens)")
        attn_mean, keep = self._check_select(hidden, attn, visual_index, instruction_index, budget)
        n_visual = visual_index.numel()

        to_visual = attn_mean[:, instruction_index][:, :, visual_index].sum(dim=1)  # instruction -> visual
        from_visual = attn_mean[:, visual_index][:, :, instruction_index].sum(dim=2)  # visual -> instruction
        relevance = to_visual + from_visual
        low, high = relevance.aminmax(dim=1, keepdim=True)
        score = (relevance - low) / (high - low).clamp_min(1e-12)  # s_i; ranking is unchanged by it

        n_key, n_task, n_diverse = self.split(keep)
        ranked = score.argsort(dim=1, descending=True)
        selected = kept_mask(ranked[:, : n_key + n_task], n_visual)
        visual_hidden = hidden[:, visual_index]
        selected = greedy_max_min(cosine_matrix(visual_hidden), selected, n_diverse)
        return mask_to_index(selected, keep), selected
