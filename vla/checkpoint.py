"""Checkpoint folders of the `vla` policy: build, save, load (with clear errors).

A checkpoint is one folder, the same layout lerobot-train writes under
``checkpoints/<step>/pretrained_model/`` (so either tool can read the other's):

    config.json                       VLAConfig (draccus; ``type: vla``)
    model.safetensors                 weights
    fingerprint.json                  architecture fields + their hash (policies.configuration_vla)
    policy_preprocessor.json          processor steps; the word-level tokenizer's vocabulary is in
                                      the ``vla_tokenizer`` step
    policy_preprocessor_step_*.safetensors   normalisation stats (dataset mean/std)
    policy_postprocessor.json (+ step state) action un-normalisation

``load_checkpoint`` raises ``FileNotFoundError`` naming a missing file, ``CheckpointError`` naming
every architecture/compressor field that differs from a requested config
(``backbone.num_layers: checkpoint 4 != requested 6``) or from fingerprint.json, ``CheckpointError``
for corrupt files and unusable normalisation stats, and ``UntrustedCheckpointError`` for a
processor step vla did not write (checkpoints are data, not code: policies/checkpoint_files.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import policies.processor_vla  # noqa: F401  (registers the processor steps saved checkpoints name)
from policies.checkpoint_files import (
    POSTPROCESSOR_FILE,
    PREPROCESSOR_FILE,
    CheckpointError,
    UntrustedCheckpointError,
    check_normalizer_stats,
    check_processor_files,
    trust_from_env,
)
from policies.configuration_vla import VLAConfig, config_from_dict, make_features
from policies.modeling_vla import CONFIG_FILE, FINGERPRINT_FILE, WEIGHTS_FILE, VLAPolicy

__all__ = [
    "CheckpointError",
    "LoadedCheckpoint",
    "UntrustedCheckpointError",
    "build_config",
    "build_policy",
    "load_checkpoint",
    "read_fingerprint",
    "save_checkpoint",
]


@dataclass
class LoadedCheckpoint:
    policy: VLAPolicy
    preprocessor: Any
    postprocessor: Any
    path: Path


def _plain(cfg: Any) -> dict | None:
    """DictConfig / dataclass-free mapping -> plain dict (Hydra groups arrive as DictConfig)."""
    if cfg is None:
        return None
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - hydra is a dependency
        pass
    return dict(cfg)


def build_config(model: Any, compressor: Any = None, features: bool = True, **overrides: Any) -> VLAConfig:
    """VLAConfig from a ``model`` preset + ``compressor`` preset (Hydra groups or dicts).

    With ``features=True`` and no ``embodiment`` override, the tabletop/LIBERO arm's features and
    embodiment are filled in (sim/spaces.py: 2 cameras at the model's image size, state 8, action
    7), so the policy can be built without a dataset; an ``embodiment`` (Embodiment or dict) gives
    another robot's.
    """
    model_d, comp_d = _plain(model) or {}, _plain(compressor)
    if features and "input_features" not in overrides:
        from policies.embodiment import Embodiment

        size = (model_d.get("vision") or {}).get("image_size", 128)
        robot = overrides.pop("embodiment", None)
        if robot is None:
            from sim.spaces import embodiment

            robot = embodiment(size)
        robot = robot if isinstance(robot, Embodiment) else Embodiment.from_dict(robot)
        overrides["input_features"], overrides["output_features"] = make_features(
            camera_keys=robot.camera_keys, image_size=size, state_dim=robot.state_dim, action_dim=robot.action_dim
        )
        if "camera_keys" not in model_d:
            overrides.setdefault("camera_keys", robot.camera_keys)
        overrides["embodiment"] = robot.to_dict()
    return config_from_dict(model_d, comp_d, **overrides)


def build_policy(model: Any, compressor: Any = None, dataset_stats=None, **overrides: Any):
    """(policy, preprocessor, postprocessor) freshly initialised from presets."""
    from policies.processor_vla import make_vla_pre_post_processors

    config = build_config(model, compressor, **overrides)
    policy = VLAPolicy(config)
    policy.to(config.device)
    pre, post = make_vla_pre_post_processors(config, dataset_stats=dataset_stats)
    return policy, pre, post


def save_checkpoint(path: str | Path, policy: VLAPolicy, preprocessor=None, postprocessor=None) -> Path:
    """Write the checkpoint folder (config, weights, fingerprint, processors)."""
    path = Path(path)
    policy.save_pretrained(path)
    if preprocessor is not None:
        preprocessor.save_pretrained(path)
    if postprocessor is not None:
        postprocessor.save_pretrained(path)
    return path


def read_fingerprint(path: str | Path) -> dict:
    file = Path(path) / FINGERPRINT_FILE
    if not file.is_file():
        raise FileNotFoundError(f"VLA checkpoint file not found: '{file}'")
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint fingerprint '{file}' is corrupt: {e}") from e


def load_checkpoint(
    path: str | Path,
    config: VLAConfig | None = None,
    device: str | None = None,
    processors: bool = True,
    trust_checkpoint_code: bool | None = None,
) -> LoadedCheckpoint:
    """Load policy (+ processors) from a folder; ``config`` (optional) must match its architecture.

    Every check runs before anything from the folder is built: processor steps (only those vla
    writes, unless ``trust_checkpoint_code``), state files inside the folder, normalisation stats,
    config.json against fingerprint.json, then the weights. ``trust_checkpoint_code=None`` reads
    ``$VLA_TRUST_CHECKPOINT_CODE`` (what `vla <command> trust_checkpoint_code=true` sets).
    """
    from lerobot.policies.factory import make_pre_post_processors

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"VLA checkpoint folder not found: '{path}'")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"VLA checkpoint file not found: '{path / name}'")
    trust = trust_from_env() if trust_checkpoint_code is None else trust_checkpoint_code
    if processors:
        check_normalizer_stats(check_processor_files(path, trust_code=trust))

    overrides = [f"--device={device}"] if device else []
    if config is not None and device:
        config.device = device
    policy = VLAPolicy.from_pretrained(path, config=config, cli_overrides=overrides,
                                       trust_checkpoint_code=trust)
    pre = post = None
    if processors:
        dev = {"device_processor": {"device": policy.config.device}}
        pre, post = make_pre_post_processors(policy.config, pretrained_path=str(path), preprocessor_overrides=dev)
    return LoadedCheckpoint(policy=policy, preprocessor=pre, postprocessor=post, path=path)
