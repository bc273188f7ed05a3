"""FastV and EfficientVLA selection inside the backbone, on constructed attention maps."""

from __future__ import annotations

import pytest
import torch

from compressors import build

WIDTH, HEADS = 24, 2  # backbone width != visual dim (8): selection must not care
PREFIX, NV, NI = 2, 16, 4  # sequence: [2 system tokens, 16 visual, 4 instruction]
S = PREFIX + NV + NI
VISUAL = torch.arange(PREFIX, PREFIX + NV)
INSTRUCTION = torch.arange(PREFIX + NV, S)


def _attention(boost: dict[int, float], rows: torch.Tensor | None = None, transpose: bool = False) -> torch.Tensor:
    """Causal [1, HEADS, S, S] attention with extra mass on visual tokens ``boost`` (visual order)."""
    logits = torch.randn(1, HEADS, S, S, generator=torch.Generator().manual_seed(0)) * 0.1
    for i, value in boost.items():
        if transpose:  # visual i attends to the instruction (instruction placed before the image)
            logits[:, :, VISUAL[i], INSTRUCTION] += value
        elif rows is None:
            logits[:, :, :, VISUAL[i]] += value
        else:
            logits[:, :, rows.unsqueeze(1), VISUAL[i]] += value
    if not transpose:
        logits = logits.masked_fill(torch.ones(S, S, dtype=torch.bool).triu(1), float("-inf"))
    return logits.softmax(dim=-1)


def test_fastv_keeps_most_attended_tokens() -> None:
    fastv = build("fastv", 8)
    attended = [1, 4, 6, 10, 12, 15]
    attn = _attention({i: 4.0 for i in attended})
    assert fastv.keep_count(NV) == 8  # R = 0.5
    keep, kept = fastv.select(torch.randn(1, S, WIDTH), attn, VISUAL, INSTRUCTION, budget=6)
    assert keep.tolist() == [attended]
    assert kept.shape == (1, NV) and kept[0, attended].all() and kept.sum() == 6


@pytest.mark.parametrize("name", ["fastv", "efficientvla"])
@pytest.mark.parametrize("budget", [1, 5, 9, NV, None])
def test_in_lm_budget_is_respected(name, budget) -> None:
    method = build(name, 8)
    attn = _attention({}).expand(3, -1, -1, -1)
    keep, kept = method.select(torch.randn(3, S, WIDTH), attn, VISUAL, INSTRUCTION, budget)
    count = method.keep_count(NV) if budget is None else budget
    assert keep.shape == (3, count) and kept.shape == (3, NV)
    assert torch.equal(kept.sum(dim=1), torch.full((3,), count))
    assert (keep.diff(dim=1) > 0).all()  # ascending: sequence order is kept
    assert torch.equal(torch.zeros(3, NV, dtype=torch.bool).scatter_(1, keep, True), kept)


def test_constructor_budget_and_ratio() -> None:
    assert build("fastv", 8, ratio=0.75).keep_count(16) == 4
    assert build("fastv", 8, budget=3).keep_count(16) == 3
    assert build("efficientvla", 8).keep_count(256) == 112
    assert build("efficientvla", 8, budget=56).keep_count(256) == 56
    assert build("efficientvla", 8).split(112) == (4, 54, 54)
    assert build("efficientvla", 8).split(3) == (3, 0, 0)


@pytest.mark.parametrize("instruction_first", [False, True])
def test_efficientvla_keeps_relevant_then_diverse_tokens(instruction_first) -> None:
    method = build("efficientvla", 8, budget=8)  # K_key 4, task floor(0.5 * 4) = 2, diverse 2
    relevance = {5: 5.0, 2: 4.6, 11: 4.2, 14: 3.8, 0: 3.0, 8: 2.6}
    attn = _attention(relevance, rows=INSTRUCTION, transpose=instruction_first)
    # Hidden states: every visual token along e0, except tokens 3 and 9 (e1, e2): the diverse fill.
    hidden = torch.randn(1, S, WIDTH, generator=torch.Generator().manual_seed(1)) * 0.01
    hidden[0, VISUAL, 0] += 1.0
    hidden[0, VISUAL[3], 1] += 3.0
    hidden[0, VISUAL[9], 2] += 3.0
    keep, _ = method.select(hidden, attn, VISUAL, INSTRUCTION)
    assert keep.tolist() == [sorted([5, 2, 11, 14, 0, 8, 3, 9])]


def test_efficientvla_diverse_fill_is_greedy_over_the_growing_set() -> None:
    method = build("efficientvla", 8, budget=6, k_key=4, alpha=0.0)  # 4 key + 2 diverse
    attn = _attention({0: 5.0, 1: 5.0, 2: 5.0, 3: 5.0}, rows=INSTRUCTION)
    hidden = torch.zeros(1, S, WIDTH)
    hidden[0, VISUAL, 0] = 1.0
    hidden[0, VISUAL[[7, 12]], 5] = 4.0  # 7 and 12 both far from the key set but identical
    hidden[0, VISUAL[10], 6] = 2.0  # farther than the e0 tokens, less far than 7/12 at first
    keep, _ = method.select(hidden, attn, VISUAL, INSTRUCTION)
    assert keep.tolist() == [[0, 1, 2, 3, 7, 10]]  # after 7, 12 is redundant -> 10


def test_in_lm_errors() -> None:
    hidden, attn = torch.randn(1, S, WIDTH), _attention({})
    with pytest.raises(ValueError, match="eager"):
        build("fastv", 8).select(hidden, None, VISUAL, INSTRUCTION)
    with pytest.raises(ValueError, match=r"budget 17 exceeds the 16"):
        build("fastv", 8).select(hidden, attn, VISUAL, INSTRUCTION, budget=17)
    with pytest.raises(ValueError, match=r"budget 99 exceeds the 16"):
        build("efficientvla", 8, budget=99).select(hidden, attn, VISUAL, INSTRUCTION)
    with pytest.raises(ValueError, match=r"attn must be \[1, H, 22, 22\]"):
        build("fastv", 8).select(hidden, attn[..., :-1], VISUAL, INSTRUCTION)
    with pytest.raises(ValueError, match="visual_index"):
        build("fastv", 8).select(hidden, attn, torch.tensor([0, S]), INSTRUCTION)
    with pytest.raises(ValueError, match="instruction_index"):
        build("efficientvla", 8).select(hidden, attn, VISUAL, None)
