"""``random``: keep a uniform random subset of the visual tokens.

A strong training-free baseline (UniPruneBench). The subset is drawn from a private
``torch.Generator`` seeded with ``seed`` (never the global RNG), so two compressors built with the
same seed make the same draws; successive calls continue that stream (a fresh subset per frame).
``reset()`` restarts it. Each batch element gets its own subset.
"""

from __future__ import annotations

import torch

from compressors._ops import BudgetedCompressor, gather_tokens, kept_mask, topk_sorted
from compressors.base import CompressorOutput, InstructionContext, register


@register
class RandomDrop(BudgetedCompressor):
    """Keep ``budget`` tokens per camera chosen uniformly at random, in their original order.

    Args:
        dim: visual token width D.
        budget: tokens kept per camera (default 80 = Compressor-VLA's 16 STC + 64 SRC per camera,
            so baselines compare at its token count).
        seed: seed of the private generator.
    """

    name = "random"

    def __init__(self, dim: int, budget: int = 80, seed: int = 0) -> None:
        super().__init__(dim, budget)
        who = self.who
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{who}: `seed` must be an int, got {seed!r}")
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Restart the random stream from ``seed``."""
        self._generator = torch.Generator().manual_seed(self.seed)

    def forward(
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
    ) -> CompressorOutput:
        b, n, _ = self.check_input(visual_tokens, grid)
        # i.i.d. uniform scores -> top-k is a uniform random subset; drawn on CPU for device-independence.
        scores = torch.rand(b, n, generator=self._generator)
        index = topk_sorted(scores, self.budget).to(visual_tokens.device)
        return CompressorOutput(
            tokens=gather_tokens(visual_tokens, index), kept=kept_mask(index, n), extras={"index": index}
        )
