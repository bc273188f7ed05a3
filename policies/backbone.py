"""The two transformers models inside the policy: the SigLIP vision tower and the decoder LM.

Both are built from transformers configs (random init) or loaded with ``from_pretrained(<local
dir>, local_files_only=True)``; nothing here can download. When a local checkpoint is loaded, its
dims are written back into the policy config so the saved config (and fingerprint) describe the
weights actually used.

``LanguageBackbone.forward`` runs the decoder layers one by one instead of calling the HF model,
because in-LM token selection (FastV, EfficientVLA) has to shorten the sequence between two layers:

    layers 0 .. K-2                      full sequence, SDPA attention
    layer  K-1                           full sequence, eager attention -> attention probs [B,H,S,S]
    compressor.select(hidden, probs, visual_index, instruction_index, budget)
    gather kept visual tokens + every non-visual token; keep their ORIGINAL position ids
    layers K .. L-1                      shorter sequence, SDPA attention

Attention is causal (as in OpenVLA: visual, instruction and state tokens come first, the action
queries last, so every query sees the whole prompt and the queries before it). Padding tokens of
the instruction are masked as keys. The mask is built from position ids, so it stays correct after
tokens are dropped.
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from policies.configuration_vla import BackboneConfig, VisionConfig


def _local_dir(path: str, what: str) -> str:
    p = Path(path).expanduser()
    if not p.is_dir() or not (p / "config.json").is_file():
        raise FileNotFoundError(f"{what} '{p}' is not a local model directory (no config.json there)")
    return str(p)


# --------------------------------------------------------------------------------------------------
# Vision tower
# --------------------------------------------------------------------------------------------------
def build_vision_tower(cfg: VisionConfig, path: str | None = None) -> nn.Module:
    """A ``SiglipVisionModel``; with ``path``, loaded from that local dir and ``cfg`` updated to match."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    if path:
        tower = SiglipVisionModel.from_pretrained(_local_dir(path, "vision_path"), local_files_only=True)
        hf = tower.config
        cfg.image_size, cfg.patch_size = hf.image_size, hf.patch_size
        cfg.hidden_size, cfg.num_layers = hf.hidden_size, hf.num_hidden_layers
        cfg.num_heads, cfg.intermediate_size = hf.num_attention_heads, hf.intermediate_size
        return tower
    hf = SiglipVisionConfig(
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        vision_use_head=False,  # we keep the token grid; no pooled MAP head
        attn_implementation="sdpa",
    )
    return SiglipVisionModel(hf)


class VisionFiLM(nn.Module):
    """Instruction FiLM inside a SigLIP tower: ``x <- (1 + gamma) * x + beta`` per channel.

    Applied to the patch embeddings and to the output of every encoder layer (``num_layers + 1``
    points), with (gamma, beta) predicted from the pooled instruction. Why: a tower trained from
    scratch sees every object alike, and the LM must then find "the red cube" among 100+ visual
    tokens by attention alone; modulating the tower lets the instruction pick the features early
    (RT-1, BC-Z). The last layer starts at zero, so a new model starts as the unconditioned tower.
    """

    def __init__(self, instruction_dim: int, dim: int, num_layers: int) -> None:
        super().__init__()
        self.dim, self.points = dim, num_layers + 1
        self.net = nn.Sequential(
            nn.Linear(instruction_dim, instruction_dim), nn.GELU(), nn.Linear(instruction_dim, 2 * self.points * dim)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """[B, instruction_dim] -> [B, points, 2, dim] (gamma - 1, beta)."""
        return self.net(pooled).view(-1, self.points, 2, self.dim)

    @contextmanager
    def applied(self, tower: nn.Module, params: torch.Tensor):
        """Within the block, ``tower`` runs modulated by ``params`` [B_images, points, 2, dim]."""
        vm = tower.vision_model
        modules = [vm.embeddings, *vm.encoder.layers]
        if len(modules) != self.points:
            raise ValueError(f"VisionFiLM was built for {self.points - 1} tower layers, the tower has {len(modules) - 1}")

        def hook_for(i: int):
            gamma, beta = 1.0 + params[:, i, 0, None, :], params[:, i, 1, None, :]

            def hook(_module, _inputs, output):
                if isinstance(output, tuple):  # older transformers return (hidden, ...) from a layer
                    return (gamma * output[0] + beta, *output[1:])
                return gamma * output + beta

            return hook

        handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(modules)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


# --------------------------------------------------------------------------------------------------
# Language backbone
# --------------------------------------------------------------------------------------------------
def _hf_lm_config(cfg: BackboneConfig):
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        vocab_size=cfg.vocab_size,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        pad_token_id=0,
        attn_implementation="sdpa",
    )
    if cfg.type == "llama":
        return LlamaConfig(**common)
    return Qwen2Config(**common, use_sliding_window=False, tie_word_embeddings=False)


def build_language_model(cfg: BackboneConfig, path: str | None = None) -> nn.Module:
    """``LlamaModel`` / ``Qwen2Model`` (decoder without LM head); with ``path`` loaded locally."""
    from transformers import AutoModel

    if path:
        lm = AutoModel.from_pretrained(_local_dir(path, "backbone_path"), local_files_only=True)
        hf = lm.config
        if hf.model_type not in ("llama", "qwen2"):
            raise ValueError(f"backbone_path '{path}' holds a '{hf.model_type}' model; expected llama or qwen2")
        cfg.type = hf.model_type
        cfg.hidden_size, cfg.num_layers = hf.hidden_size, hf.num_hidden_layers
        cfg.num_heads, cfg.num_kv_heads = hf.num_attention_heads, hf.num_key_value_heads
        cfg.intermediate_size, cfg.vocab_size = hf.intermediate_size, hf.vocab_size
        cfg.max_position_embeddings = hf.max_position_embeddings
        lm.config._attn_implementation = "sdpa"
        return lm
    from transformers import LlamaModel, Qwen2Model

    hf = _hf_lm_config(cfg)
    return LlamaModel(hf) if cfg.type == "llama" else Qwen2Model(hf)


StageTimer = Callable[[str], AbstractContextManager]  # stage(name) -> context (vla.cost)


@contextmanager
def _null_stage(_name: str):
    yield


class LanguageBackbone(nn.Module):
    """Runs the decoder layer by layer, optionally dropping visual tokens after layer K (in-LM methods)."""

    def __init__(self, cfg: BackboneConfig, path: str | None = None):
        super().__init__()
        self.lm = build_language_model(cfg, path)
        self.hidden_size = self.lm.config.hidden_size
        self.bidirectional_prefix = cfg.prefix_attention == "bidirectional"

    @property
    def num_layers(self) -> int:
        return len(self.lm.layers)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.embed_tokens(ids)

    def forward(
        self,
        embeds: torch.Tensor,  # [B, S, D]
        key_mask: torch.Tensor,  # [B, S] bool, False = padding
        visual_index: torch.Tensor,  # [Nv] long
        instruction_index: torch.Tensor,  # [Ni] long
        selector=None,  # an InLMCompressor, or None
        budget: int | None = None,
        stage: StageTimer = _null_stage,
    ) -> tuple[torch.Tensor, dict]:
        """Return (final hidden states [B, S', D], info). Non-visual tokens keep their order at the end."""
        b, s, _ = embeds.shape
        positions = torch.arange(s, device=embeds.device).unsqueeze(0).expand(b, s)
        hidden, info = embeds, {"visual_tokens_in": int(visual_index.numel())}
        select_at = selector.layer if selector is not None else -1
        # The prefix = the visual tokens and the instruction, which comes right after them. Kept a
        # tensor (not int()): an ONNX export (vla/export.py) then follows the instruction's length.
        prefix_len = instruction_index.max() + 1 if self.bidirectional_prefix else 0
        mask, rope = self._mask_and_rope(hidden, positions, key_mask, prefix_len)
        attn_probs = None
        for i, layer in enumerate(self.lm.layers):
            if i == select_at:
                with stage("compressor"):
                    hidden, positions, key_mask, kept = self._select(
                        hidden, attn_probs, positions, key_mask, visual_index, instruction_index, selector, budget
                    )
                mask, rope = self._mask_and_rope(hidden, positions, key_mask, prefix_len)
                info["kept"] = kept
            want_probs = i == select_at - 1
            hidden, attn_probs = self._run_layer(layer, hidden, positions, mask, rope, want_probs)
        info["visual_tokens_after"] = int(budget) if select_at >= 0 else info["visual_tokens_in"]
        return self.lm.norm(hidden), info

    def _mask_and_rope(self, hidden, positions, key_mask, prefix_len: int):
        mask = _additive_mask(positions, key_mask, hidden.dtype, prefix_len)
        return mask, self.lm.rotary_emb(hidden, position_ids=positions)

    def _run_layer(self, layer, hidden, positions, mask, rope, want_probs: bool):
        if not want_probs:
            return layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rope), None
        captured: dict[str, torch.Tensor] = {}

        def grab(_module, _inputs, output) -> None:  # must return None, or it replaces the output
            captured["p"] = output[1]

        use_eager_attention(layer.self_attn)  # the only attention path that returns the probs
        handle = layer.self_attn.register_forward_hook(grab)
        try:
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rope)
        finally:
            handle.remove()
        return hidden, captured["p"]

    @staticmethod
    def _select(hidden, probs, positions, key_mask, visual_index, instruction_index, selector, budget):
        keep, kept = selector.select(hidden, probs, visual_index, instruction_index, budget)
        keep = keep.sort(dim=1).values  # keep visual order (and so causal order) stable
        b = hidden.shape[0]
        visual_set = torch.zeros(hidden.shape[1], dtype=torch.bool, device=hidden.device)
        visual_set[visual_index] = True
        rest = torch.nonzero(~visual_set).squeeze(1)
        index = torch.cat([visual_index[keep], rest.unsqueeze(0).expand(b, -1)], dim=1)  # [B, S']
        gather = index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        return (
            hidden.gather(1, gather),
            positions.gather(1, index),
            key_mask.gather(1, index),
            kept,
        )


def use_eager_attention(attn: nn.Module) -> None:
    """Make ONE attention module use eager attention (which returns its probabilities).

    HF attention modules read ``self.config._attn_implementation`` at call time and all layers share
    one config object, so this module gets a private shallow copy; the other layers keep SDPA.
    """
    if getattr(attn, "_vla_eager", False):
        return
    cfg = copy.copy(attn.config)
    cfg._attn_implementation = "eager"
    attn.config = cfg
    attn._vla_eager = True


def _additive_mask(positions: torch.Tensor, key_mask: torch.Tensor, dtype: torch.dtype,
                   prefix_len: int | torch.Tensor = 0) -> torch.Tensor:
    """[B, 1, S, S] additive mask: key j visible to query i iff pos_j <= pos_i and j is not padding;
    with ``prefix_len`` = P, queries in the prefix (pos < P) also see every later prefix key."""
    horizon = positions.clamp(min=prefix_len - 1)  # how far each query sees
    allowed = (horizon.unsqueeze(2) >= positions.unsqueeze(1)) & key_mask.unsqueeze(1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=positions.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)
