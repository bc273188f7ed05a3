"""``compressor_vla``: Compressor-VLA (arXiv 2511.18950) = STC (holistic) + SRC (local detail).

Per camera the backbone receives concat(Z_G, Z_L): with a 16x16 grid, k = 16 and window 2 that is
16 + 64 = 80 tokens (512 -> 160 for two cameras). Both branches read the same pooled instruction.
"""

from __future__ import annotations

import torch

from compressors.base import Compressor, CompressorOutput, InstructionContext, register
from compressors.src import SpatialRefinementCompressor
from compressors.stc import SemanticTaskCompressor


@register
class CompressorVLA(Compressor):
    """STC and SRC side by side; tokens and soft assignments are concatenated STC first.

    Args:
        dim: visual token width D.
        num_queries: STC queries k (paper: 16).
        window: SRC window side (paper: 2).
        num_heads, hidden, instruction_dim, use_instruction: passed to both branches (see stc/src).
    """

    name = "compressor_vla"
    learned = True

    def __init__(
        self,
        dim: int,
        num_queries: int = 16,
        window: int = 2,
        num_heads: int = 8,
        hidden: int | None = None,
        instruction_dim: int | None = None,
        use_instruction: bool = True,
    ) -> None:
        super().__init__()
        shared = dict(
            num_heads=num_heads, hidden=hidden, instruction_dim=instruction_dim, use_instruction=use_instruction
        )
        self.dim = dim
        self.stc = SemanticTaskCompressor(dim, num_queries=num_queries, **shared)
        self.src = SpatialRefinementCompressor(dim, window=window, **shared)

    def output_tokens(self, grid: tuple[int, int]) -> int:
        return self.stc.output_tokens(grid) + self.src.output_tokens(grid)

    def forward(
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
    ) -> CompressorOutput:
        z_g = self.stc(visual_tokens, grid, instruction)
        z_l = self.src(visual_tokens, grid, instruction)
        return CompressorOutput(
            tokens=torch.cat([z_g.tokens, z_l.tokens], dim=1),
            kept=torch.cat([z_g.kept, z_l.kept], dim=2),
            extras={"stc_tokens": z_g.tokens.shape[1]},
        )
