"""The accel presets (vla/accel.py): how `accel=fast` applies to fresh policies and checkpoints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = yaml.safe_load((CONFIGS / "model" / "tiny.yaml").read_text())
FIVE = {**TINY, "backbone": {**TINY["backbone"], "num_layers": 5}}


def policy(compressor: str, model=FIVE):
    from vla.checkpoint import build_policy

    torch.manual_seed(0)
    return build_policy(model, {"name": compressor})[:2]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_preset_parsing():
    from vla.accel import accel_spec

    assert accel_spec("none") is None and accel_spec(None) is None
    fast = accel_spec("fast")
    assert fast.compressor["name"] == "compressor_vla" and fast.fallback_compressor["name"] == "efficientvla"
    assert fast.keep_ratio == 0.5 and fast.cache_interval == 5
    with pytest.raises(ValueError, match="unknown keys"):
        accel_spec({"name": "x", "speed": 11})
    with pytest.raises(ValueError, match="available: fast, none"):
        accel_spec("fastest")


def test_fast_on_a_checkpoint_trained_without_compression_uses_the_training_free_fallback():
    from vla.accel import accelerate

    base, pre = policy("none")
    fast, notes = accelerate(base, pre, "fast")
    assert fast is not base and fast.config.compressor.name == "efficientvla"
    assert fast.config.compressor.kwargs["budget"] == 160 and "fallback" in notes["compressor"]
    assert len(fast.model.backbone.lm.layers) == 3 and len(fast.config.backbone.removed_layers) == 2  # 5 x 0.5, rounded half up
    assert fast.model.head.cache_interval == 5 and fast.config.head.cache_interval == 5
    for key in base.state_dict():  # all trained weights carried over
        if ".layers." not in key:
            assert torch.equal(base.state_dict()[key], fast.state_dict()[key]), key


def test_fast_keeps_a_trained_compressor_and_does_not_prune_twice():
    from policies.layer_pruning import remove_layers
    from vla.accel import accelerate

    trained, pre = policy("compressor_vla")
    fast, notes = accelerate(trained, pre, "fast")
    assert fast is trained and notes["compressor"] == "kept 'compressor_vla'"
    assert len(fast.model.backbone.lm.layers) == 3
    pruned, pre = policy("compressor_vla")
    remove_layers(pruned, [4])  # as if `vla prune` had run
    _, notes = accelerate(pruned, pre, "fast")
    assert notes["pruning"].startswith("already pruned") and len(pruned.model.backbone.lm.layers) == 4


def test_learned_compressor_cannot_be_added_to_a_checkpoint():
    from vla.accel import with_compressor

    base, _ = policy("none", TINY)
    with pytest.raises(ValueError, match="is learned"):
        with_compressor(base, {"name": "stc", "num_queries": 16})
    assert with_compressor(base, {"name": "stc"}, allow_untrained=True).config.compressor.name == "stc"


def test_profile_accel_fast_ends_with_the_speedup_line(tmp_path, monkeypatch, capsys):
    from vla.profiling import main

    monkeypatch.chdir(tmp_path)  # outside a Hydra run, profile writes to ./outputs/profile
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("profile", overrides=["model=tiny", "accel=fast", "repeats=2", "warmup=0", "threads=1"])
    rows = main(cfg)
    assert set(rows) == {"none", "accel=fast"}
    assert rows["accel=fast"]["visual_tokens"] == 160 and rows["accel=fast"]["gflops"] < rows["none"]["gflops"]
    last = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"speedup \d+\.\d\dx vs none, FLOPs \d+\.\d % of none", last), last
    share = 100 * rows["accel=fast"]["flops"]["total"] / rows["none"]["flops"]["total"]
    assert f"FLOPs {share:.1f} % of none" in last
