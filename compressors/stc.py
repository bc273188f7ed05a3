"""``stc``: Compressor-VLA's Semantic Task Compressor (arXiv 2511.18950), the holistic branch.

k learnable queries Q [k, D] are modulated by the instruction with FiLM and cross-attend to all
visual tokens of the camera:

    (gamma, beta) = MLP_FiLM(MLP_STC(L))        one (gamma, beta) pair of D-vectors per query
    Q_con = gamma * Q + beta
    Z_G   = CrossAttn(Q_con, K = LN(X), V = LN(X))    -> [B, k, D]

Choices the paper leaves open (the simplest that match its description):
- MLP_STC = Linear-GELU-Linear (width ``hidden``), MLP_FiLM = GELU-Linear to 2*k*D.
- FiLM predicts gamma - 1, with a tiny random final layer (std 1e-3, zero bias): gamma ~ 1 and
  beta ~ 0 at start, yet every parameter receives a gradient from the first step (an exactly-zero
  layer would block the gradient into MLP_STC).
- Queries start as N(0, 1) (like an nn.Embedding) so they attend differently from the start.
- Pre-norm on the keys/values only (a LayerNorm on X); the queries are not normalised because a
  LayerNorm would partly undo the FiLM scaling. torch's MultiheadAttention supplies q/k/v and
  output projections; no residual (Z_G is the attention output, as in the paper's formula).
- No positional encoding: Z_G is invariant to permuting the input tokens.
``kept`` is the [B, N, k] attention (averaged over heads): kept[b, i, j] = weight of token i in query j.
"""

from __future__ import annotations

import torch
from torch import nn

from compressors._ops import InstructionGuidedAttention, attend, check_tokens, mlp, positive_int
from compressors.base import CompressorOutput, InstructionContext, register

FILM_INIT_STD = 1e-3  # gamma ~ 1, beta ~ 0 at start, but non-zero so gradients reach MLP_STC


@register
class SemanticTaskCompressor(InstructionGuidedAttention):
    """Instruction-conditioned learnable-query cross-attention pooling (STC).

    Args:
        dim: visual token width D.
        num_queries: k, output tokens per camera (paper: 16; ablation 8/16/32).
        num_heads: attention heads (must divide ``dim``).
        hidden: width of MLP_STC (default ``dim``).
        instruction_dim: width of ``instruction.pooled`` (default ``dim``).
        use_instruction: False drops the FiLM branch (the paper's "no instruction guidance" ablation).
    """

    name = "stc"

    def __init__(
        self,
        dim: int,
        num_queries: int = 16,
        num_heads: int = 8,
        hidden: int | None = None,
        instruction_dim: int | None = None,
        use_instruction: bool = True,
    ) -> None:
        super().__init__(dim, num_heads, hidden, instruction_dim, use_instruction)
        self.num_queries = positive_int(num_queries, "num_queries", self.who)
        self.queries = nn.Parameter(torch.randn(num_queries, dim))
        if self.use_instruction:
            self.mlp_stc = mlp(self.instruction_dim, self.hidden, self.hidden)
            self.mlp_film = nn.Sequential(nn.GELU(), nn.Linear(self.hidden, 2 * num_queries * dim))
            nn.init.normal_(self.mlp_film[-1].weight, std=FILM_INIT_STD)
            nn.init.zeros_(self.mlp_film[-1].bias)

    def output_tokens(self, grid: tuple[int, int]) -> int:
        return self.num_queries

    def film(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-query FiLM parameters from the pooled instruction: (gamma, beta), each [B, k, D]."""
        raw = self.mlp_film(self.mlp_stc(pooled)).view(-1, 2, self.num_queries, self.dim)
        return 1.0 + raw[:, 0], raw[:, 1]

    def forward(
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
    ) -> CompressorOutput:
        b, _, _ = check_tokens(visual_tokens, grid, self.dim, self.who)
        queries = self.queries.unsqueeze(0).expand(b, -1, -1)
        if self.use_instruction:
            gamma, beta = self.film(self.pooled(instruction, b))
            queries = gamma * queries + beta
        tokens, weights = attend(self.attn, queries, self.norm(visual_tokens))
        return CompressorOutput(tokens=tokens, kept=weights.transpose(1, 2))
