"""STC, SRC and Compressor-VLA (arXiv 2511.18950): conditioning, locality, invariances, gradients."""

from __future__ import annotations

import pytest
import torch

from compressors import InstructionContext, build

DIM, GRID = 32, (16, 16)  # must match conftest's fixtures
N = GRID[0] * GRID[1]


def _other_instruction() -> InstructionContext:
    return InstructionContext(pooled=torch.randn(2, DIM, generator=torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("name", ["stc", "src", "compressor_vla"])
def test_output_depends_on_instruction_only_through_it(name, tokens, instruction) -> None:
    torch.manual_seed(0)
    compressor = build(name, DIM).eval()
    with torch.no_grad():
        base = compressor(tokens, GRID, instruction).tokens
        again = compressor(tokens, GRID, instruction).tokens
        other = compressor(tokens, GRID, _other_instruction()).tokens
    assert torch.equal(base, again)
    assert (base - other).abs().amax() > 1e-6  # every output token moves with the instruction
    assert ((base - other).abs().amax(dim=(0, 2)) > 0).all()


@pytest.mark.parametrize("name", ["stc", "src", "compressor_vla"])
def test_missing_or_misshaped_instruction_is_an_error(name, tokens) -> None:
    compressor = build(name, DIM)
    with pytest.raises(ValueError, match="needs an InstructionContext"):
        compressor(tokens, GRID, None)
    with pytest.raises(ValueError, match=r"instruction.pooled must be \[2, 32\]"):
        compressor(tokens, GRID, InstructionContext(pooled=torch.randn(2, 8)))


@pytest.mark.parametrize("name", ["stc", "src", "compressor_vla"])
def test_no_instruction_guidance_ablation(name, tokens) -> None:
    compressor = build(name, DIM, use_instruction=False)
    out = compressor(tokens, GRID, None)
    assert out.tokens.shape == (2, compressor.output_tokens(GRID), DIM)


def test_stc_film_starts_near_identity(instruction) -> None:
    stc = build("stc", DIM)
    gamma, beta = stc.film(instruction.pooled)
    assert gamma.shape == beta.shape == (2, 16, DIM)  # one (gamma, beta) pair per query
    assert (gamma - 1).abs().amax() < 0.05 and beta.abs().amax() < 0.05


def test_stc_is_invariant_to_permuting_tokens(tokens, instruction) -> None:
    stc = build("stc", DIM).eval()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = stc(tokens, GRID, instruction)
        permuted = stc(tokens[:, perm], GRID, instruction)
    torch.testing.assert_close(permuted.tokens, out.tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(permuted.kept, out.kept[:, perm], atol=1e-6, rtol=1e-5)


def test_stc_kept_is_attention_over_tokens(tokens, instruction) -> None:
    kept = build("stc", DIM)(tokens, GRID, instruction).kept
    assert kept.shape == (2, N, 16)
    torch.testing.assert_close(kept.sum(dim=1), torch.ones(2, 16))


def test_src_window_output_depends_only_on_its_window(tokens, instruction) -> None:
    src = build("src", DIM).eval()
    perturbed = tokens.clone().view(2, 16, 16, DIM)
    perturbed[:, 4:6, 6:8] += torch.randn(2, 2, 2, DIM)  # window (row 2, col 3) of the 8x8 window grid
    changed = 2 * 8 + 3
    with torch.no_grad():
        base = src(tokens, GRID, instruction).tokens
        moved = src(perturbed.view(2, N, DIM), GRID, instruction).tokens
    diff = (base - moved).abs().amax(dim=(0, 2))
    assert diff[changed] > 1e-4
    assert torch.equal(diff[torch.arange(64) != changed], torch.zeros(63))


def test_src_kept_is_local_soft_assignment(tokens, instruction) -> None:
    kept = build("src", DIM)(tokens, GRID, instruction).kept
    assert kept.shape == (2, N, 64)
    torch.testing.assert_close(kept.sum(dim=1), torch.ones(2, 64))  # attention over its window
    grid_kept = kept.view(2, 16, 16, 8, 8)
    for r, c in [(0, 0), (5, 9), (15, 15)]:
        column = grid_kept[..., r // 2, c // 2]  # [2, 16, 16] weights into token (r//2, c//2)
        assert (column[:, r, c] > 0).all()
        mask = torch.ones(16, 16, dtype=torch.bool)
        mask[(r // 2) * 2 : (r // 2) * 2 + 2, (c // 2) * 2 : (c // 2) * 2 + 2] = False
        assert (column[:, mask] == 0).all()


def test_src_output_is_raster_ordered_over_windows() -> None:
    # With constant tokens per window, each output must be a function of its own window's value.
    src = build("src", DIM, use_instruction=False).eval()
    values = torch.arange(64, dtype=torch.float32).view(8, 8).repeat_interleave(2, 0).repeat_interleave(2, 1)
    x = values.reshape(1, N, 1) * torch.linspace(-1, 1, DIM) + torch.linspace(0, 1, DIM)
    with torch.no_grad():
        out = src(x, GRID).tokens[0]
        for index in [0, 9, 63]:
            window = x[0, values.reshape(-1) == index].unsqueeze(0)  # the 4 tokens of window `index`
            single = src(window, (2, 2)).tokens[0, 0]
            torch.testing.assert_close(out[index], single, atol=1e-5, rtol=1e-5)


def test_compressor_vla_concatenates_stc_then_src(tokens, instruction) -> None:
    model = build("compressor_vla", DIM).eval()
    with torch.no_grad():
        out = model(tokens, GRID, instruction)
        z_g = model.stc(tokens, GRID, instruction)
        z_l = model.src(tokens, GRID, instruction)
    assert out.tokens.shape == (2, 80, DIM) and out.kept.shape == (2, N, 80)
    assert torch.equal(out.tokens, torch.cat([z_g.tokens, z_l.tokens], dim=1))
    assert torch.equal(out.kept, torch.cat([z_g.kept, z_l.kept], dim=2))
    assert out.extras["stc_tokens"] == 16


@pytest.mark.parametrize("name", ["stc", "src", "compressor_vla"])
def test_gradients_reach_every_parameter(name, tokens, instruction) -> None:
    compressor = build(name, DIM)
    tokens = tokens.clone().requires_grad_(True)
    compressor(tokens, GRID, instruction).tokens.square().mean().backward()
    for pname, param in compressor.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
