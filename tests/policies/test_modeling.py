"""VLAPolicy on the `tiny` preset: token counts per method, in-LM selection, gradients, queue, learning."""

from __future__ import annotations

import pytest
import torch

import compressors
from _policy_helpers import TINY, fake_batch, noise_for, tiny_config, tiny_policy
from lerobot.utils.constants import ACTION


@pytest.mark.parametrize("method", compressors.available())
def test_tokens_entering_backbone_match_output_tokens(method):
    policy = tiny_policy(method)
    comp, grid = policy.model.compressor, policy.model.grid
    chunk, info = policy.predict_action_chunk_with_info(fake_batch(policy.config, with_action=False),
                                                        noise=noise_for(policy.config))
    assert chunk.shape == (2, policy.config.chunk_size, 7) and torch.isfinite(chunk).all()
    assert info["visual_tokens_in"] == 2 * comp.output_tokens(grid)
    if comp.stage == "in_lm":
        assert info["visual_tokens_in"] == 2 * grid[0] * grid[1]
        assert info["visual_tokens_after"] == comp.keep_count(info["visual_tokens_in"])
        for kept in info["kept"].values():  # per camera [B, N] bool; together exactly the budget
            assert kept.dtype == torch.bool and kept.shape == (2, grid[0] * grid[1])
        assert sum(k.sum(1) for k in info["kept"].values()).tolist() == [info["visual_tokens_after"]] * 2
    else:
        assert info["visual_tokens_after"] == info["visual_tokens_in"]
        assert set(info["kept"]) == set(policy.config.camera_keys)
        for kept in info["kept"].values():
            assert kept.shape[:2] == (2, grid[0] * grid[1])


def test_in_lm_selection_keeping_everything_equals_no_compression():
    """FastV with R=0 runs the gather/position/mask path but keeps all tokens: same actions as 'none'."""
    none, keep_all = tiny_policy("none"), tiny_policy({"name": "fastv", "layer": 2, "ratio": 0.0})
    keep_all.load_state_dict(none.state_dict())
    batch, noise = fake_batch(none.config, with_action=False), noise_for(none.config)
    kept_chunk, info = keep_all.predict_action_chunk_with_info(batch, noise=noise)
    torch.testing.assert_close(kept_chunk, none.predict_action_chunk(batch, noise=noise), rtol=1e-4, atol=1e-5)
    assert info["visual_tokens_after"] == 512


def test_in_lm_selection_keeps_original_positions():
    """After dropping tokens the kept ones keep their RoPE positions: a permutation-free check."""
    from policies.backbone import _additive_mask

    pos = torch.tensor([[0, 2, 5, 6]])
    mask = _additive_mask(pos, torch.tensor([[True, True, False, True]]), torch.float32)[0, 0]
    allowed = mask == 0
    assert allowed.tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [True, True, False, False],  # padding key (col 2) is never visible
        [True, True, False, True],
    ]


def test_gradients_reach_stc_and_src_parameters():
    policy = tiny_policy("compressor_vla")
    loss, logs = policy(fake_batch(policy.config))
    loss.backward()
    assert logs["visual_tokens"] == 2 * (16 + 64)
    for branch in ("stc", "src"):
        grads = {n: p.grad for n, p in getattr(policy.model.compressor, branch).named_parameters()}
        missing = [n for n, g in grads.items() if g is None]
        assert grads and not missing, f"{branch}: no gradient for {missing}"
        assert all(torch.isfinite(g).all() for g in grads.values())
        assert sum(g.abs().sum() for g in grads.values()) > 0
    # the instruction path is trained too (STC's FiLM reads the pooled instruction)
    assert policy.model.instr_to_visual.weight.grad.abs().sum() > 0


def test_forward_reduction_none_and_padding_mask():
    policy = tiny_policy("pool", head={"type": "l1"})
    batch = fake_batch(policy.config)
    per_sample, _ = policy(batch, reduction="none")
    assert per_sample.shape == (2,)
    batch["action_is_pad"][:, 4:] = True  # padded steps must not count
    batch2 = {**batch, ACTION: batch[ACTION].clone()}
    batch2[ACTION][:, 4:] = 100.0
    torch.testing.assert_close(policy(batch)[0], policy(batch2)[0])


def test_select_action_is_a_queue_over_chunks(monkeypatch):
    policy = tiny_policy()
    cfg = policy.config
    chunks = [torch.arange(cfg.chunk_size * 7, dtype=torch.float32).view(1, cfg.chunk_size, 7) + 1000 * i
              for i in range(3)]
    calls = []

    def fake_predict(batch, noise=None, **_):
        calls.append(1)
        return chunks[len(calls) - 1]

    monkeypatch.setattr(policy, "predict_action_chunk", fake_predict)
    batch = fake_batch(cfg, batch_size=1, with_action=False)
    got = [policy.select_action(batch) for _ in range(cfg.n_action_steps + 1)]
    assert len(calls) == 2  # refilled once the first n_action_steps were used
    for i in range(cfg.n_action_steps):
        torch.testing.assert_close(got[i], chunks[0][:, i])
    torch.testing.assert_close(got[-1], chunks[1][:, 0])
    policy.reset()  # a new episode drops the rest of the chunk
    torch.testing.assert_close(policy.select_action(batch), chunks[2][:, 0])
    assert len(calls) == 3


def test_same_noise_same_actions_and_batch_consistency():
    policy = tiny_policy("compressor_vla").eval()
    batch, noise = fake_batch(policy.config, with_action=False), noise_for(policy.config)
    a = policy.predict_action_chunk(batch, noise=noise)
    b = policy.predict_action_chunk(batch, noise=noise)
    assert torch.equal(a, b)
    one = {k: v[1:] for k, v in batch.items()}
    torch.testing.assert_close(policy.predict_action_chunk(one, noise=noise[1:]), a[1:], rtol=1e-4, atol=1e-5)


def test_missing_tokens_or_camera_are_clear_errors():
    policy = tiny_policy()
    batch = fake_batch(policy.config, with_action=False)
    with pytest.raises(ValueError, match="pass observations through the VLA preprocessor"):
        policy.predict_action_chunk({k: v for k, v in batch.items() if "language" not in k})
    with pytest.raises(ValueError, match="missing camera 'observation.images.wrist'"):
        policy.predict_action_chunk({k: v for k, v in batch.items() if "wrist" not in k})


def _overfit(head: str, steps: int, compressor: str = "pool") -> tuple[float, float]:
    """Train on one fixed batch; return the loss before/after, measured with a fixed seed
    (the flow loss samples noise and t, so a seeded evaluation compares like with like)."""

    def evaluate() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return policy(batch)[0].item()

    torch.manual_seed(0)
    policy = tiny_policy(compressor, head={"type": head})
    batch = fake_batch(policy.config, batch_size=2)
    opt = torch.optim.AdamW(policy.get_optim_params(), lr=1e-3)
    before = evaluate()
    for _ in range(steps):
        loss, _ = policy(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, evaluate()


def test_loss_falls_when_overfitting_a_tiny_batch():
    before, after = _overfit("l1", steps=50)
    assert after < 0.3 * before, (before, after)


@pytest.mark.slow
def test_flow_loss_falls_when_overfitting_a_tiny_batch():
    before, after = _overfit("flow", steps=100, compressor="compressor_vla")
    assert after < 0.7 * before, (before, after)


def test_qwen2_backbone_and_bfloat16_run():
    policy = tiny_policy("fastv", model={**TINY, "backbone": {**TINY["backbone"], "type": "qwen2"}}, dtype="bfloat16")
    assert type(policy.model.backbone.lm).__name__ == "Qwen2Model"
    chunk = policy.predict_action_chunk(fake_batch(policy.config, with_action=False))
    assert chunk.dtype == torch.float32 and torch.isfinite(chunk).all()
    loss, _ = policy(fake_batch(policy.config))
    assert torch.isfinite(loss)


def test_local_pretrained_parts_are_loaded_and_adopted(tmp_path):
    """vision_path / backbone_path / tokenizer_path: local dirs only, dims read from them."""
    from transformers import LlamaConfig, LlamaModel, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    vision = SiglipVisionModel(SiglipVisionConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                                                  num_attention_heads=2, image_size=64, patch_size=4))
    vision.save_pretrained(tmp_path / "siglip")
    lm = LlamaModel(LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=2,
                                num_key_value_heads=1, vocab_size=500))
    lm.save_pretrained(tmp_path / "llama")
    cfg = tiny_config(vision_path=str(tmp_path / "siglip"), backbone_path=str(tmp_path / "llama"))
    from policies.modeling_vla import VLAPolicy

    policy = VLAPolicy(cfg)
    assert (cfg.vision.hidden_size, cfg.backbone.vocab_size, cfg.backbone.intermediate_size) == (48, 500, 96)
    torch.testing.assert_close(policy.model.vision.state_dict()["vision_model.post_layernorm.weight"],
                               vision.state_dict()["vision_model.post_layernorm.weight"])
    torch.testing.assert_close(policy.model.backbone.lm.embed_tokens.weight, lm.embed_tokens.weight)
    assert torch.isfinite(policy.predict_action_chunk(fake_batch(cfg, with_action=False))).all()
    with pytest.raises(FileNotFoundError, match="not a local model directory"):
        VLAPolicy(tiny_config(backbone_path=str(tmp_path / "nope")))


def test_vision_film_starts_as_the_plain_tower_then_makes_visual_tokens_read_the_instruction():
    """``vision.film``: identity at init (zero last layer), trained by the loss, instruction-dependent after."""
    film_model = {**TINY, "vision": {**TINY["vision"], "film": True}}
    plain, film = tiny_policy("compressor_vla"), tiny_policy("compressor_vla", model=film_model)
    missing, unexpected = film.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("model.vision_film.") for k in missing)
    batch, noise = fake_batch(film.config, with_action=False), noise_for(film.config)
    torch.testing.assert_close(film.predict_action_chunk(batch, noise=noise), plain.predict_action_chunk(batch, noise=noise))

    loss, _ = film(fake_batch(film.config))
    loss.backward()
    assert film.model.vision_film.net[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        film.model.vision_film.net[-1].weight.normal_(std=0.1)
    images = fake_batch(film.config)
    images = torch.stack([images[k] for k in film.config.camera_keys], dim=1)
    pooled = torch.randn(2, film.model.backbone.hidden_size)
    a, _ = film.model.encode_images(images, pooled)
    b, _ = film.model.encode_images(images, pooled.flip(0))
    assert not torch.allclose(a[0][0], b[0][0], atol=1e-4)  # same image, other instruction -> other tokens
    with pytest.raises(ValueError, match="pooled instruction"):
        film.model.encode_images(images)


def test_bidirectional_prefix_lets_visual_tokens_read_the_instruction():
    """backbone.prefix_attention=bidirectional: prefix queries (visual + instruction) see the whole
    prefix, later ones stay causal; causal (the default) keeps the old mask and fingerprint."""
    from policies.backbone import _additive_mask

    pos = torch.tensor([[0, 1, 2, 3, 4]])  # 2 visual, 2 instruction (the second is padding), 1 query
    keys = torch.tensor([[True, True, True, False, True]])
    allowed = (_additive_mask(pos, keys, torch.float32, prefix_len=4)[0, 0] == 0).tolist()
    assert allowed == [
        [True, True, True, False, False],  # a visual token sees the instruction, not the query
        [True, True, True, False, False],
        [True, True, True, False, False],
        [True, True, True, False, False],
        [True, True, True, False, True],  # the query: causal
    ]
    bidirectional_model = {**TINY, "backbone": {**TINY["backbone"], "prefix_attention": "bidirectional"}}
    assert "backbone.prefix_attention" not in tiny_config("none").architecture()  # old fingerprints hold
    assert tiny_config("none", bidirectional_model).architecture()["backbone.prefix_attention"] == "bidirectional"
    with pytest.raises(ValueError, match="prefix_attention must be one of"):
        tiny_config("none", {**TINY, "backbone": {**TINY["backbone"], "prefix_attention": "full"}})

    def visual_outputs(policy, tokens: list[int]) -> torch.Tensor:
        """The visual tokens' hidden states after the first decoder layer, for one instruction."""
        batch = fake_batch(policy.config, batch_size=1, with_action=False)
        batch["observation.language.tokens"] = torch.tensor([tokens])
        batch["observation.language.attention_mask"] = torch.ones(1, len(tokens), dtype=torch.bool)
        captured = []
        hook = policy.model.backbone.lm.layers[0].register_forward_hook(
            lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out))
        with torch.no_grad():
            policy.model.encode(policy._inputs(batch))
        hook.remove()
        return captured[0][0, :4]

    for model, reads_instruction in ((TINY, False), (bidirectional_model, True)):
        policy = tiny_policy("none", model=model).eval()
        a, b = visual_outputs(policy, [5, 6, 7]), visual_outputs(policy, [5, 9, 7])
        assert (not torch.allclose(a, b)) == reads_instruction
