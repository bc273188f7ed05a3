"""The runtime boundary: a saved VLA checkpoint and the scripted expert as ChunkPolicies."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tiny_models import save_tiny_checkpoint
from vla.runtime import ChunkPolicy, ExpertPolicy, check_actions, load_policy


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    return load_policy(tiny_checkpoint, "cpu")


def make_obs(size: int = 128) -> dict:
    rng = np.random.default_rng(0)
    return {
        "images": {cam: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for cam in ("agentview", "wrist")},
        "state": rng.normal(size=8).astype(np.float32),
        "instruction": "put the red cube on the blue plate",
    }


def test_checkpoint_policy_returns_the_documented_chunk(policy):
    assert isinstance(policy, ChunkPolicy)
    policy.reset()
    out = policy.infer(make_obs())
    actions = out["actions"]
    assert actions.dtype == np.float32 and actions.shape == (policy.chunk_size, 7)
    assert np.all(np.isfinite(actions)) and actions.min() >= -1.0 and actions.max() <= 1.0
    assert {"preprocess", "model", "postprocess", "total"} <= set(out["timing_ms"])
    assert out["visual_tokens"] == 2 * 16 * 16  # tiny: 64 px / patch 4 per camera, compressor none
    assert set(out["keep_masks"]) == {"agentview", "wrist"}
    for mask in out["keep_masks"].values():
        assert mask.shape == (16, 16) and mask.dtype == np.float32 and 0 <= mask.min() <= mask.max() <= 1
    assert policy.n_action_steps == 4
    assert policy.policy_type == "vla" and policy.num_params == sum(p.numel() for p in policy.policy.parameters())


def test_same_seed_same_chunk(policy):
    chunks = []
    for _ in range(2):
        torch.manual_seed(3)
        chunks.append(policy.infer(make_obs())["actions"])
    np.testing.assert_array_equal(*chunks)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"instruction": ""}, "instruction"),
        ({"instruction": "   "}, "instruction"),
        ({"state": np.full(8, np.nan, np.float32)}, "NaN"),
        ({"state": np.zeros(5, np.float32)}, "observation.state"),
        ({"images": {"agentview": np.zeros((128, 128, 3), np.float32), "wrist": np.zeros((128, 128, 3), np.uint8)}},
         "agentview.*uint8"),
        ({"images": {"agentview": np.zeros((3, 128, 128), np.uint8), "wrist": np.zeros((128, 128, 3), np.uint8)}},
         r"agentview.*\[H, W, 3\]"),
        ({"images": {"agentview": np.zeros((128, 128, 3), np.uint8)}}, "wrist"),
    ],
)
def test_bad_observations_are_clear_errors(policy, change, match):
    with pytest.raises(ValueError, match=match):
        policy.infer({**make_obs(), **change})


def test_non_finite_actions_raise_never_returned(policy, monkeypatch):
    real = policy.policy.predict_action_chunk_with_info

    def nan_chunk(batch, **kw):
        out, info = real(batch, **kw)
        out[0, 2, 1] = float("nan")
        return out, info

    monkeypatch.setattr(policy.policy, "predict_action_chunk_with_info", nan_chunk)
    with pytest.raises(FloatingPointError, match="non-finite"):
        policy.infer(make_obs())


def test_actions_are_clipped_into_the_robots_own_limits():
    from policies.embodiment import Camera, Embodiment
    from sim.spaces import embodiment

    arm = embodiment(64)  # delta-EEF in [-1, 1]
    chunk = np.array([[5.0, -3.0, 0.5, 0, 0, 0, 1.5]], np.float32)
    np.testing.assert_array_equal(check_actions(chunk, arm), [[1.0, -1.0, 0.5, 0, 0, 0, 1.0]])
    with pytest.raises(ValueError, match=r"shape \(2, 6\); expected \[H >= 1, 7\]"):
        check_actions(np.zeros((2, 6)), arm)
    with pytest.raises(FloatingPointError, match="chunk steps \\[1\\]"):
        check_actions(np.array([[0.0] * 7, [np.nan] + [0.0] * 6]), arm)
    # A 7-joint arm in joint mode: a 2.5 rad target stays 2.5 (inside its joint limits), not 1.0.
    joints = Embodiment((Camera("front", 48, 64),), 7, 7, "joint_position", (-2.9,) * 7, (2.9,) * 7)
    np.testing.assert_allclose(check_actions(np.full((2, 7), 2.5), joints), 2.5)
    np.testing.assert_allclose(check_actions(np.full((1, 7), 3.5), joints), 2.9, rtol=1e-6)


def test_missing_checkpoint_names_the_path(tmp_path):
    missing = tmp_path / "no_such_ckpt"
    with pytest.raises(FileNotFoundError, match="no_such_ckpt"):
        load_policy(missing)


def test_a_folder_that_is_no_policy_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_policy(tmp_path)
    (tmp_path / "config.json").write_text('{"name": "not a policy"}')
    with pytest.raises(ValueError, match='no "type"'):
        load_policy(tmp_path)


def test_load_time_overrides(tiny_checkpoint):
    p = load_policy(tiny_checkpoint, "cpu", n_action_steps=2)
    assert p.n_action_steps == 2 and p.infer(make_obs())["actions"].shape == (p.chunk_size, 7)
    with pytest.raises(ValueError, match="num_layers"):  # architecture change: refused, named
        load_policy(tiny_checkpoint, "cpu", backbone={"num_layers": 2})


def test_expert_policy_is_a_one_step_chunk_policy():
    import sim  # noqa: F401
    from sim.factory import make_env

    env = make_env(OmegaConf.create({"suite": "tabletop", "image_size": [64, 64]}), "push_red_left", cameras=False)
    try:
        obs, info = env.reset(seed=0, options={"layout": 0})
        expert = ExpertPolicy(env)
        assert isinstance(expert, ChunkPolicy) and expert.n_action_steps == 1
        expert.reset()
        out = expert.infer({"images": {}, "state": obs["agent_pos"], "instruction": info["task"]})
        assert out["actions"].shape == (1, 7) and out["visual_tokens"] == 0 and out["keep_masks"] == {}
    finally:
        env.close()
