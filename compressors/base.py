"""The one interface every visual-token compressor implements, and the registry that names them.

A compressor turns one camera's visual tokens into fewer tokens, optionally guided by the
instruction:

    out = compressor(visual_tokens,           # [B, N, D], N = h*w, one camera
                     grid=(h, w),             # that camera's token grid
                     instruction=instr)       # InstructionContext
    out.tokens  # [B, M, D]
    out.kept    # [B, N] bool (which input tokens survive), or [B, N, M] float soft assignment
                # (how much each input token contributed to each output token), for overlays/tests

Two stages:
- ``stage = "pre_lm"``: called between the vision tower and the language backbone, per camera.
- ``stage = "in_lm"``: acts inside the backbone at layer ``layer`` (FastV, EfficientVLA). The policy
  calls ``select(hidden, attn, visual_index, instruction_index[, budget])`` at that layer; see
  ``InLMCompressor``.

Learned methods own parameters (trained with the policy); training-free ones own none.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn


@dataclass
class InstructionContext:
    """What a compressor may know about the instruction.

    pooled:  [B, D]     mean of the instruction's token embeddings (projected to the visual width D)
    tokens:  [B, T, D]  per-token embeddings (projected to D), for methods that attend to words
    mask:    [B, T]     bool, True for real (non-padding) tokens
    """

    pooled: torch.Tensor
    tokens: torch.Tensor | None = None
    mask: torch.Tensor | None = None


@dataclass
class CompressorOutput:
    """What a compressor returns for one camera.

    ``kept`` is either
    - [B, N] bool: True for the input tokens that survive (pruning methods; ``tokens`` are those
      tokens in their original order), or
    - [B, N, M] float: how much input token i feeds output token m. Attention-based methods
      (STC, SRC) store the attention weights (each column sums to 1 over i); hard-merging methods
      (pool, ToMe, VisionZip) store 0/1 membership (each row one-hot; divide a column by its sum to
      get the averaging weights).
    """

    tokens: torch.Tensor  # [B, M, D]
    kept: torch.Tensor  # [B, N] bool, or [B, N, M] soft assignment
    extras: dict = field(default_factory=dict)  # method-specific diagnostics (scores, indices)


class Compressor(nn.Module):
    """Base class of pre-LM compressors. Subclasses set ``name`` and implement ``forward``."""

    name: ClassVar[str] = ""
    stage: ClassVar[Literal["pre_lm", "in_lm"]] = "pre_lm"
    learned: ClassVar[bool] = False

    def output_tokens(self, grid: tuple[int, int]) -> int:
        """Number of tokens this compressor emits for one camera with this grid (static)."""
        raise NotImplementedError

    def forward(  # type: ignore[override]
        self,
        visual_tokens: torch.Tensor,
        grid: tuple[int, int],
        instruction: InstructionContext | None = None,
    ) -> CompressorOutput:
        raise NotImplementedError


_REGISTRY: dict[str, type[Compressor]] = {}


def register(cls: type[Compressor]) -> type[Compressor]:
    """Class decorator: make a compressor constructible by its ``name``."""
    if not cls.name:
        raise TypeError(f"{cls.__qualname__} must set a non-empty `name`")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"compressor name '{cls.name}' is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def build(name: str, dim: int, **kwargs) -> Compressor:
    """Build a registered compressor; ``dim`` is the visual token width D."""
    _import_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown compressor '{name}'.{hint} Available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](dim=dim, **kwargs)


def _import_all() -> None:
    # Importing the package imports every method module, which registers it.
    import compressors  # noqa: F401


class InLMCompressor(Compressor):
    """Base class of methods that drop visual tokens inside the language backbone (FastV, EfficientVLA).

    The backbone runs layers ``0 .. layer-1`` on the full sequence, then calls ``select`` with that
    layer's input hidden states and the attention probabilities of layer ``layer-1``; the sequence
    is gathered to the returned positions and layers ``layer ..`` run on the shorter sequence.
    ``forward`` (the pre-LM call) is the identity, so the registry treats every method alike.
    """

    stage: ClassVar[Literal["pre_lm", "in_lm"]] = "in_lm"
    layer: int = 2

    def output_tokens(self, grid: tuple[int, int]) -> int:
        """Pre-LM count (identity); the in-LM count is ``keep_count(n_visual)``."""
        return grid[0] * grid[1]

    def keep_count(self, n_visual: int) -> int:
        """Visual tokens kept from layer ``layer`` on, for ``n_visual`` (all cameras) before it."""
        raise NotImplementedError

    def forward(self, visual_tokens, grid, instruction=None) -> CompressorOutput:  # noqa: D401
        b, n, _ = visual_tokens.shape
        kept = torch.ones(b, n, dtype=torch.bool, device=visual_tokens.device)
        return CompressorOutput(tokens=visual_tokens, kept=kept)

    def select(
        self,
        hidden: torch.Tensor,  # [B, S, D] input to layer `layer`
        attn: torch.Tensor | None,  # [B, H, S, S] attention probabilities of layer `layer-1`
        visual_index: torch.Tensor,  # [Nv] long: sequence positions of the visual tokens
        instruction_index: torch.Tensor,  # [Ni] long: sequence positions of the instruction tokens
        budget: int | None = None,  # visual tokens to keep (all cameras); None -> keep_count(Nv)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (keep_visual [B, budget] long positions into ``visual_index`` order, kept [B, Nv] bool).

        ``keep_visual`` is ascending, so gathering ``visual_index[keep_visual]`` keeps sequence order.
        """
        raise NotImplementedError
