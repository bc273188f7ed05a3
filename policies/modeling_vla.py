"""The `vla` policy: lerobot ``PreTrainedPolicy`` wrapper -> ``VLAModel`` network -> helpers.

```
 cameras [B,3,H,W] x C ──► SigLIP tower (shared) ──► + camera embedding ──► tokens [B,N,Dv] per camera
                                                                              │
 instruction ids [B,T] ──► LM input embeddings ──► InstructionContext ───────►│ compressor (pre-LM, per camera)
                               │                   (pooled/tokens -> Dv)      ▼
                               │                                   tokens [B,M,Dv] ──► projector ──► [B,ΣM,Dl]
                               ▼                                                                      │
 sequence = [ visual (ΣM) | instruction (T) | state (1) | action queries (Q) ]  ◄─────────────────────┘
                               │
                     LanguageBackbone (Llama/Qwen2 layers; in-LM methods drop visual tokens at layer K)
                               │  hidden at the Q query positions [B,Q,Dl]
                               ▼
                     action head (flow matching | L1 chunk) ──► actions [B,H,A] (normalised space)
```

"Visual tokens entering the backbone" = ΣM (after pre-LM compression); in-LM methods report the
count after their layer as ``visual_tokens_after``; ``predict_action_chunk_with_info`` returns
them, and the keep masks, with the actions.

Batches come from ``processor_vla`` (images float [0, 1] channel-first, normalised state, token
ids + mask). ``forward`` returns (loss, logs); ``predict_action_chunk`` returns a normalised chunk
(the postprocessor un-normalises); ``select_action`` pops one action from a queue refilled with
the first ``n_action_steps`` of a new chunk.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections import deque
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import compressors
from compressors.base import InstructionContext
from lerobot.configs import PreTrainedConfig
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from policies.action_heads import build_action_head
from policies.backbone import LanguageBackbone, VisionFiLM, build_vision_tower, use_eager_attention
from policies.vision_pruning import run_pruned_tower
from policies.checkpoint_files import (
    POSTPROCESSOR_FILE,
    PREPROCESSOR_FILE,
    CheckpointError,
    check_processor_file,
    trust_from_env,
)
from policies.configuration_vla import VLAConfig


CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FINGERPRINT_FILE = "fingerprint.json"
ACTION_IS_PAD = "action_is_pad"
# Training-only target of the keypose auxiliary loss (VLAConfig.keypose_loss_weight), [B, 3] in
# metres; regressed in units of KEYPOSE_SCALE so typical values are O(1).
KEYPOSE = "keypose_delta"
KEYPOSE_SCALE = 0.1
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@contextmanager
def _no_stage(_name: str):
    yield


class VLAPolicy(PreTrainedPolicy):
    """lerobot wrapper: batching conventions, the action queue, checkpoint I/O."""

    config_class = VLAConfig
    name = "vla"

    def __init__(self, config: VLAConfig, dataset_stats=None, dataset_meta=None, load_pretrained_parts=True, **_):
        super().__init__(config)
        config.validate_features()
        self.config: VLAConfig = config
        self.model = VLAModel(config, load_pretrained_parts=load_pretrained_parts)
        self.model.to(TORCH_DTYPES[config.dtype])
        self.reset()

    # --- lerobot API -----------------------------------------------------------------------------
    def get_optim_params(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def reset(self) -> None:
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)

    def forward(self, batch: dict[str, Any], reduction: str = "mean") -> tuple[Tensor, dict]:
        inputs = self._inputs(batch)
        if ACTION not in batch:
            raise ValueError(f"training batch has no '{ACTION}' (expected [B, chunk_size, action_dim])")
        actions = batch[ACTION].to(self._dtype)
        if actions.ndim != 3 or actions.shape[1] != self.config.chunk_size:
            raise ValueError(
                f"'{ACTION}' must be [B, chunk_size={self.config.chunk_size}, A], got {tuple(actions.shape)}"
            )
        cond, info = self.model.encode(inputs)
        per_sample = self.model.head.loss(cond, actions, batch.get(ACTION_IS_PAD))
        logs = {"loss": float(per_sample.mean().detach()), "visual_tokens": info["visual_tokens_in"]}
        if self.model.keypose_head is not None and KEYPOSE in batch:
            keypose = self.keypose_loss(cond, batch[KEYPOSE])
            logs["action_loss"], logs["keypose_loss"] = logs["loss"], float(keypose.mean().detach())
            per_sample = per_sample + self.config.keypose_loss_weight * keypose
            logs["loss"] = float(per_sample.mean().detach())
        if info["visual_tokens_after"] != info["visual_tokens_in"]:  # in-LM methods
            logs["visual_tokens_after"] = info["visual_tokens_after"]
        if reduction == "none":
            return per_sample, logs
        return per_sample.mean(), logs

    def keypose_loss(self, cond: Tensor, target: Tensor) -> Tensor:
        """Per-sample smooth-L1 of the predicted next keypose (relative, m) from the query outputs."""
        target = target.to(cond.device, cond.dtype)
        if target.ndim != 2 or target.shape[1] != 3 or not torch.isfinite(target).all():
            raise ValueError(f"'{KEYPOSE}' must be finite [B, 3] (metres), got {tuple(target.shape)}")
        pred = self.model.keypose(cond)
        return nn.functional.smooth_l1_loss(pred, target / KEYPOSE_SCALE, reduction="none").mean(dim=1)

    @torch.no_grad()
    def predict_keypose(self, batch: dict[str, Any]) -> Tensor:
        """[B, 3] m: where the keypose head expects the gripper to act next, relative to now."""
        if self.model.keypose_head is None:
            raise ValueError("this policy has no keypose head (trained with keypose_loss_weight=0)")
        cond, _ = self.model.encode(self._inputs(batch))
        return self.model.keypose(cond).float() * KEYPOSE_SCALE

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Any], noise: Tensor | None = None, stage=None, rtc=None,
                             **_) -> Tensor:
        """[B, chunk_size, action_dim] in the normalised action space (the postprocessor undoes it).

        ``noise`` fixes the flow head's initial sample (same noise -> same actions); ``stage`` is an
        optional ``stage(name)`` context-manager factory that ``vla.cost`` uses to time/count
        the vision, compressor, backbone and action_head stages. ``rtc``: a
        ``policies.action_heads.RTCGuide`` (real-time chunking: the flow sampling is guided to agree
        with the executing prefix of the previous chunk, normalised); None = unguided, unchanged.
        """
        return self.predict_action_chunk_with_info(batch, noise=noise, stage=stage, rtc=rtc)[0]

    @torch.no_grad()
    def predict_action_chunk_with_info(self, batch: dict[str, Any], noise: Tensor | None = None, stage=None,
                                       rtc=None) -> tuple[Tensor, dict[str, Any]]:
        """``predict_action_chunk`` plus what the compression did in this call, returned with the
        actions (no state kept on the policy): ``{"visual_tokens_in": int, "visual_tokens_after":
        int, "kept": {camera key: [B, N] bool | [B, N, M] float}}`` (vla/overlay.py draws ``kept``)."""
        stage = stage or _no_stage
        inputs = self._inputs(batch)
        cond, info = self.model.encode(inputs, stage=stage)
        with stage("action_head"):
            actions = self.model.head.sample(cond, noise) if rtc is None else self.model.head.sample(cond, noise, rtc=rtc)
        compression = {
            "visual_tokens_in": info["visual_tokens_in"],
            "visual_tokens_after": info["visual_tokens_after"],
            "kept": {k: v.detach() for k, v in info["kept"].items()},
        }
        return actions.float(), compression

    @torch.no_grad()
    def select_action(self, batch: dict[str, Any], noise: Tensor | None = None, **_) -> Tensor:
        if not self._action_queue:
            chunk = self.predict_action_chunk(batch, noise=noise)[:, : self.config.n_action_steps]
            self._action_queue.extend(chunk.transpose(0, 1))  # queue of [B, A]
        return self._action_queue.popleft()

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def _dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.config.dtype]

    def _inputs(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Pick and check what the network reads; the processor has already validated values."""
        if OBS_LANGUAGE_TOKENS not in batch:
            raise ValueError(
                f"batch has no '{OBS_LANGUAGE_TOKENS}': pass observations through the VLA preprocessor "
                "(policies.processor_vla.make_vla_pre_post_processors) before calling the policy"
            )
        images = []
        for key in self.config.camera_keys:
            if key not in batch:
                raise ValueError(f"batch is missing camera '{key}' (expected float [B, 3, H, W] in [0, 1])")
            img = batch[key]
            size = self.config.vision.image_size
            if img.ndim != 4 or img.shape[1] != 3 or img.shape[-2:] != (size, size):
                raise ValueError(
                    f"'{key}' must be [B, 3, {size}, {size}] after preprocessing, got {tuple(img.shape)}"
                )
            images.append(img)
        device = self.model.queries.device
        return {
            "images": torch.stack(images, dim=1).to(device, self._dtype),  # [B, C, 3, H, W]
            "state": batch[OBS_STATE].to(device, self._dtype),
            "tokens": batch[OBS_LANGUAGE_TOKENS].to(device).long(),
            "token_mask": batch[OBS_LANGUAGE_ATTENTION_MASK].to(device).bool(),
        }

    # --- checkpoints -----------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path, state_dict: dict[str, Tensor] | None = None) -> None:
        super()._save_pretrained(save_directory, state_dict=state_dict)
        fingerprint = {
            "fingerprint": self.config.fingerprint(),
            "architecture": self.config.architecture(),
            # safetensors has no checksum: without this a flipped byte in the data is silent
            "weights_sha256": _sha256(Path(save_directory) / WEIGHTS_FILE),
        }
        (Path(save_directory) / FINGERPRINT_FILE).write_text(json.dumps(fingerprint, indent=2, default=str))

    @classmethod
    def from_pretrained(
        cls, pretrained_name_or_path: str | Path, *, config: VLAConfig | None = None, strict: bool = True,
        trust_checkpoint_code: bool | None = None, **kwargs
    ) -> "VLAPolicy":
        """Load a local checkpoint folder; a requested ``config`` must match its architecture.

        Raises ``FileNotFoundError`` naming a missing folder/file and ``CheckpointError`` for an
        architecture mismatch (every differing field, checkpoint vs requested), a config.json edited
        away from the architecture recorded in fingerprint.json, a corrupt file, or processor steps
        that would run code (``UntrustedCheckpointError``; ``trust_checkpoint_code`` defaults to
        ``$VLA_TRUST_CHECKPOINT_CODE``). The processor files are checked here too because
        ``lerobot-eval`` loads the weights through this method and the pipelines right after.
        """
        path = Path(pretrained_name_or_path)
        for needed in (path, path / CONFIG_FILE, path / WEIGHTS_FILE):
            if not needed.exists():
                raise FileNotFoundError(f"VLA checkpoint file not found: '{needed}' (checkpoints are local folders)")
        trust = trust_from_env() if trust_checkpoint_code is None else trust_checkpoint_code
        for name in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE):
            if (path / name).is_file():
                check_processor_file(path, name, trust_code=trust)
        hub_keys = ("force_download", "resume_download", "proxies", "token", "cache_dir", "local_files_only", "revision")
        for key in hub_keys:
            kwargs.pop(key, None)
        saved = _read_config(path, kwargs.pop("cli_overrides", []))
        if config is None:
            config = saved
        else:
            if not config.input_features:
                config.input_features, config.output_features = saved.input_features, saved.output_features
            check_architecture(saved, config, where=str(path))
        # Before any tensor is built: an edited config.json must not surface as a torch size mismatch.
        _check_fingerprint(path, saved)
        policy = cls(config, load_pretrained_parts=False, **kwargs)
        _check_weights_hash(path)
        state = _read_weights(path / WEIGHTS_FILE)
        try:
            missing, unexpected = policy.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shape mismatch in a folder without fingerprint.json
            raise CheckpointError(f"weights in '{path / WEIGHTS_FILE}' do not fit the architecture in "
                                  f"'{path / CONFIG_FILE}': {e}") from e
        if strict and (missing or unexpected):
            raise CheckpointError(
                f"weights in '{path / WEIGHTS_FILE}' do not fit the model: missing {sorted(missing)[:8]}, "
                f"unexpected {sorted(unexpected)[:8]}"
            )
        policy.to(config.device)
        policy.eval()
        return policy


def _read_config(path: Path, cli_overrides: list[str]) -> VLAConfig:
    try:
        saved = PreTrainedConfig.from_pretrained(path, cli_overrides=cli_overrides)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint config '{path / CONFIG_FILE}' is corrupt: {e}") from e
    if not isinstance(saved, VLAConfig):
        raise CheckpointError(f"'{path}' holds a '{saved.type}' policy, not 'vla'")
    return saved


def _check_fingerprint(path: Path, saved: VLAConfig) -> None:
    """config.json must describe the architecture recorded (with the weights) in fingerprint.json."""
    fp_file = path / FINGERPRINT_FILE
    if not fp_file.is_file():
        return
    try:
        recorded = json.loads(fp_file.read_text()).get("architecture") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint fingerprint '{fp_file}' is corrupt: {e}") from e
    # Field by field on the fields both know (a later version may add fields).
    current = json.loads(json.dumps(saved.architecture(), default=str))
    diffs = [f"{k}: fingerprint {recorded[k]!r} != config {current[k]!r}"
             for k in sorted(recorded.keys() & current.keys()) if recorded[k] != current[k]]
    if diffs:
        raise CheckpointError(
            f"'{path / CONFIG_FILE}' does not match the architecture recorded with the weights in "
            f"'{fp_file}' (the folder was edited or mixed): " + "; ".join(diffs)
        )


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_weights_hash(path: Path) -> None:
    """Compare the weights with the hash in fingerprint.json (when the checkpoint has one)."""
    fp_file = path / FINGERPRINT_FILE
    if not fp_file.is_file():
        return
    try:
        expected = json.loads(fp_file.read_text()).get("weights_sha256")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint fingerprint '{fp_file}' is corrupt: {e}") from e
    if expected and _sha256(path / WEIGHTS_FILE) != expected:
        raise CheckpointError(
            f"checkpoint weights file '{path / WEIGHTS_FILE}' is corrupt: its SHA-256 differs from the one "
            f"recorded in {FINGERPRINT_FILE} when it was saved"
        )


def _read_weights(file: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint weights file '{file}' is corrupt or truncated: {e}") from e


def check_architecture(saved: VLAConfig, requested: VLAConfig, where: str = "checkpoint") -> None:
    """Raise CheckpointError listing every architecture field that differs (checkpoint vs requested)."""
    a, b = saved.architecture(), requested.architecture()
    unset = "<unset>"
    diffs = [
        f"{k}: checkpoint {a.get(k, unset)!r} != requested {b.get(k, unset)!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k, unset) != b.get(k, unset)
    ]
    if diffs:
        raise CheckpointError(f"checkpoint '{where}' does not match the requested config: " + "; ".join(diffs))


# ==================================================================================================
# The network
# ==================================================================================================
class VLAModel(nn.Module):
    """Vision tower + compressor + LM backbone + action head (no lerobot conventions here)."""

    def __init__(self, config: VLAConfig, load_pretrained_parts: bool = True):
        super().__init__()
        self.config = config
        paths = load_pretrained_parts
        self.vision = build_vision_tower(config.vision, config.vision_path if paths else None)
        self.backbone = LanguageBackbone(config.backbone, config.backbone_path if paths else None)
        dv, dl = config.vision.hidden_size, self.backbone.hidden_size
        self.grid = config.vision.grid
        self.camera_embed = nn.Parameter(torch.randn(len(config.camera_keys), dv) * 0.02)
        self.compressor = compressors.build(config.compressor.name, dim=dv, **config.compressor.kwargs)
        self.in_lm = self.compressor.stage == "in_lm"
        if self.in_lm and not 1 <= self.compressor.layer < self.backbone.num_layers:
            raise ValueError(
                f"in-LM compressor '{config.compressor.name}' acts at layer {self.compressor.layer}, which must be "
                f"in [1, backbone.num_layers={self.backbone.num_layers})"
            )
        # VisionZip ranks tokens by the attention they receive in the vision tower: hand it over.
        self.wants_vision_attention = "attention" in inspect.signature(self.compressor.forward).parameters
        per_cam = self.compressor.output_tokens(self.grid)
        if per_cam < 1:
            raise ValueError(f"compressor '{config.compressor.name}' keeps {per_cam} tokens per camera; need >= 1")
        self.instr_to_visual = nn.Linear(dl, dv)
        # instruction.encoder != "word": a pretrained text encoder (frozen; policies/text_encoder.py)
        # replaces the LM's token embeddings for the instruction; None = the word-level embedding.
        self.text_encoder = None
        if config.instruction.encoder != "word":
            from policies.text_encoder import TextEncoder

            self.text_encoder = TextEncoder(config.instruction, dl)
        self.vision_film = VisionFiLM(dl, dv, config.vision.num_layers) if config.vision.film else None
        self.projector = nn.Sequential(nn.Linear(dv, dl), nn.GELU(), nn.Linear(dl, dl))
        self.state_proj = nn.Linear(config.state_dim, dl)
        self.queries = nn.Parameter(torch.randn(config.n_queries, dl) * 0.02)
        self.head = build_action_head(config.head, dl, config.chunk_size, config.action_dim)
        self.keypose_head = (
            nn.Sequential(nn.Linear(dl, dl), nn.GELU(), nn.Linear(dl, 3)) if config.keypose_loss_weight > 0 else None
        )

    # --- stages ----------------------------------------------------------------------------------
    def encode_images(
        self, images: Tensor, instruction_pooled: Tensor | None = None, instruction_visual: Tensor | None = None
    ) -> tuple[list[Tensor], list[Tensor] | None]:
        """[B, C, 3, H, W] in [0, 1] -> (per camera [B, N, Dv] + camera embedding, saliency or None).

        Saliency (only when the compressor wants it) = attention each token receives in the tower's
        last layer, averaged over heads and query tokens, per camera [B, N]. ``instruction_pooled``
        [B, Dl] drives the tower's FiLM when the config asks for it (``vision.film``);
        ``instruction_visual`` [B, Dv] picks the patches that run the whole tower when
        ``vision.prune_after`` is set (policies/vision_pruning.py).
        """
        b, c = images.shape[:2]
        pixels = images.flatten(0, 1) * 2.0 - 1.0  # SigLIP normalisation (mean = std = 0.5)
        film = nullcontext()
        if self.vision_film is not None:
            if instruction_pooled is None:
                raise ValueError("vision.film=true: encode_images needs the pooled instruction")
            params = self.vision_film(instruction_pooled).repeat_interleave(c, dim=0)  # one per image
            film = self.vision_film.applied(self.vision, params)
        saliency = None
        with film:
            if self.wants_vision_attention:
                tokens, probs = _run_capturing_last_attention(self.vision, pixels)
                saliency = list(probs.mean(dim=(1, 2)).unflatten(0, (b, c)).unbind(1))
            elif self.config.vision.prune_after is not None:
                query = None if instruction_visual is None else instruction_visual.repeat_interleave(c, dim=0)
                tokens = run_pruned_tower(self.vision, pixels, self.config.vision.prune_after,
                                          self.config.vision.prune_keep, query)
            else:
                tokens = self.vision(pixel_values=pixels).last_hidden_state  # [B*C, N, Dv]
        tokens = tokens.unflatten(0, (b, c)) + self.camera_embed[None, :, None, :]
        return list(tokens.unbind(1)), saliency

    def instruction(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, InstructionContext]:
        """(token embeddings [B, T, Dl], their masked mean [B, Dl], the compressor's context).

        With a text encoder: its projected token states and projected pooled embedding instead."""
        if self.text_encoder is not None:
            embeds, pooled = self.text_encoder(ids, mask)
        else:
            embeds = self.backbone.embed_tokens(ids)  # [B, T, Dl]
            m = mask.unsqueeze(-1).to(embeds.dtype)
            pooled = (embeds * m).sum(1) / m.sum(1).clamp(min=1.0)
        ctx = InstructionContext(pooled=self.instr_to_visual(pooled), tokens=self.instr_to_visual(embeds), mask=mask)
        return embeds, pooled, ctx

    def compress(
        self, per_camera: list[Tensor], ctx: InstructionContext, saliency: list[Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if saliency is None:
            outs = [self.compressor(t, grid=self.grid, instruction=ctx) for t in per_camera]
        else:
            outs = [self.compressor(t, grid=self.grid, instruction=ctx, attention=a) for t, a in zip(per_camera, saliency)]
        kept = {key: out.kept for key, out in zip(self.config.camera_keys, outs)}
        return torch.cat([o.tokens for o in outs], dim=1), kept

    def in_lm_budget(self, n_visual: int) -> int:
        """Visual tokens an in-LM method keeps out of ``n_visual`` (all cameras together)."""
        return int(self.compressor.keep_count(n_visual))

    def encode(self, inputs: dict[str, Tensor], stage=_no_stage) -> tuple[Tensor, dict]:
        """Everything up to the action head: (query outputs [B, Q, Dl], info)."""
        # First: the vision FiLM (if any) reads it too. The word-level embedding is a lookup (counted in
        # "compressor"); a text encoder is its own stage (cached per instruction: cheap after the first call).
        with stage("compressor" if self.text_encoder is None else "instruction"):
            instr, pooled, ctx = self.instruction(inputs["tokens"], inputs["token_mask"])
        with stage("vision"):
            per_camera, saliency = self.encode_images(inputs["images"], pooled, ctx.pooled)
        with stage("compressor"):
            visual, kept = self.compress(per_camera, ctx, saliency)
        with stage("backbone"):
            b, nv, t = visual.shape[0], visual.shape[1], instr.shape[1]
            seq = torch.cat(
                [
                    self.projector(visual),
                    instr,
                    self.state_proj(inputs["state"]).unsqueeze(1),
                    self.queries.unsqueeze(0).expand(b, -1, -1),
                ],
                dim=1,
            )
            ones = torch.ones(b, nv, dtype=torch.bool, device=seq.device)
            tail = torch.ones(b, 1 + self.config.n_queries, dtype=torch.bool, device=seq.device)
            key_mask = torch.cat([ones, inputs["token_mask"], tail], dim=1)
            visual_index = torch.arange(nv, device=seq.device)
            instruction_index = torch.arange(nv, nv + t, device=seq.device)
            selector = self.compressor if self.in_lm else None
            budget = self.in_lm_budget(nv) if self.in_lm else None
            hidden, info = self.backbone(seq, key_mask, visual_index, instruction_index, selector, budget, stage)
        if self.in_lm:  # split the all-camera keep mask back per camera
            kept = dict(zip(self.config.camera_keys, info["kept"].split([p.shape[1] for p in per_camera], dim=1)))
        info["kept"] = kept
        return hidden[:, -self.config.n_queries :], info

    def keypose(self, cond: Tensor) -> Tensor:
        """Query outputs [B, Q, Dl] -> the keypose head's prediction [B, 3] in KEYPOSE_SCALE units."""
        return self.keypose_head(cond.mean(dim=1))

    def visual_tokens_per_camera(self) -> int:
        return self.compressor.output_tokens(self.grid)


def _run_capturing_last_attention(tower: nn.Module, pixels: Tensor) -> tuple[Tensor, Tensor]:
    """Run the SigLIP tower; return (tokens, last-layer attention probs [B, H, N, N])."""
    captured: dict[str, Tensor] = {}

    def grab(_module, _inputs, output) -> None:  # returning None keeps the module's output
        captured["p"] = output[1]

    attn = tower.vision_model.encoder.layers[-1].self_attn
    use_eager_attention(attn)
    handle = attn.register_forward_hook(grab)
    try:
        tokens = tower(pixel_values=pixels).last_hidden_state
    finally:
        handle.remove()
    return tokens, captured["p"]
