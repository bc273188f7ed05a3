"""Pre-LM training-free methods on constructed examples: ToMe, DivPrune, VisionZip, pool, random."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from compressors import build

DIM, GRID = 32, (16, 16)  # must match conftest's fixtures
N = GRID[0] * GRID[1]


# ----------------------------------------------------------------------------- ToMe


def test_tome_preserves_size_weighted_mean(tokens) -> None:
    for budget in (3, 80, 200):
        out = build("tome", DIM, budget=budget)(tokens, GRID)
        sizes = out.extras["sizes"]
        assert torch.equal(sizes, out.kept.sum(dim=1))  # sizes count the merged sources
        assert torch.equal(sizes.sum(dim=1), torch.full((2,), float(N)))
        weighted_mean = (sizes.unsqueeze(-1) * out.tokens).sum(dim=1) / N
        torch.testing.assert_close(weighted_mean, tokens.mean(dim=1), atol=1e-5, rtol=1e-5)
        # Each output is the mean of its sources; each input has exactly one output (rows one-hot).
        group_mean = out.kept.transpose(1, 2) @ tokens / sizes.unsqueeze(-1)
        torch.testing.assert_close(out.tokens, group_mean, atol=1e-5, rtol=1e-5)
        assert torch.equal(out.kept.sum(dim=2), torch.ones(2, N))


def test_tome_merges_identical_neighbours() -> None:
    distinct = F.normalize(torch.randn(8, DIM, generator=torch.Generator().manual_seed(0)), dim=-1)
    x = distinct.repeat_interleave(2, dim=0).unsqueeze(0)  # tokens 2k and 2k+1 identical (A/B pairs)
    out = build("tome", DIM, budget=8)(x, (4, 4))
    torch.testing.assert_close(out.tokens[0], distinct)  # raster order restored, values unchanged
    assert torch.equal(out.extras["sizes"][0], torch.full((8,), 2.0))
    expected = torch.arange(16) // 2
    assert torch.equal(out.kept[0].argmax(dim=1), expected)


# ----------------------------------------------------------------------------- DivPrune


def _clustered_tokens() -> tuple[torch.Tensor, int]:
    """3 tight clusters of 5 tokens along e0, e1, e2 plus one isolated token along e3 (position 9)."""
    g = torch.Generator().manual_seed(0)
    basis = torch.eye(DIM)
    x = torch.stack([basis[k] + 0.05 * torch.randn(DIM, generator=g) for k in [0, 1, 2] for _ in range(5)])
    isolated = 9
    x = torch.cat([x[:isolated], basis[3:4], x[isolated:]])  # 16 tokens
    return x.unsqueeze(0), isolated


def test_divprune_picks_one_token_per_cluster() -> None:
    x, isolated = _clustered_tokens()
    cluster = torch.tensor([0] * 5 + [1] * 4 + [3] + [1] + [2] * 5)
    out = build("divprune", DIM, budget=4)(x, (4, 4))
    kept = out.kept[0].nonzero().squeeze(1)
    assert isolated in kept.tolist()  # the seed: the most isolated token
    assert sorted(cluster[kept].tolist()) == [0, 1, 2, 3]
    assert torch.equal(out.extras["index"][0], kept)  # original order


def test_divprune_matches_a_plain_greedy_max_min_reference() -> None:
    x = torch.randn(1, 16, DIM, generator=torch.Generator().manual_seed(4))
    dist = 1 - F.cosine_similarity(x[0, :, None], x[0, None], dim=-1)
    # Reference (DivPrune's algorithm, written with loops): seed = largest nearest-neighbour distance.
    chosen = [int(dist.masked_fill(torch.eye(16, dtype=torch.bool), 9).amin(dim=1).argmax())]
    while len(chosen) < 5:
        min_to_set = dist[:, chosen].amin(dim=1)
        min_to_set[chosen] = -1
        chosen.append(int(min_to_set.argmax()))
    kept = build("divprune", DIM, budget=5)(x, (4, 4)).kept[0]
    assert kept.nonzero().squeeze(1).tolist() == sorted(chosen)


# ----------------------------------------------------------------------------- VisionZip


def test_visionzip_keeps_salient_tokens_and_merges_the_rest(tokens) -> None:
    saliency = torch.zeros(2, N)
    salient = torch.tensor([3, 50, 100, 200, 255])
    saliency[:, salient] = 1.0
    out = build("visionzip", DIM, budget=8, contextual=3)(tokens, GRID, attention=saliency)
    assert torch.equal(out.extras["dominant"], salient.expand(2, -1))
    assert torch.equal(out.tokens[:, :5], tokens[:, salient])  # dominant first, original order
    membership = out.kept
    assert torch.equal(membership.sum(dim=2), torch.ones(2, N))  # every token ends up somewhere
    assert torch.equal(membership[:, salient, :5], torch.eye(5).expand(2, -1, -1))
    counts = membership[:, :, 5:].sum(dim=1)
    assert torch.equal(counts.sum(dim=1), torch.full((2,), float(N - 5)))
    torch.testing.assert_close(out.tokens[:, 5:], membership[:, :, 5:].transpose(1, 2) @ tokens / counts.unsqueeze(-1))


def test_visionzip_fallback_saliency_prefers_large_tokens(tokens) -> None:
    x = tokens.clone()
    x[:, [7, 77]] *= 6.0  # strongly attended under softmax(X X^T / sqrt(D))
    out = build("visionzip", DIM, budget=4, contextual=2)(x, GRID)
    assert torch.equal(out.extras["dominant"], torch.tensor([7, 77]).expand(2, -1))


# ----------------------------------------------------------------------------- pool, random


def test_pool_matches_avg_pool2d(tokens) -> None:
    out = build("pool", DIM)(tokens, GRID)
    image = tokens.transpose(1, 2).reshape(2, DIM, 16, 16)
    expected = F.avg_pool2d(image, 2).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out.tokens, expected)
    assert out.kept.shape == (2, N, 64)
    assert torch.equal(out.kept[0, 17], F.one_hot(torch.tensor(0), 64).float())  # (1, 1) -> window 0
    assert torch.equal(out.kept[0, 18], F.one_hot(torch.tensor(1), 64).float())  # (1, 2) -> window 1


def test_random_is_seeded_and_leaves_global_rng_alone(tokens) -> None:
    state = torch.get_rng_state()
    first = build("random", DIM, budget=20, seed=5)(tokens, GRID).extras["index"]
    same = build("random", DIM, budget=20, seed=5)(tokens, GRID).extras["index"]
    other = build("random", DIM, budget=20, seed=6)(tokens, GRID).extras["index"]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, same)
    assert not torch.equal(first, other)
    assert not torch.equal(first[0], first[1])  # each batch element draws its own subset


def test_random_reset_replays_the_stream(tokens) -> None:
    compressor = build("random", DIM, budget=20, seed=1)
    a = compressor(tokens, GRID).extras["index"]
    b = compressor(tokens, GRID).extras["index"]
    compressor.reset()
    assert not torch.equal(a, b)
    assert torch.equal(compressor(tokens, GRID).extras["index"], a)
