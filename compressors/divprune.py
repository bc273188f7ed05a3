"""``divprune``: DivPrune (arXiv 2503.02175): keep the most diverse subset of visual tokens.

Greedy max-min diversity on cosine distance d = 1 - cos(x_i, x_j) of the token features. Seed
(as in DivPrune's reference implementation): the most isolated token, i.e. the one whose nearest
other token is farthest away. Then repeatedly add the token whose minimum distance to the selected
set is largest. Kept tokens are returned in their original order. Text-agnostic.
"""

from __future__ import annotations

import torch

from compressors._ops import (
    BudgetedCompressor,
    cosine_matrix,
    gather_tokens,
    greedy_max_min,
    kept_mask,
    mask_to_index,
)
from compressors.base import CompressorOutput, InstructionContext, register


@register
class DivPrune(BudgetedCompressor):
    """Max-min diverse token subset.

    Args:
        dim: visual token width D.
        budget: tokens kept per camera (default 80, Compressor-VLA's per-camera count).
    """

    name = "divprune"

    def __init__(self, dim: int, budget: int = 80) -> None:
        super().__init__(dim, budget)

    def forward(
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
    ) -> CompressorOutput:
        b, n, _ = self.check_input(visual_tokens, grid)
        sim = cosine_matrix(visual_tokens)
        # Seed: the token whose most similar *other* token is least similar (largest NN distance).
        eye = torch.eye(n, dtype=torch.bool, device=sim.device)
        nearest = sim.masked_fill(eye, torch.finfo(sim.dtype).min).amax(dim=2) if n > 1 else sim[:, :, 0]
        seed = kept_mask(nearest.argmin(dim=1, keepdim=True), n)
        selected = greedy_max_min(sim, seed, self.budget - 1)
        index = mask_to_index(selected, self.budget)
        return CompressorOutput(
            tokens=gather_tokens(visual_tokens, index), kept=selected, extras={"index": index}
        )
