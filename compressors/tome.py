"""``tome``: Token Merging by bipartite soft matching (ToMe, arXiv 2210.09461), down to a budget.

Each round splits the current tokens alternately into A (even positions) and B (odd positions),
matches every A token to its most similar B token (cosine similarity of the features: pre-LM there
are no attention keys), and merges the r most similar pairs into their B token with a size-weighted
mean, sizes adding up. r = min(tokens - budget, |A|), so rounds repeat until the budget is reached
(ToMe merges at most half the tokens per round). Sizes and the source of every merged token are
tracked, so the size-weighted mean of the output equals the input mean exactly.

Output order (our choice; ToMe leaves it as [unmerged A, B]): tokens sorted by the smallest raster
index among their sources, which keeps the order close to the grid's.
``kept`` is the [B, N, M] one-hot source matrix (row i marks the output token input i merged into);
``extras["sizes"]`` [B, M] holds how many input tokens each output token averages.
"""

from __future__ import annotations

import torch

from compressors._ops import BudgetedCompressor, cosine_matrix, gather_tokens
from compressors.base import CompressorOutput, InstructionContext, register


def _gather_columns(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """source [B, N, n], index [B, k] -> [B, N, k]."""
    return source.gather(2, index.unsqueeze(1).expand(-1, source.shape[1], -1))


def _merge_round(
    x: torch.Tensor, size: torch.Tensor, source: torch.Tensor, r: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One bipartite soft matching round merging ``r`` A tokens into B.

    x [B, n, D] size-weighted mean tokens, size [B, n], source [B, N, n] -> the same with n - r tokens.
    """
    a, b = x[:, ::2], x[:, 1::2]
    size_a, size_b = size[:, ::2], size[:, 1::2]
    source_a, source_b = source[:, :, ::2], source[:, :, 1::2]

    best, match = cosine_matrix(a, b).max(dim=2)  # each A token's most similar B token
    order = best.argsort(dim=1, descending=True)
    merged, unmerged = order[:, :r], order[:, r:].sort(dim=1).values
    dst = match.gather(1, merged)

    # Size-weighted mean: accumulate size * token sums into B, then divide by the new sizes.
    sum_b = (b * size_b.unsqueeze(-1)).scatter_add(
        1, dst.unsqueeze(-1).expand(-1, -1, x.shape[-1]), gather_tokens(a * size_a.unsqueeze(-1), merged)
    )
    new_size_b = size_b.scatter_add(1, dst, size_a.gather(1, merged))
    new_source_b = source_b.scatter_add(
        2, dst.unsqueeze(1).expand(-1, source.shape[1], -1), _gather_columns(source_a, merged)
    )
    x = torch.cat([gather_tokens(a, unmerged), sum_b / new_size_b.unsqueeze(-1)], dim=1)
    size = torch.cat([size_a.gather(1, unmerged), new_size_b], dim=1)
    source = torch.cat([_gather_columns(source_a, unmerged), new_source_b], dim=2)
    return x, size, source


@register
class ToMe(BudgetedCompressor):
    """Merge similar tokens until ``budget`` remain.

    Args:
        dim: visual token width D.
        budget: tokens kept per camera (default 80, Compressor-VLA's per-camera count).
    """

    name = "tome"

    def __init__(self, dim: int, budget: int = 80) -> None:
        super().__init__(dim, budget)

    def forward(
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
    ) -> CompressorOutput:
        b, n, _ = self.check_input(visual_tokens, grid)
        x = visual_tokens
        size = x.new_ones(b, n)
        source = torch.eye(n, dtype=x.dtype, device=x.device).expand(b, n, n)
        while x.shape[1] > self.budget:
            r = min(x.shape[1] - self.budget, (x.shape[1] + 1) // 2)
            x, size, source = _merge_round(x, size, source, r)

        first = source.argmax(dim=1)  # smallest source index of each output token (argmax -> first 1)
        order = first.argsort(dim=1)
        return CompressorOutput(
            tokens=gather_tokens(x, order),
            kept=_gather_columns(source, order),
            extras={"sizes": size.gather(1, order)},
        )
