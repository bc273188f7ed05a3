"""VLAConfig: validation messages, presets, the lerobot registration and the architecture fingerprint."""

from __future__ import annotations

import pytest
import torch
import yaml

from _policy_helpers import CONFIGS, TINY, tiny_config
from lerobot.configs import FeatureType, PolicyFeature, PreTrainedConfig
from policies.configuration_vla import (
    ActionHeadConfig,
    CompressorConfig,
    VLAConfig,
    config_from_dict,
    make_features,
)


def test_registered_with_lerobot_under_vla():
    assert PreTrainedConfig.get_choice_class("vla") is VLAConfig
    from lerobot.policies.factory import get_policy_class

    assert get_policy_class("vla").__name__ == "VLAPolicy"


def test_defaults_are_the_cpu_preset():
    cpu = yaml.safe_load((CONFIGS / "model" / "cpu.yaml").read_text())
    assert config_from_dict(cpu).architecture() == VLAConfig().architecture()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(chunk_size=8, n_action_steps=10), "n_action_steps=10 with chunk_size=8"),
        (dict(n_action_steps=0), "n_action_steps=0"),
        (dict(head=ActionHeadConfig(type="l1"), num_action_queries=4), "num_action_queries=4 must equal chunk_size=16"),
        (dict(head=ActionHeadConfig(type="diffusion")), "head.type must be one of"),
        (dict(compressor=CompressorConfig("visionzip", {"budget": 300})), "budget 300 exceeds the 256"),
        (dict(compressor=CompressorConfig("fastv", {"budget": 600}), camera_keys=["a", "b"]), "budget 600 exceeds the 512"),
        (dict(compressor=CompressorConfig("fastv", {"layer": 4})), "layer=4 must be in [1, backbone.num_layers=4)"),
        (dict(compressor=CompressorConfig("compressor_vla", {"window": 3})), "not divisible by window 3"),
        (dict(compressor=CompressorConfig("pool", {"kernal": 2})), "unexpected keyword argument 'kernal'"),
        (dict(compressor=CompressorConfig("fastvv")), "Did you mean 'fastv'?"),
        (dict(dtype="float8"), "dtype must be one of"),
    ],
)
def test_post_init_rejects_bad_values_naming_them(kwargs, message):
    with pytest.raises(ValueError) as err:
        VLAConfig(**kwargs)
    assert message in str(err.value)


def test_cuda_is_used_when_asked_and_a_clear_error_without_gpu():
    if torch.cuda.is_available():
        assert VLAConfig(device="cuda").device == "cuda"
    else:
        with pytest.raises(ValueError, match="device='cuda' requested but no CUDA GPU"):
            VLAConfig(device="cuda")


def test_compressor_defaults_are_written_into_the_config():
    cfg = VLAConfig(compressor=CompressorConfig("fastv", {"ratio": 0.25}))
    assert cfg.compressor.kwargs == {"layer": 2, "ratio": 0.25, "budget": None}


def test_validate_features_names_what_is_missing():
    inputs, outputs = make_features(camera_keys=("observation.images.agentview",))
    assert VLAConfig(input_features=inputs, output_features=outputs).camera_keys == ["observation.images.agentview"]
    cfg = VLAConfig(input_features=inputs, output_features=outputs,
                    camera_keys=["observation.images.agentview", "observation.images.wrist"])
    with pytest.raises(ValueError, match="camera 'observation.images.wrist' missing"):
        cfg.validate_features()
    inputs, outputs = make_features()
    inputs["observation.images.wrist"] = PolicyFeature(FeatureType.VISUAL, (64, 64, 3))
    cfg = VLAConfig(input_features=inputs, output_features=outputs)
    with pytest.raises(ValueError, match=r"shape \(64, 64, 3\), expected \(3, H, W\)"):
        cfg.validate_features()
    with pytest.raises(ValueError, match="no input/output features"):
        VLAConfig().validate_features()


def test_fingerprint_tracks_architecture_not_runtime_fields():
    a, b = tiny_config(), tiny_config()
    b.n_action_steps, b.optimizer_lr = 2, 1.0  # inference / training knobs
    assert a.fingerprint() == b.fingerprint()
    c = tiny_config(model={**TINY, "backbone": {**TINY["backbone"], "num_layers": 4}})
    assert c.fingerprint() != a.fingerprint()
    assert tiny_config("pool").fingerprint() != a.fingerprint()


def test_presets_cpu_grid_and_gpu_dims():
    cpu = config_from_dict(yaml.safe_load((CONFIGS / "model" / "cpu.yaml").read_text()))
    assert min(cpu.vision.grid) >= 12
    gpu = yaml.safe_load((CONFIGS / "model" / "gpu.yaml").read_text())
    assert gpu["device"] == "cuda"
    cfg = config_from_dict(gpu, device="cpu")  # constructing on this GPU-less machine
    assert (cfg.vision.image_size, cfg.vision.patch_size) == (224, 14) and cfg.backbone.type == "qwen2"


def test_gpu_preset_constructs_at_half_a_billion_backbone_parameters():
    from policies.modeling_vla import VLAPolicy

    gpu = yaml.safe_load((CONFIGS / "model" / "gpu.yaml").read_text())
    inputs, outputs = make_features(image_size=224)
    cfg = config_from_dict(gpu, {"name": "compressor_vla"}, device="cpu", input_features=inputs,
                           output_features=outputs)
    with torch.device("meta"):  # shapes only: no memory, no init time
        policy = VLAPolicy(cfg)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(policy.model.backbone) > 0.49e9  # Qwen2.5-0.5B dims: 494 M
    assert count(policy) > 0.9e9
    assert next(policy.parameters()).dtype == torch.bfloat16
