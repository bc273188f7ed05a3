"""``src``: Compressor-VLA's Spatial Refinement Compressor (arXiv 2511.18950), the local branch.

The h x w grid is split into non-overlapping window x window patches. Each window gets one query

    q_w = Downsample(LN(X_w)) + MLP_SRC(L)          (instruction added, not FiLM)
    z_w = Attn(q_w, K = LN(X_w), V = LN(X_w))       attention restricted to the window

giving Z_L [B, (h/window)*(w/window), D] in raster order of the windows.

Choices the paper leaves open (the simplest that match its description):
- Downsample = mean over the window's (layer-normed) tokens, so the query and the keys share a scale.
- MLP_SRC = Linear-GELU-Linear (width ``hidden``) to D, default torch init.
- One LayerNorm on X (pre-norm), torch's MultiheadAttention for the q/k/v/output projections,
  no residual (z_w is the attention output, as in the paper's formula).
Windows are batched by reshaping [B, N, D] -> [B*nW, window^2, D]; there is no loop over windows.
``kept`` is [B, N, M]: each token's attention weight in its own window's output (0 elsewhere).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from compressors._ops import (
    InstructionGuidedAttention,
    attend,
    check_tokens,
    check_window,
    mlp,
    positive_int,
    window_index,
    window_merge,
    window_partition,
)
from compressors.base import CompressorOutput, InstructionContext, register


@register
class SpatialRefinementCompressor(InstructionGuidedAttention):
    """One instruction-guided attention-pooled token per window (SRC).

    Args:
        dim: visual token width D.
        window: window side (paper: 2; ablation 2/4/8). The grid must be divisible by it.
        num_heads: attention heads (must divide ``dim``).
        hidden: width of MLP_SRC (default ``dim``).
        instruction_dim: width of ``instruction.pooled`` (default ``dim``).
        use_instruction: False drops MLP_SRC (the paper's "no instruction guidance" ablation).
    """

    name = "src"

    def __init__(
        self,
        dim: int,
        window: int = 2,
        num_heads: int = 8,
        hidden: int | None = None,
        instruction_dim: int | None = None,
        use_instruction: bool = True,
    ) -> None:
        super().__init__(dim, num_heads, hidden, instruction_dim, use_instruction)
        self.window = positive_int(window, "window", self.who)
        if self.use_instruction:
            self.mlp_src = mlp(self.instruction_dim, self.hidden, dim)

    def output_tokens(self, grid: tuple[int, int]) -> int:
        gh, gw = check_window(grid, self.window, self.who)
        return gh * gw

    def forward(
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
    ) -> CompressorOutput:
        b, _, d = check_tokens(visual_tokens, grid, self.dim, self.who)
        m = self.output_tokens(grid)
        area = self.window * self.window

        windows = window_partition(self.norm(visual_tokens), grid, self.window)  # [B, M, area, D]
        query = windows.mean(dim=2)  # [B, M, D]
        if self.use_instruction:
            query = query + self.mlp_src(self.pooled(instruction, b)).unsqueeze(1)
        out, weights = attend(self.attn, query.reshape(b * m, 1, d), windows.reshape(b * m, area, d))

        # Each token's weight in its own window, scattered to its window's column.
        own_weight = window_merge(weights.view(b, m, area, 1), grid, self.window)  # [B, N, 1]
        column = F.one_hot(window_index(grid, self.window, visual_tokens.device), m).to(own_weight.dtype)
        return CompressorOutput(tokens=out.view(b, m, d), kept=own_weight * column)
