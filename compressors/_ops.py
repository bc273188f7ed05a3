"""Helpers shared by the compressor methods: argument checks, gathering, windows, similarity.

Every method validates its inputs with these so the error messages read the same everywhere, and
selection/merging code exists once (gather by index, boolean masks, window reshapes, greedy
max-min diversity, mean over an assignment).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from compressors.base import Compressor, InstructionContext

# ----------------------------------------------------------------------------- argument checks


def positive_int(value: int, name: str, who: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: `{name}` must be a positive int, got {value!r}")
    return value


def check_tokens(x: torch.Tensor, grid: tuple[int, int], dim: int, who: str) -> tuple[int, int, int]:
    """Check ``x`` is [B, N, dim] with N = h*w for ``grid``; return (B, N, D)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who}: visual_tokens must be [B, N, D], got {shape}")
    if len(grid) != 2 or any(int(g) < 1 for g in grid):
        raise ValueError(f"{who}: grid must be (h, w) with positive sides, got {grid!r}")
    b, n, d = x.shape
    if n != grid[0] * grid[1]:
        raise ValueError(f"{who}: {n} visual tokens do not fill grid {tuple(grid)} (h*w = {grid[0] * grid[1]})")
    if d != dim:
        raise ValueError(f"{who}: token width {d} != the compressor's dim {dim}")
    return b, n, d


def check_budget(budget: int, n: int, who: str) -> int:
    """The budget must fit the tokens available (pruning can only remove)."""
    if budget > n:
        raise ValueError(f"{who}: budget {budget} exceeds the {n} available visual tokens")
    return budget


def check_window(grid: tuple[int, int], window: int, who: str) -> tuple[int, int]:
    """Return the window grid (h/window, w/window); raise if the grid is not divisible."""
    h, w = grid
    if h % window or w % window:
        raise ValueError(f"{who}: grid {tuple(grid)} is not divisible by window {window}")
    return h // window, w // window


def pooled_instruction(instruction: InstructionContext | None, batch: int, width: int, who: str) -> torch.Tensor:
    """The pooled instruction embedding [B, width], or a clear error when it is missing or misshaped."""
    if instruction is None:
        raise ValueError(f"{who}: needs an InstructionContext (built with use_instruction=True)")
    pooled = instruction.pooled
    if pooled.dim() != 2 or pooled.shape[0] != batch or pooled.shape[1] != width:
        raise ValueError(f"{who}: instruction.pooled must be [{batch}, {width}], got {tuple(pooled.shape)}")
    return pooled


# ----------------------------------------------------------------------------- selection


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, N, D], index [B, K] long -> [B, K, D]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def kept_mask(index: torch.Tensor, n: int) -> torch.Tensor:
    """index [B, K] long -> [B, n] bool, True at the kept positions."""
    mask = torch.zeros(index.shape[0], n, dtype=torch.bool, device=index.device)
    return mask.scatter_(1, index, True)


def mask_to_index(mask: torch.Tensor, count: int) -> torch.Tensor:
    """[B, N] bool with exactly ``count`` True per row -> [B, count] ascending positions."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return positions[mask].view(mask.shape[0], count)  # row-major, so each row comes out sorted


def topk_sorted(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` largest scores per row, in original (ascending) order."""
    return scores.topk(k, dim=1).indices.sort(dim=1).values


def cosine_matrix(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise cosine similarity [B, Na, Nb] (b defaults to a)."""
    a = F.normalize(a, dim=-1)
    b = a if b is None else F.normalize(b, dim=-1)
    return a @ b.transpose(1, 2)


def greedy_max_min(sim: torch.Tensor, selected: torch.Tensor, count: int) -> torch.Tensor:
    """Grow ``selected`` [B, N] bool by ``count`` tokens, each maximising 1 - max cos-sim to the set.

    ``sim`` is [B, N, N] cosine similarity. This is greedy max-min diversity on cosine distance
    (DivPrune; EfficientVLA's diversity fill). With an empty initial set the first pick is token 0,
    so callers seed the set themselves.
    """
    selected = selected.clone()
    neg_inf = torch.finfo(sim.dtype).min
    # Highest similarity of every token to the current set (-inf for an empty set).
    closest = sim.masked_fill(~selected.unsqueeze(1), neg_inf).amax(dim=2)
    for _ in range(count):
        distance = (1.0 - closest).masked_fill(selected, neg_inf)
        pick = distance.argmax(dim=1, keepdim=True)  # [B, 1]
        selected.scatter_(1, pick, True)
        closest = torch.maximum(closest, sim.gather(1, pick.unsqueeze(-1).expand(-1, 1, sim.shape[2])).squeeze(1))
    return selected


# ----------------------------------------------------------------------------- windows, merging


def window_index(grid: tuple[int, int], window: int, device: torch.device | None = None) -> torch.Tensor:
    """[N] long: the raster index of the window holding each raster-ordered token."""
    h, w = grid
    rows = torch.arange(h, device=device) // window
    cols = torch.arange(w, device=device) // window
    return (rows[:, None] * (w // window) + cols[None, :]).reshape(-1)


def window_partition(x: torch.Tensor, grid: tuple[int, int], window: int) -> torch.Tensor:
    """[B, h*w, C] raster tokens -> [B, nW, window*window, C], windows in raster order."""
    b, _, c = x.shape
    h, w = grid
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // window) * (w // window), window * window, c)


def window_merge(y: torch.Tensor, grid: tuple[int, int], window: int) -> torch.Tensor:
    """Inverse of ``window_partition``: [B, nW, window*window, C] -> [B, h*w, C]."""
    b, _, _, c = y.shape
    h, w = grid
    y = y.view(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return y.reshape(b, h * w, c)


def mean_by_assignment(x: torch.Tensor, assign: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the tokens of each group.

    x [B, N, D]; assign [B, N] long output slot per input token, -1 = dropped; returns
    (tokens [B, m, D] = mean of each slot's members, membership [B, N, m] 0/1 float).
    """
    membership = F.one_hot(assign + 1, m + 1)[..., 1:].to(x.dtype)  # slot -1 -> all-zero row
    counts = membership.sum(dim=1).clamp_min(1.0)  # [B, m]
    tokens = membership.transpose(1, 2) @ x / counts.unsqueeze(-1)
    return tokens, membership


# ----------------------------------------------------------------------------- learned layers


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Two-layer GELU MLP (the papers' "MLP" without further detail)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


def make_attention(dim: int, num_heads: int, who: str) -> nn.MultiheadAttention:
    """Multi-head cross-attention with q/k/v and output projections; checks the head split."""
    positive_int(num_heads, "num_heads", who)
    if dim % num_heads:
        raise ValueError(f"{who}: dim {dim} is not divisible by num_heads {num_heads}")
    return nn.MultiheadAttention(dim, num_heads, batch_first=True)


def attend(attn: nn.MultiheadAttention, query: torch.Tensor, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """query [B, Q, D] attends to kv [B, K, D] -> (out [B, Q, D], weights [B, Q, K] mean over heads)."""
    out, weights = attn(query, kv, kv, need_weights=True, average_attn_weights=True)
    return out, weights


# ----------------------------------------------------------------------------- shared base


class BudgetedCompressor(Compressor):
    """A pre-LM method that emits exactly ``budget`` tokens per camera (DivPrune, ToMe, VisionZip,
    random): holds the validated ``dim``/``budget`` and the checks every call repeats."""

    def __init__(self, dim: int, budget: int = 80) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", self.who)
        self.budget = positive_int(budget, "budget", self.who)

    @property
    def who(self) -> str:
        return type(self).__name__

    def output_tokens(self, grid: tuple[int, int]) -> int:
        return check_budget(self.budget, grid[0] * grid[1], self.who)

    def check_input(self, visual_tokens: torch.Tensor, grid: tuple[int, int]) -> tuple[int, int, int]:
        """Validate one camera's tokens against the grid, width and budget; return (B, N, D)."""
        b, n, d = check_tokens(visual_tokens, grid, self.dim, self.who)
        check_budget(self.budget, n, self.who)
        return b, n, d


class InstructionGuidedAttention(Compressor):
    """Shared core of Compressor-VLA's two learned branches (STC, SRC): the validated widths, a
    pre-norm on the visual tokens and one cross-attention; subclasses add their instruction MLPs
    (only when ``use_instruction``) and the queries."""

    learned = True

    def __init__(self, dim: int, num_heads: int = 8, hidden: int | None = None,
                 instruction_dim: int | None = None, use_instruction: bool = True) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", self.who)
        self.hidden = positive_int(hidden if hidden is not None else dim, "hidden", self.who)
        self.instruction_dim = positive_int(instruction_dim if instruction_dim is not None else dim,
                                            "instruction_dim", self.who)
        self.use_instruction = bool(use_instruction)
        self.norm = nn.LayerNorm(dim)
        self.attn = make_attention(dim, num_heads, self.who)

    @property
    def who(self) -> str:
        return type(self).__name__

    def pooled(self, instruction: InstructionContext | None, batch: int) -> torch.Tensor:
        """The pooled instruction [B, instruction_dim] (clear error if the caller gave none)."""
        return pooled_instruction(instruction, batch, self.instruction_dim, self.who)
