"""Checkpoint folders: round trip, architecture/compressor mismatch, missing and corrupt files."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from _policy_helpers import CAMERAS, STATS, TINY, noise_for, tiny_config, tiny_policy
from policies.modeling_vla import CheckpointError, VLAPolicy
from policies.processor_vla import make_vla_pre_post_processors
from vla.checkpoint import load_checkpoint, read_fingerprint, save_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A `tiny` compressor_vla policy with processors, saved once for the module."""
    torch.set_num_threads(1)
    policy = tiny_policy("compressor_vla", seed=3)
    with torch.no_grad():  # non-default weights everywhere, so a partial load would show
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    pre, post = make_vla_pre_post_processors(policy.config, dataset_stats=STATS)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", policy, pre, post)
    return path, policy, pre, post


def observation(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    obs = {key: torch.rand(3, 64, 64, generator=g) for key in CAMERAS}
    obs["observation.state"] = torch.randn(8, generator=g)
    obs["task"] = "stack the red cube on the green cube"
    return obs


def copy_of(saved_path, tmp_path):
    return shutil.copytree(saved_path, tmp_path / "copy")


def test_folder_layout(saved):
    path, policy, *_ = saved
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "fingerprint.json", "policy_preprocessor.json",
            "policy_postprocessor.json"} <= names
    assert any(n.startswith("policy_preprocessor_step_") and n.endswith("normalizer_processor.safetensors")
               for n in names)
    fp = read_fingerprint(path)
    assert fp["fingerprint"] == policy.config.fingerprint()
    assert fp["architecture"]["compressor.name"] == "compressor_vla"
    steps = json.loads((path / "policy_preprocessor.json").read_text())["steps"]
    vocab = next(s for s in steps if s["registry_name"] == "vla_tokenizer")["config"]["vocab"]
    assert "cube" in vocab  # the tokenizer travels with the checkpoint


def test_round_trip_gives_identical_actions(saved):
    path, policy, pre, post = saved
    policy.eval()
    noise = noise_for(policy.config, batch_size=1)
    expected = post(policy.predict_action_chunk(pre(observation()), noise=noise))
    loaded = load_checkpoint(path)
    got = loaded.postprocessor(loaded.policy.predict_action_chunk(loaded.preprocessor(observation()), noise=noise))
    assert torch.equal(got, expected)
    # lerobot's own entry point (what lerobot-eval uses) loads the same weights
    again = VLAPolicy.from_pretrained(path)
    assert torch.equal(again.predict_action_chunk(pre(observation()), noise=noise),
                       policy.predict_action_chunk(pre(observation()), noise=noise))


def test_requested_architecture_mismatch_names_every_field(saved):
    path = saved[0]
    deeper = tiny_config("compressor_vla", model={**TINY, "backbone": {**TINY["backbone"], "num_layers": 4}})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, config=deeper)
    assert "backbone.num_layers: checkpoint 3 != requested 4" in str(err.value)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, config=tiny_config("pool"))
    msg = str(err.value)
    assert "compressor.name: checkpoint 'compressor_vla' != requested 'pool'" in msg
    assert "compressor.kwargs.kernel: checkpoint '<unset>' != requested 2" in msg
    # non-architecture fields may differ
    same = tiny_config("compressor_vla", n_action_steps=2)
    assert load_checkpoint(path, config=same, processors=False).policy.config.n_action_steps == 2


@pytest.mark.parametrize("victim", ["model.safetensors", "config.json", "policy_preprocessor.json",
                                    "policy_postprocessor_step_0_unnormalizer_processor.safetensors"])
def test_missing_file_names_the_path(saved, tmp_path, victim):
    path = copy_of(saved[0], tmp_path)
    (path / victim).unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_checkpoint(path)
    assert str(path / victim) in str(err.value)
    with pytest.raises(FileNotFoundError, match="VLA checkpoint folder not found"):
        load_checkpoint(tmp_path / "nope")


@pytest.mark.parametrize("damage", ["truncate", "garbage_header", "flipped_byte"])
def test_corrupt_weights_are_reported_as_corrupt(saved, tmp_path, damage):
    path = copy_of(saved[0], tmp_path)
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage_header":
        data[:64] = b"\x00" * 64
    else:  # a silent bit flip inside the tensor data: caught by the recorded SHA-256
        data[-100] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.safetensors' is corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="corrupt"):
        VLAPolicy.from_pretrained(path)
    # without the recorded hash, a damaged file still fails to parse (truncation / header)
    if damage != "flipped_byte":
        (path / "fingerprint.json").unlink()
        with pytest.raises(CheckpointError, match=r"model.safetensors' is corrupt or truncated"):
            VLAPolicy.from_pretrained(path)


def test_corrupt_config_and_edited_fingerprint(saved, tmp_path):
    path = copy_of(saved[0], tmp_path)
    (path / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="config.json' is corrupt"):
        load_checkpoint(path)
    path2 = shutil.copytree(saved[0], tmp_path / "copy2")
    fp = json.loads((path2 / "fingerprint.json").read_text())
    fp["architecture"]["backbone.hidden_size"] = 128
    (path2 / "fingerprint.json").write_text(json.dumps(fp))
    with pytest.raises(CheckpointError, match=r"does not match the architecture .* backbone.hidden_size: fingerprint 128 != config 64"):
        load_checkpoint(path2)
