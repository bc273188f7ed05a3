"""Action heads: turn the backbone's action-query outputs into an action chunk [B, H, A].

Both heads share one interface so the policy never branches on the head type:

    head.loss(cond, actions, pad_mask) -> per-sample loss [B]     (training)
    head.sample(cond, noise=None)      -> actions [B, H, A]       (inference, no grad by caller)

``cond`` is the backbone output at the action-query positions, [B, Q, D_lm].

- ``L1ChunkHead`` (OpenVLA-OFT style parallel decoding): one forward predicts the whole chunk,
  query h -> action h through a small MLP; L1 loss.
- ``FlowMatchingHead`` (pi0/SmolVLA style): H noisy action tokens go through a stack of
  ``FlowBlock``s that attend to [cond tokens; action tokens] and are modulated by the flow time t
  (adaLN as in DiT, gates initialised open). Training: MSE between the predicted and true velocity
  u = noise - action at a random t ~ Beta(1.5, 1) (x_t = t*noise + (1-t)*action).
  Inference: K Euler steps from t = 1 (pure noise) to t = 0.

Step cache (EfficientVLA's action-head cache, ``head.cache_interval`` = N, 1 = off): every block
computes its update as two *branches*, ``FlowBlock.attn_branch`` and ``FlowBlock.mlp_branch``.
During ``sample`` each block recomputes both only on denoising steps with ``step % N == 0`` and
stores them; on the other steps it adds the stored outputs instead. What is cached, per block:
the gated residual updates ``gate_a * Attn(...)`` and ``gate_m * MLP(...)`` exactly as added to the
token stream (so adaLN modulation, the attention over [cond; actions] and the MLP are all skipped
on a reused step, and they carry the flow time of the step that computed them). Recomputed every
step: the time embedding, the action input projection and the output layer (the velocity
therefore still depends on x_t and t on every step). The cache lives for one ``sample`` call.
Block FLOPs per chunk drop to ceil(K / N) / K of the uncached ones (K = num_flow_steps); with
N = 1 the code path is the uncached one, bit for bit. Training (``loss``) never caches.

Real-time chunking (Black, Galliker & Levine 2025, "Real-Time Execution of Action Chunking Flow
Policies"): ``FlowMatchingHead.sample(cond, noise, rtc=RTCGuide(...))`` inpaints the new chunk so it
agrees with the previous one while that one keeps executing during the inference delay d. Every Euler
step adds a pseudo-inverse (PiGDM) guidance term: with x0 = x_t - t v (the denoised estimate) and
e = W * (target - x0), the velocity becomes v - w_t * J^T e (J = dx0/dx_t, one vector-Jacobian
product through the head per step, the backbone is not touched), w_t = min(beta, (1-tau)/tau / r^2),
r^2 = (1-tau)^2 / (tau^2 + (1-tau)^2), tau = 1 - t (the paper's time). The mask W is 1 on the first d
steps (the actions that will execute), decays exponentially over the rest of the overlap and is 0
after it (:func:`rtc_weights`). ``rtc=None`` runs the unguided loop above, unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from policies.configuration_vla import ActionHeadConfig


def build_action_head(cfg: ActionHeadConfig, cond_dim: int, chunk_size: int, action_dim: int) -> nn.Module:
    if cfg.type == "l1":
        return L1ChunkHead(cfg, cond_dim, chunk_size, action_dim)
    if cfg.type == "flow":
        return FlowMatchingHead(cfg, cond_dim, chunk_size, action_dim)
    raise ValueError(f"unknown action head '{cfg.type}' (expected 'flow' or 'l1')")


def _masked_mean(per_elem: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over (H, A) of [B, H, A], ignoring padded steps (pad_mask [B, H] True = padding)."""
    if pad_mask is None:
        return per_elem.mean(dim=(1, 2))
    valid = (~pad_mask).unsqueeze(-1).to(per_elem.dtype)
    denom = (valid.sum(dim=(1, 2)) * per_elem.shape[-1]).clamp(min=1.0)
    return (per_elem * valid).sum(dim=(1, 2)) / denom


# --------------------------------------------------------------------------------------------------
# L1 chunk head
# --------------------------------------------------------------------------------------------------
class L1ChunkHead(nn.Module):
    """Parallel decoding: query token h -> action h (requires Q == H). L1 loss."""

    def __init__(self, cfg: ActionHeadConfig, cond_dim: int, chunk_size: int, action_dim: int):
        super().__init__()
        self.chunk_size, self.action_dim = chunk_size, action_dim
        self.mlp = nn.Sequential(
            nn.LayerNorm(cond_dim),
            nn.Linear(cond_dim, cfg.hidden_size),
            nn.GELU(),
            nn.Linear(cfg.hidden_size, action_dim),
        )

    def sample(self, cond: torch.Tensor, noise: torch.Tensor | None = None, rtc: RTCGuide | None = None) -> torch.Tensor:
        if rtc is not None:
            raise ValueError("real-time chunking (rtc=) guides flow sampling; this checkpoint has an L1 action head "
                             "(head.type=l1): use execution=async or sync")
        return self.mlp(cond)

    def loss(self, cond: torch.Tensor, actions: torch.Tensor, pad_mask: torch.Tensor | None = None):
        return _masked_mean((self.mlp(cond) - actions).abs(), pad_mask)


# --------------------------------------------------------------------------------------------------
# Flow-matching head
# --------------------------------------------------------------------------------------------------
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled to [0, 1000] as in DiT) -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0).unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class FlowBlock(nn.Module):
    """One DiT-style block: action tokens attend to [cond; actions], then an MLP; both gated by t.

    The two residual updates are separate methods (``attn_branch``, ``mlp_branch``) so a step cache
    can reuse either one across denoising steps.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"head.hidden_size={width} is not a multiple of head.num_heads={heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.norm_cond = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.ada = nn.Linear(width, 6 * width)  # shift/scale/gate for attention and MLP
        # Start time-independent with open gates (shift = scale = 0, gate = 1). DiT's adaLN-Zero
        # closes the gates instead, but then no gradient reaches the backbone on the first steps
        # (the head would ignore its conditioning until the gates open).
        nn.init.zeros_(self.ada.weight)
        with torch.no_grad():
            self.ada.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 1.0]).repeat_interleave(width))

    def modulation(self, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.ada(F.silu(temb)).chunk(6, dim=-1)

    def attn_branch(self, x, cond, shift, scale, gate) -> torch.Tensor:
        b, h, _ = x.shape
        y = _modulate(self.norm1(x), shift, scale)
        ctx = torch.cat([self.norm_cond(cond), y], dim=1)
        q = self.q(y).view(b, h, self.heads, -1).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h, -1)
        return gate.unsqueeze(1) * self.out(o)

    def mlp_branch(self, x, shift, scale, gate) -> torch.Tensor:
        return gate.unsqueeze(1) * self.mlp(_modulate(self.norm2(x), shift, scale))

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor, temb: torch.Tensor, cache: dict | None = None, refresh: bool = True
    ) -> torch.Tensor:
        """One block. With ``cache`` (a dict owned by the caller): ``refresh`` recomputes both branch
        outputs and stores them; otherwise the stored ones are added (the step-cache hit)."""
        if cache is not None and not refresh:
            return x + cache["attn"] + cache["mlp"]
        s1, c1, g1, s2, c2, g2 = self.modulation(temb)
        attn = self.attn_branch(x, cond, s1, c1, g1)
        x = x + attn
        mlp = self.mlp_branch(x, s2, c2, g2)
        if cache is not None:
            cache["attn"], cache["mlp"] = attn, mlp
        return x + mlp


class FlowMatchingHead(nn.Module):
    """Flow matching over the action chunk, conditioned on the backbone's action-query outputs."""

    def __init__(self, cfg: ActionHeadConfig, cond_dim: int, chunk_size: int, action_dim: int):
        super().__init__()
        w = cfg.hidden_size
        self.chunk_size, self.action_dim, self.num_steps = chunk_size, action_dim, cfg.num_flow_steps
        self.cache_interval = cfg.cache_interval  # EfficientVLA step cache (1 = off); see module docstring
        self.action_in = nn.Linear(action_dim, w)
        self.pos = nn.Parameter(torch.randn(chunk_size, w) * 0.02)
        self.cond_in = nn.Linear(cond_dim, w)
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList(FlowBlock(w, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False)
        self.ada_out = nn.Linear(w, 2 * w)
        nn.init.zeros_(self.ada_out.weight)
        nn.init.zeros_(self.ada_out.bias)
        self.action_out = nn.Linear(w, action_dim)
        self._width = w

    def velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, step: int | None = None, cache: dict | None = None
    ):
        """Predicted velocity at (x_t, t). ``step`` = denoising step index (None in training);
        ``cache`` = the step cache of this ``sample`` call (None = no caching)."""
        temb = self.time_mlp(timestep_embedding(t, self._width).to(x_t.dtype))
        x = self.action_in(x_t) + self.pos
        refresh = cache is None or step is None or step % self.cache_interval == 0
        for i, block in enumerate(self.blocks):
            x = block(x, cond, temb, None if cache is None else cache.setdefault(i, {}), refresh)
        shift, scale = self.ada_out(F.silu(temb)).chunk(2, dim=-1)
        return self.action_out(_modulate(self.norm_out(x), shift, scale))

    def loss(self, cond: torch.Tensor, actions: torch.Tensor, pad_mask: torch.Tensor | None = None):
        b = actions.shape[0]
        cond = self.cond_in(cond)
        noise = torch.randn_like(actions)
        t = torch.distributions.Beta(1.5, 1.0).sample((b,)).to(actions.device, actions.dtype) * 0.999 + 0.001
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        v = self.velocity(x_t, t, cond)
        return _masked_mean((v - (noise - actions)) ** 2, pad_mask)

    def sample(self, cond: torch.Tensor, noise: torch.Tensor | None = None, rtc: RTCGuide | None = None) -> torch.Tensor:
        b = cond.shape[0]
        cond = self.cond_in(cond)
        shape = (b, self.chunk_size, self.action_dim)
        x = torch.randn(shape, device=cond.device, dtype=cond.dtype) if noise is None else noise.to(cond)
        if rtc is not None:
            return self._sample_guided(cond, x, rtc)
        dt = -1.0 / self.num_steps
        cache = {} if self.cache_interval > 1 else None
        for step in range(self.num_steps):
            t = torch.full((b,), 1.0 + step * dt, device=cond.device, dtype=cond.dtype)
            x = x + dt * self.velocity(x, t, cond, step=step, cache=cache)
        return x

    def _sample_guided(self, cond: torch.Tensor, x: torch.Tensor, rtc: RTCGuide) -> torch.Tensor:
        """The Euler loop of ``sample`` with RTC guidance (module docstring). Gradients are taken
        w.r.t. x_t only; callers may be under ``no_grad``/``inference_mode`` (hence the clones)."""
        b = x.shape[0]
        dt = -1.0 / self.num_steps
        cache = {} if self.cache_interval > 1 else None
        with torch.inference_mode(False), torch.enable_grad():
            cond, x = cond.clone(), x.clone()  # inference-mode tensors cannot enter autograd: normal copies
            target, weights = rtc.aligned(b, self.chunk_size, self.action_dim, x)
            for step in range(self.num_steps):
                t = 1.0 + step * dt
                x_t = x.detach().requires_grad_(True)
                v = self.velocity(x_t, torch.full((b,), t, device=x.device, dtype=x.dtype), cond, step=step, cache=cache)
                x0 = x_t - t * v
                (vjp,) = torch.autograd.grad(x0, x_t, grad_outputs=(weights * (target - x0)).detach())
                x = (x_t + dt * (v - rtc_guidance_weight(1.0 - t, rtc.beta) * vjp)).detach()
                if cache:  # a reused block output must not carry this step's graph into the next
                    for entry in cache.values():
                        for key in entry:
                            entry[key] = entry[key].detach()
        return x


# --------------------------------------------------------------------------------------------------
# Real-time chunking (RTC) guidance
# --------------------------------------------------------------------------------------------------
@dataclass
class RTCGuide:
    """What the next chunk's flow sampling should agree with (normalised action space).

    ``target`` [P, A] or [B, P, A]: the previous chunk's actions aligned to the new chunk's steps 0..P-1
    (P <= chunk size): its first ``delay`` rows are the actions that execute while this chunk is
    inferred (pinned, weight 1), the rest the previous chunk's remaining overlap (soft, decaying).
    ``horizon``: where the soft mask ends (default P; clipped to P). ``beta``: the guidance-weight cap
    (the paper's beta; 5 there)."""

    target: Any
    delay: int
    horizon: int | None = None
    beta: float = 5.0

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError(f"rtc delay must be >= 0, got {self.delay}")
        if self.beta <= 0:
            raise ValueError(f"rtc beta (guidance weight cap) must be > 0, got {self.beta}")

    def aligned(self, batch: int, chunk_size: int, action_dim: int, like: torch.Tensor):
        """(target [B, H, A] zero-padded, weights [1, H, 1]) on ``like``'s device/dtype."""
        y = torch.as_tensor(self.target).to(like.device, like.dtype)
        if y.ndim == 2:
            y = y.unsqueeze(0)
        if y.ndim != 3 or y.shape[0] not in (1, batch) or y.shape[1] > chunk_size or y.shape[2] != action_dim:
            raise ValueError(f"rtc target must be [P <= {chunk_size}, {action_dim}] or [B={batch}, P, {action_dim}], "
                             f"got {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise ValueError("rtc target has NaN/Inf")
        p = y.shape[1]
        if self.delay > p:
            raise ValueError(f"rtc delay {self.delay} is longer than its target ({p} steps)")
        padded = torch.zeros(y.shape[0], chunk_size, action_dim, device=like.device, dtype=like.dtype)
        padded[:, :p] = y
        end = p if self.horizon is None else max(self.delay, min(int(self.horizon), p))
        w = rtc_weights(self.delay, end, chunk_size).to(like.device, like.dtype)
        return padded.expand(batch, -1, -1), w.view(1, -1, 1)


def rtc_weights(delay: int, end: int, chunk_size: int) -> torch.Tensor:
    """The RTC soft mask [chunk_size]: 1 for i < delay; c_i (e^c_i - 1) / (e - 1) with
    c_i = (end - i) / (end - delay + 1) for delay <= i < end; 0 from ``end`` on (the paper's eq. 5,
    end = H - s: where the previous chunk's overlap ends)."""
    i = torch.arange(chunk_size, dtype=torch.float32)
    c = (end - i) / (end - delay + 1)
    soft = c * torch.expm1(c) / (math.e - 1)
    return torch.where(i < delay, torch.ones_like(i), torch.where(i < end, soft, torch.zeros_like(i)))


def rtc_guidance_weight(tau: float, beta: float) -> float:
    """min(beta, (1 - tau) / tau / r^2) with r^2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2); tau in [0, 1)
    (0 = pure noise, where the uncapped weight is infinite)."""
    if tau <= 0.0 or tau >= 1.0:
        return float(beta)
    return float(min(beta, (tau**2 + (1 - tau) ** 2) / (tau * (1 - tau))))
