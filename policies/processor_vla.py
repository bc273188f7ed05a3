"""Pre/post-processing of the `vla` policy (lerobot processor pipeline, saved with every checkpoint).

Pre-processor, in order:
    rename observations      (lerobot; eval scripts override the map)
    add batch dimension      (lerobot)
    vla_input_check          check + convert cameras (float [B,3,H,W] in [0,1], resized to the model's
                             image size) and state (finite, [B,S])
    vla_tokenizer            instruction (non-empty) -> token ids + mask (word-level vocab stored in this step's
                             config, or a local HF tokenizer dir; encoder=minilm: the installed
                             all-MiniLM-L6-v2 WordPiece tokenizer, found at load, policies/text_encoder.py)
    to device                (lerobot)
    normalise state/action   (lerobot NormalizerProcessorStep, dataset stats saved as step state)
Post-processor: un-normalise actions, move to CPU.

Bad input fails here with a ValueError that says what was expected, before it can reach the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.processor import (
    ObservationProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    ProcessorStepRegistry,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)
from lerobot.lerobot_types import TransitionKey
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from policies.configuration_vla import VLAConfig
from policies.tokenizer import default_vocab, load_tokenizer

TASK_KEY = "task"

# Floor for the std used to normalise state/action (in the feature's units: m, rad, [-1, 1]).
# A dimension that barely moves in the demos (the tabletop gripper's roll/pitch: std ~4e-4 rad) would
# otherwise turn the few mrad of contact wobble seen at test time into normalised inputs of 100+, far
# outside training: measured, this sent a trained policy off course from its first step.
MIN_NORM_STD = 5e-2


def floor_std(stats: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
    """Copy of ``stats`` with every ``std`` floored at MIN_NORM_STD (means, min/max untouched)."""
    if stats is None:
        return None
    out = {}
    for key, feature_stats in stats.items():
        feature_stats = dict(feature_stats)
        if "std" in feature_stats:
            std = torch.as_tensor(np.asarray(feature_stats["std"], dtype=np.float32))
            feature_stats["std"] = std.clamp_min(MIN_NORM_STD)
        out[key] = feature_stats
    return out


def make_vla_pre_post_processors(
    config: VLAConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """The policy's (preprocessor, postprocessor) pair; see the module docstring for the steps."""
    steps = make_default_policy_processor_steps(config, floor_std(dataset_stats))
    ins = config.instruction
    tokenizer = VLATokenizerProcessorStep(
        max_length=config.max_instruction_tokens,
        tokenizer_path=ins.encoder_path if ins.encoder != "word" else config.tokenizer_path,
        encoder=ins.encoder,
    )
    n_ids = len(tokenizer.tokenizer)
    if ins.encoder == "word" and config.backbone.vocab_size is not None and n_ids > config.backbone.vocab_size:
        raise ValueError(
            f"the instruction tokenizer has {n_ids} ids but the backbone embeds only "
            f"backbone.vocab_size={config.backbone.vocab_size}"
        )
    input_steps = [
        steps.rename_observations,
        steps.add_batch_dim,
        VLAInputCheckStep(
            camera_keys=list(config.camera_keys),
            image_size=config.vision.image_size,
            state_dim=config.state_dim if config.robot_state_feature else None,
            resize=config.image_resize,
        ),
        tokenizer,
        steps.to_device,
        steps.normalize,
    ]
    output_steps = [steps.unnormalize, steps.to_cpu]
    return make_policy_processor_pipelines(input_steps=input_steps, output_steps=output_steps)


# --------------------------------------------------------------------------------------------------
# Input checks + image resizing
# --------------------------------------------------------------------------------------------------
def resize_images(img: torch.Tensor, size: int, mode: str = "pad") -> torch.Tensor:
    """float [B, 3, H, W] in [0, 1] -> [B, 3, size, size]: bilinear, antialiased, the policy's input resize.

    A non-square frame (a 480x640 robot camera) is never squashed, which would change every object's
    aspect: ``mode="pad"`` scales the longer side to ``size`` and centres the frame on black (the
    whole field of view stays), ``"crop"`` scales the shorter side and keeps the centre square.
    """
    h, w = img.shape[-2:]
    if h != w:
        scale = size / (max(h, w) if mode == "pad" else min(h, w))
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        img = F.interpolate(img.float(), size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        if mode == "pad":
            top, left = (size - nh) // 2, (size - nw) // 2
            return F.pad(img, (left, size - nw - left, top, size - nh - top)).clamp_(0.0, 1.0)
        top, left = (nh - size) // 2, (nw - size) // 2
        return img[..., top:top + size, left:left + size].clamp_(0.0, 1.0)
    return F.interpolate(img.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)


@dataclass
@ProcessorStepRegistry.register(name="vla_input_check")
class VLAInputCheckStep(ObservationProcessorStep):
    """Validate cameras/state/instruction and resize images to ``image_size`` (bilinear, antialiased).

    Cameras must be float [B, 3, H, W] (or [3, H, W]) with values in [0, 1] -- lerobot's convention;
    numpy arrays are accepted and converted. Channel-last (HxWx3) and uint8 images are rejected
    with the fix in the message rather than silently reinterpreted.
    """

    camera_keys: list[str] = field(default_factory=list)
    image_size: int = 128
    state_dim: int | None = None
    resize: str = "pad"  # non-square frames: "pad" or "crop" (resize_images); saved with the checkpoint

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        observation = dict(observation)
        for key in self.camera_keys:
            if key not in observation:
                have = sorted(k for k in observation if k.startswith("observation.images"))
                raise ValueError(f"missing camera '{key}' (expected float [B, 3, H, W] in [0, 1]); got {have}")
            observation[key] = self._image(key, observation[key])
        if OBS_STATE in observation:
            observation[OBS_STATE] = self._state(observation[OBS_STATE])
        elif self.state_dim is not None:
            raise ValueError(f"missing '{OBS_STATE}' (expected float [B, {self.state_dim}])")
        return observation

    def _image(self, key: str, img: Any) -> torch.Tensor:
        if isinstance(img, np.ndarray):
            img = torch.from_numpy(img)
        if not isinstance(img, torch.Tensor):
            raise ValueError(f"'{key}' must be a tensor/array float [B, 3, H, W] in [0, 1], got {type(img).__name__}")
        if img.ndim == 3:
            img = img.unsqueeze(0)
        shape = tuple(img.shape)
        if img.ndim != 4:
            raise ValueError(f"'{key}' must be [B, 3, H, W] (channel-first), got shape {shape}")
        if img.shape[1] != 3:
            hint = ""
            if img.shape[-1] == 3:
                hint = " It looks channel-last (HxWx3): convert with img.permute(0, 3, 1, 2)."
            raise ValueError(f"'{key}' must be channel-first [B, 3, H, W], got shape {shape}.{hint}")
        if not torch.is_floating_point(img):
            raise ValueError(
                f"'{key}' must be a float image in [0, 1], got dtype {img.dtype}"
                + (" (convert with img.float() / 255)" if img.dtype == torch.uint8 else "")
            )
        lo, hi = float(img.min()), float(img.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(f"'{key}' values must be in [0, 1], got range [{lo:.3g}, {hi:.3g}] (divide by 255?)")
        if img.shape[-2:] != (self.image_size, self.image_size):
            img = resize_images(img, self.image_size, self.resize)
        return img

    def _state(self, state: Any) -> torch.Tensor:
        if isinstance(state, np.ndarray):
            state = torch.from_numpy(state)
        if not isinstance(state, torch.Tensor):
            raise ValueError(f"'{OBS_STATE}' must be a float tensor [B, S], got {type(state).__name__}")
        if state.ndim == 1:
            state = state.unsqueeze(0)
        if state.ndim != 2 or (self.state_dim is not None and state.shape[1] != self.state_dim):
            raise ValueError(f"'{OBS_STATE}' must be [B, {self.state_dim}], got shape {tuple(state.shape)}")
        state = state.float()
        if not torch.isfinite(state).all():
            bad = (~torch.isfinite(state)).nonzero()[:4].tolist()
            raise ValueError(f"'{OBS_STATE}' contains NaN or Inf (first bad [batch, dim] entries: {bad})")
        return state

    def get_config(self) -> dict[str, Any]:
        return {"camera_keys": list(self.camera_keys), "image_size": self.image_size, "state_dim": self.state_dim,
                "resize": self.resize}

    def transform_features(
        self, features: dict[PipelineFeatureType, dict[str, PolicyFeature]]
    ) -> dict[PipelineFeatureType, dict[str, PolicyFeature]]:
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        for key in self.camera_keys:
            if key in obs:
                obs[key] = PolicyFeature(FeatureType.VISUAL, (3, self.image_size, self.image_size))
        return features


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------
@dataclass
@ProcessorStepRegistry.register(name="vla_tokenizer")
class VLATokenizerProcessorStep(ObservationProcessorStep):
    """Tokenize the ``task`` instruction(s) into ids + mask (padded to the longest in the batch).

    With ``tokenizer_path`` None the word-level tokenizer is used and its full vocabulary is part of
    this step's saved config: a checkpoint carries its own tokenizer. ``encoder="minilm"``: the
    tokenizer of the installed all-MiniLM-L6-v2 package (its path is found when loading, not saved),
    whose ids the policy's text encoder reads.
    """

    max_length: int = 24
    tokenizer_path: str | None = None
    vocab: list[str] | None = None
    task_key: str = TASK_KEY
    encoder: str = "word"  # word | minilm | local (instruction.encoder of the policy)
    tokenizer: Any = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.encoder != "word":
            from policies.text_encoder import encoder_dir

            self.tokenizer = load_tokenizer(str(encoder_dir(self.encoder, self.tokenizer_path)))
            return
        if self.tokenizer_path is None and self.vocab is None:
            self.vocab = default_vocab()
        self.tokenizer = load_tokenizer(self.tokenizer_path, None if self.tokenizer_path else self.vocab)

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        comp = self.transition.get(TransitionKey.COMPLEMENTARY_DATA) or {}
        task = comp.get(self.task_key)
        tasks = [task] if isinstance(task, str) else list(task or [])
        if not tasks or any(not isinstance(t, str) or not t.strip() for t in tasks):
            raise ValueError(f"the instruction '{self.task_key}' must be non-empty text, got {task!r}")
        enc = self.tokenizer(
            tasks, max_length=self.max_length, truncation=True, padding="longest", return_tensors="pt"
        )
        device = next((v.device for v in observation.values() if isinstance(v, torch.Tensor)), None)
        observation = dict(observation)
        observation[OBS_LANGUAGE_TOKENS] = enc["input_ids"].to(device)
        observation[OBS_LANGUAGE_ATTENTION_MASK] = enc["attention_mask"].bool().to(device)
        return observation

    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"max_length": self.max_length, "task_key": self.task_key}
        if self.encoder != "word":
            cfg["encoder"] = self.encoder
        if self.tokenizer_path:
            cfg["tokenizer_path"] = self.tokenizer_path
        elif self.encoder == "word":
            cfg["vocab"] = list(self.vocab)
        return cfg

    def transform_features(
        self, features: dict[PipelineFeatureType, dict[str, PolicyFeature]]
    ) -> dict[PipelineFeatureType, dict[str, PolicyFeature]]:
        obs = features.setdefault(PipelineFeatureType.OBSERVATION, {})
        for key in (OBS_LANGUAGE_TOKENS, OBS_LANGUAGE_ATTENTION_MASK):
            obs.setdefault(key, PolicyFeature(FeatureType.LANGUAGE, (self.max_length,)))
        return features
