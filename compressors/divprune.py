"""``divprune``: DivPrune (arXiv 2503.02175): keep the most diverse subset of visual tokens.

Greedy max-min diversity on cosine distance d = 1 - cos(x_i, x_j) of the token features. Seed
(as in DivPrune's reference implementation): the most isolated token, i.e. the one whose nearest
other token is farthest away. Then repeatedly add the token whose minimum distance to the selected
set is largest. Kept tokens are returned in their original order. Text-agnostic.
"""

from __future__ import annotations

import torch

from compressors._ops import (
    check_budget,
    check_tokens,
    cosine_matrix,
    gather_tokens,
    greedy_max_min,
    kept_mask,
    mask_to_index,
    positive_int,
)
from compressors.base import Compressor, CompressorOutput, InstructionContext, register


@register
class DivPrune(Compressor):
    """Max-min diverse token subset.

    Args:
        dim: visual token width D.
        budget: tokens kept per camera (default 80, Compressor-VLA's per-camera count).
    """

    name = "divprune"

    def __init__(self, dim: int, budget: int = 80) -> None:
        super().__init__()
        who = type(self).__name__
        self.dim = positive_int(dim, "dim", who)
        self.budget = positive_int(budget, "budget", who)

    def output_tokens(self, grid: tuple[int, int]) -> int:
        return check_budget(self.budget, grid[0] * grid[1], type(self).__name__)

    def forward(
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
    ) -> CompressorOutput:
        b, n, _ = check_tokens(visual_tokens, grid, self.dim, type(self).__name__)
        check_budget(self.budget, n, type(self).__name__)
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
