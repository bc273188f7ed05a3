"""Helpers of the policy tests: the `tiny` preset, fake preprocessed batches, dataset stats.

(A uniquely named module rather than conftest.py so tests can import it: tests/conftest.py exists.)
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = yaml.safe_load((CONFIGS / "model" / "tiny.yaml").read_text())
CAMERAS = ("observation.images.agentview", "observation.images.wrist")
STATS = {
    OBS_STATE: {"mean": torch.zeros(8), "std": torch.ones(8)},
    ACTION: {"mean": torch.zeros(7), "std": torch.full((7,), 0.5)},
}


def preset(name: str) -> dict:
    return yaml.safe_load((CONFIGS / "compressor" / f"{name}.yaml").read_text())


def tiny_config(compressor: dict | str = "none", model: dict | None = None, **overrides):
    from policies.configuration_vla import config_from_dict, make_features

    model = dict(TINY if model is None else model)
    comp = preset(compressor) if isinstance(compressor, str) else compressor
    inputs, outputs = make_features(image_size=model["vision"]["image_size"])
    overrides.setdefault("input_features", inputs)
    overrides.setdefault("output_features", outputs)
    return config_from_dict(model, comp, **overrides)


def tiny_policy(compressor: dict | str = "none", seed: int = 0, **overrides):
    from policies.modeling_vla import VLAPolicy

    torch.manual_seed(seed)
    return VLAPolicy(tiny_config(compressor, **overrides))


def fake_batch(config, batch_size: int = 2, seed: int = 0, with_action: bool = True) -> dict:
    """A preprocessed batch (what processor_vla emits), built directly from the config."""
    g = torch.Generator().manual_seed(seed)
    size = config.vision.image_size
    batch = {key: torch.rand(batch_size, 3, size, size, generator=g) for key in config.camera_keys}
    batch[OBS_STATE] = torch.randn(batch_size, 8, generator=g)
    tokens = torch.randint(2, 60, (batch_size, 7), generator=g)
    mask = torch.ones(batch_size, 7, dtype=torch.bool)
    mask[0, 5:] = False  # one padded instruction
    batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK] = tokens, mask
    if with_action:
        batch[ACTION] = torch.randn(batch_size, config.chunk_size, 7, generator=g).clamp(-2, 2)
        batch["action_is_pad"] = torch.zeros(batch_size, config.chunk_size, dtype=torch.bool)
    return batch


def noise_for(config, batch_size: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch_size, config.chunk_size, 7, generator=torch.Generator().manual_seed(seed))


