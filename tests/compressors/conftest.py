"""Fixtures shared by the compressor tests: small fake batches on a 16x16 grid."""

from __future__ import annotations

import pytest
import torch

from compressors import InstructionContext

DIM = 32
GRID = (16, 16)
N = GRID[0] * GRID[1]


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randn(2, N, DIM, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def instruction() -> InstructionContext:
    return InstructionContext(pooled=torch.randn(2, DIM, generator=torch.Generator().manual_seed(1)))
