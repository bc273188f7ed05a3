"""``pool``: average-pool the token grid with a ``kernel`` x ``kernel`` window (2x2: 16x16 -> 64)."""

from __future__ import annotations

import torch

from compressors._ops import check_tokens, check_window, mean_by_assignment, positive_int, window_index
from compressors.base import Compressor, CompressorOutput, InstructionContext, register


@register
class GridPool(Compressor):
    """Non-overlapping average pooling of the h x w grid; output in raster order of the pooled grid.

    ``kept`` is the [B, N, M] 0/1 membership of each input token in its pooling window.

    Args:
        dim: visual token width D.
        kernel: square pooling window side; the grid must be divisible by it.
    """

    name = "pool"

    def __init__(self, dim: int, kernel: int = 2) -> None:
        super().__init__()
        who = type(self).__name__
        self.dim = positive_int(dim, "dim", who)
        self.kernel = positive_int(kernel, "kernel", who)

    def output_tokens(self, grid: tuple[int, int]) -> int:
        gh, gw = check_window(grid, self.kernel, type(self).__name__)
        return gh * gw

    def forward(
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
    ) -> CompressorOutput:
        b, _, _ = check_tokens(visual_tokens, grid, self.dim, type(self).__name__)
        m = self.output_tokens(grid)
        assign = window_index(grid, self.kernel, visual_tokens.device).expand(b, -1)
        tokens, membership = mean_by_assignment(visual_tokens, assign, m)
        return CompressorOutput(tokens=tokens, kept=membership)
