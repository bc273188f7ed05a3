"""Real-time chunking: guided flow sampling (policies/action_heads.py) and the chunk executor (vla/chunking.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _policy_helpers import fake_batch, tiny_policy
from policies.action_heads import RTCGuide, rtc_guidance_weight, rtc_weights

H, A = 8, 7  # the tiny preset's chunk


@pytest.fixture(scope="module")
def policy():
    p = tiny_policy()
    p.eval()
    return p


def _noise(seed: int) -> torch.Tensor:
    return torch.randn(1, H, A, generator=torch.Generator().manual_seed(seed))


def test_soft_mask_and_guidance_weight():
    w = rtc_weights(2, 6, H)
    assert w[:2].tolist() == [1.0, 1.0] and w[6:].tolist() == [0.0, 0.0]
    assert all(1 > a > b > 0 for a, b in zip(w[2:5], w[3:6]))  # decays over the overlap
    assert rtc_guidance_weight(0.0, 5.0) == 5.0 and rtc_guidance_weight(0.5, 5.0) == pytest.approx(2.0)


@pytest.mark.parametrize("delay", [2, 4])
def test_guided_prefix_matches_executing_actions(policy, delay):
    batch = fake_batch(policy.config, batch_size=1, with_action=False)
    prev = policy.predict_action_chunk(batch, noise=_noise(1))[0]
    target = prev[2:]  # the previous chunk from its request step on (6 steps): `delay` pinned, the rest soft
    unguided = policy.predict_action_chunk(batch, noise=_noise(2))[0]
    with torch.inference_mode():  # as the runtime calls it
        guided = policy.predict_action_chunk(batch, noise=_noise(2), rtc=RTCGuide(target, delay))[0]
    err_g = (guided[:delay] - target[:delay]).abs().max()
    err_u = (unguided[:delay] - target[:delay]).abs().max()
    assert err_g < 0.15 and err_u > 1.0, (err_g, err_u)
    soft = slice(delay, len(target))
    assert (guided[soft] - target[soft]).abs().mean() < (unguided[soft] - target[soft]).abs().mean()


def test_default_path_unchanged(policy):
    batch = fake_batch(policy.config, batch_size=2, with_action=False)
    head = policy.model.head
    cond, _ = policy.model.encode(policy._inputs(batch))
    noise = torch.randn(2, H, A, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():  # the pre-RTC loop, written out: rtc=None must give these actions bit for bit
        c, x, dt = head.cond_in(cond), noise.clone(), -1.0 / head.num_steps
        for step in range(head.num_steps):
            x = x + dt * head.velocity(x, torch.full((2,), 1.0 + step * dt), c, step=step, cache=None)
    out = policy.predict_action_chunk(batch, noise=noise, rtc=None)
    assert torch.equal(out, x.float())
    assert torch.equal(out, policy.predict_action_chunk(batch, noise=noise))


def test_guidance_with_step_cache(policy):
    batch = fake_batch(policy.config, batch_size=1, with_action=False)
    target = policy.predict_action_chunk(batch, noise=_noise(1))[0]
    policy.model.head.cache_interval = 2
    try:
        out = policy.predict_action_chunk(batch, noise=_noise(2), rtc=RTCGuide(target, 3))[0]
    finally:
        policy.model.head.cache_interval = 1
    assert (out[:3] - target[:3]).abs().max() < 0.3


class _Counting:
    """A ChunkPolicy whose chunk c has action[j] = 100 c + j (every dim), and records its calls."""

    n_action_steps, chunk_size, embodiment = 4, H, None

    def __init__(self):
        self.calls, self.guides = 0, []

    def reset(self):
        self.calls = 0

    def infer(self, obs, rtc=None):
        self.guides.append(rtc)
        chunk = 100.0 * self.calls + np.arange(H, dtype=np.float32)[:, None] + np.zeros((1, 3), np.float32)
        self.calls += 1
        return {"actions": chunk}


def _run(mode, delay, steps=12):
    from vla.chunking import HOLD, ChunkExecutor

    ex = ChunkExecutor(_Counting(), mode, delay)
    while len(ex.planned) < steps:
        ex.infer({})
    first = {}  # chunk -> (step it starts executing, its index there)
    for t, tag in enumerate(ex.tags):
        if tag != HOLD and tag[0] not in first:
            first[tag[0]] = (t, tag[1])
    return ex, first


def test_executor_switches_at_the_right_step():
    # async, d=2, s=4: chunk c is requested at step 4c - 2 (c >= 1) and executes from step 4c at index 2
    ex, first = _run("async", 2)
    assert first == {0: (2, 0), 1: (6, 2), 2: (10, 2)}
    assert ex.tags[:2] == [(-1, -1)] * 2  # the first chunk is waited for
    assert [a[0] for a in ex.planned[2:8]] == [0, 1, 2, 3, 102, 103]  # old chunk runs during the delay
    # sync, d=2: every chunk waits 2 hold steps, then runs from index 0
    ex, first = _run("sync", 2)
    assert first == {0: (2, 0), 1: (8, 0)} and ex.tags[6:8] == [(-1, -1)] * 2
    # d=0: both are the plain loop (chunk c from step 4c, index 0)
    for mode in ("sync", "async"):
        assert _run(mode, 0)[1] == {0: (0, 0), 1: (4, 0), 2: (8, 0)}
    # d=6 > s: horizon 6, back-to-back requests; a chunk that runs out is held, alignment counts executed actions
    ex, first = _run("async", 6, 24)
    assert first == {0: (6, 0), 1: (12, 6), 2: (18, 2)} and ex.tags[14:18] == [(-1, -1)] * 4


def test_rtc_request_carries_the_executing_prefix(tmp_path):
    from tiny_models import save_tiny_checkpoint
    from vla.chunking import ChunkExecutor, action_normaliser
    from vla.runtime import load_policy

    policy = load_policy(save_tiny_checkpoint(tmp_path / "ckpt"))
    rng = np.random.default_rng(0)
    obs = {"images": {c: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for c in ("agentview", "wrist")},
           "state": rng.standard_normal(8).astype(np.float32), "instruction": "push the red cube to the left"}
    ex = ChunkExecutor(policy, "rtc", delay=2)
    ex.infer(obs)
    cur, i = ex.chunk.copy(), ex.index
    out = ex.infer(obs)
    guide = ex.rtc_guide(cur, i, 2)
    np.testing.assert_allclose(guide.target.numpy(), action_normaliser(policy)(cur[i:]).numpy())
    assert out["skipped"] == 2
    np.testing.assert_allclose(out["actions"][:2], cur[i:i + 2])  # what ran during the delay
    assert np.abs(out["chunk"][:2] - cur[i:i + 2]).max() < 0.15  # the new chunk agrees with it (env units)


def test_eval_with_zero_delay_executes_what_the_plain_loop_does():
    """`vla eval execution=async delay_ms=0` runs the executor (vla/chunking.py) as the rollout agent: with no
    delay it executes exactly the actions of the plain chunk loop (tests/vla/rollout_golden.json)."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "vla"))
    import rollout_cases

    golden = json.loads(rollout_cases.GOLDEN.read_text())["eval_tiny"]
    case = rollout_cases._eval(f"checkpoint={rollout_cases.TINY_CKPT}", "env=tabletop", "episodes=3",
                               "tasks=[push_red_left]", "env.max_episode_steps=24", "execution=async", "delay_ms=0")
    assert json.loads(json.dumps(case())) == golden


@pytest.mark.parametrize("overrides, message", [
    (["execution=fast"], "is not one of: sync, async, rtc"),
    (["execution=async", "delay_ms=-5"], "delay_ms must be a number >= 0"),
    (["delay_ms=100"], "needs execution=sync|async|rtc"),
    (["execution=rtc"], "guides a flow-matching policy"),
])
def test_bad_execution_settings_are_named(tmp_path, overrides, message):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "vla"))
    import rollout_cases
    from vla.evaluate import make_plan

    cfg = rollout_cases._compose("eval", ["checkpoint=expert", *overrides])
    with pytest.raises(ValueError, match=message):
        make_plan(cfg, tmp_path)
