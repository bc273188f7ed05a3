"""Properties every registered compressor must have, parametrised over ``compressors.available()``."""

from __future__ import annotations

import pytest
import torch

import compressors
from compressors import InLMCompressor, build

DIM, GRID = 32, (16, 16)  # must match conftest's fixtures
N = GRID[0] * GRID[1]

ALL = compressors.available()
PRE_LM = [name for name in ALL if build(name, DIM).stage == "pre_lm"]
PRUNING = ["random", "divprune", "tome", "visionzip"]  # pre-LM methods with a per-camera `budget`
EXPECTED_COUNTS = {  # 16x16 grid, default arguments
    "none": 256, "stc": 16, "src": 64, "compressor_vla": 80, "pool": 64,
    "random": 80, "divprune": 80, "tome": 80, "visionzip": 80, "fastv": 256, "efficientvla": 256,
}


def test_every_method_is_registered() -> None:
    assert set(ALL) == set(EXPECTED_COUNTS)


@pytest.mark.parametrize("name", ALL)
def test_output_shapes_match_output_tokens(name, tokens, instruction) -> None:
    compressor = build(name, DIM)
    out = compressor(tokens, GRID, instruction)
    m = compressor.output_tokens(GRID)
    assert m == EXPECTED_COUNTS[name]
    assert out.tokens.shape == (2, m, DIM)
    if out.kept.dtype == torch.bool:
        assert out.kept.shape == (2, N)
        assert (out.kept.sum(dim=1) == m).all()
    else:
        assert out.kept.shape == (2, N, m)
        assert (out.kept >= 0).all()


def test_compressor_vla_counts_for_other_settings() -> None:
    assert build("compressor_vla", DIM, num_queries=32, window=4).output_tokens((16, 16)) == 32 + 16
    assert build("pool", DIM, kernel=4).output_tokens((16, 16)) == 16


@pytest.mark.parametrize("name", PRUNING)
@pytest.mark.parametrize("budget", [1, 7, 64, N])
def test_pruning_budget_is_respected(name, budget, tokens) -> None:
    compressor = build(name, DIM, budget=budget)
    out = compressor(tokens, GRID)
    assert compressor.output_tokens(GRID) == budget
    assert out.tokens.shape == (2, budget, DIM)
    if out.kept.dtype == torch.bool:
        assert (out.kept.sum(dim=1) == budget).all()
    else:  # hard merging: every input token is in at most one output token, none is empty
        membership = out.kept.sum(dim=2)
        dropped = name == "visionzip" and budget == 1  # 1 dominant, 0 contextual: the rest is dropped
        assert torch.equal(membership, (out.kept.sum(dim=2) > 0).float() if dropped else torch.ones(2, N))
        assert (out.kept.sum(dim=1) >= 1).all()


@pytest.mark.parametrize("name", ["random", "divprune"])
def test_pruned_tokens_are_the_kept_ones_in_order(name, tokens) -> None:
    out = build(name, DIM, budget=10)(tokens, GRID)
    for b in range(2):
        assert torch.equal(out.tokens[b], tokens[b][out.kept[b]])


@pytest.mark.parametrize("name", PRUNING)
def test_budget_larger_than_grid_is_a_clear_error(name, tokens) -> None:
    small = tokens[:, :64]
    with pytest.raises(ValueError, match=r"budget 80 exceeds the 64"):
        build(name, DIM)(small, (8, 8))


@pytest.mark.parametrize("name", ALL)
def test_bad_shapes_are_clear_errors(name, tokens, instruction) -> None:
    compressor = build(name, DIM)
    with pytest.raises(ValueError, match=r"\[B, N, D\]"):
        compressor(tokens[0], GRID, instruction)
    with pytest.raises(ValueError, match=r"do not fill grid \(16, 8\)"):
        compressor(tokens, (16, 8), instruction)
    with pytest.raises(ValueError, match=r"width 16 != the compressor's dim 32"):
        compressor(tokens[..., :16], GRID, instruction)


@pytest.mark.parametrize("name", ["src", "pool", "compressor_vla"])
def test_grid_not_divisible_by_window(name) -> None:
    compressor = build(name, DIM, **({"kernel": 3} if name == "pool" else {"window": 3}))
    with pytest.raises(ValueError, match=r"grid \(16, 16\) is not divisible by window 3"):
        compressor(torch.randn(1, N, DIM), GRID, compressors.InstructionContext(pooled=torch.randn(1, DIM)))


def test_unknown_name_lists_available_and_suggests() -> None:
    with pytest.raises(ValueError) as err:
        build("fastvv", DIM)
    message = str(err.value)
    assert "Did you mean 'fastv'?" in message
    assert all(name in message for name in ALL)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("random", {"budget": 0}),
        ("tome", {"budget": -3}),
        ("pool", {"kernel": 0}),
        ("stc", {"num_heads": 5}),  # 32 is not divisible by 5
        ("src", {"window": 0}),
        ("visionzip", {"budget": 8, "contextual": 9}),
        ("fastv", {"ratio": 1.0}),
        ("efficientvla", {"alpha": 1.5}),
        ("none", {"dim": 0}),
    ],
)
def test_bad_constructor_arguments(name, kwargs) -> None:
    dim = kwargs.pop("dim", DIM)
    with pytest.raises(ValueError):
        build(name, dim, **kwargs)


@pytest.mark.parametrize("name", ["none", "fastv", "efficientvla"])
def test_identity_pre_lm(name, tokens) -> None:
    out = build(name, DIM)(tokens, GRID)
    assert out.tokens is tokens
    assert out.kept.all()


def test_stage_and_learned_flags() -> None:
    learned = {name for name in ALL if build(name, DIM).learned}
    assert learned == {"stc", "src", "compressor_vla"}
    for name in ALL:
        compressor = build(name, DIM)
        assert (compressor.stage == "in_lm") == isinstance(compressor, InLMCompressor)
        assert (sum(p.numel() for p in compressor.parameters()) > 0) == compressor.learned
