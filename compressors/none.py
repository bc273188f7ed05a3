"""``none``: the identity, the no-compression reference every other method is compared against."""

from __future__ import annotations

import torch

from compressors._ops import check_tokens, positive_int
from compressors.base import Compressor, CompressorOutput, InstructionContext, register


@register
class NoCompression(Compressor):
    """Pass every visual token through unchanged; ``kept`` is all True."""

    name = "none"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", type(self).__name__)

    def output_tokens(self, grid: tuple[int, int]) -> int:
        return grid[0] * grid[1]

    def forward(
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
    ) -> CompressorOutput:
        b, n, _ = check_tokens(visual_tokens, grid, self.dim, type(self).__name__)
        kept = torch.ones(b, n, dtype=torch.bool, device=visual_tokens.device)
        return CompressorOutput(tokens=visual_tokens, kept=kept)
