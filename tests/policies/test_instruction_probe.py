"""`vla probe` (vla/probe.py): how much a policy's actions change when its instruction is swapped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _policy_helpers import STATS, tiny_config, tiny_policy
from vla.probe import instruction_sensitivity, keypose_sensitivity, single_word_change

REPO = Path(__file__).resolve().parents[2]
BOWL = ["put the red cube in the bowl", "put the green cube in the bowl", "put the yellow cube in the bowl"]


def raw_frames(config, tasks: list[str], per_task: int = 2, seed: int = 0) -> list[dict]:
    """One collated, not yet preprocessed batch (what `sample_frames` returns) with ``per_task`` frames per task."""
    g = torch.Generator().manual_seed(seed)
    n, size = per_task * len(tasks), config.vision.image_size
    batch = {key: torch.rand(n, 3, size, size, generator=g) for key in config.camera_keys}
    batch["observation.state"] = torch.randn(n, 8, generator=g)
    batch["task"] = [t for t in tasks for _ in range(per_task)]
    return [batch]


def test_single_word_change():
    assert single_word_change(BOWL[0], BOWL[1]) == ("red", "green")
    assert single_word_change(BOWL[0], BOWL[0]) is None
    assert single_word_change(BOWL[0], "push the red cube to the left") is None
    assert single_word_change("stack the red cube on the green cube", "stack the green cube on the red cube") is None


def green_reads_as_red(**overrides):
    """A tiny compressor_vla policy (+ preprocessor) whose "green" embedding equals "red" and whose
    "yellow" clearly differs: swapping red<->green cannot change anything it computes."""
    from policies.processor_vla import make_vla_pre_post_processors

    policy = tiny_policy("compressor_vla", **overrides)
    pre, _ = make_vla_pre_post_processors(policy.config, dataset_stats=STATS)
    ids = {w: int(pre({**raw_frames(policy.config, [f"{w}"], 1)[0]})["observation.language.tokens"][0, 0])
           for w in ("red", "green", "yellow")}
    with torch.no_grad():
        emb = policy.model.backbone.lm.embed_tokens.weight
        emb[ids["green"]] = emb[ids["red"]]
        emb[ids["yellow"]] = emb[ids["red"]] + 0.5
    return policy, pre


def test_a_word_the_policy_cannot_tell_apart_measures_zero_and_the_others_do_not():
    """Give "green" the embedding of "red": red<->green swaps must not move the actions, red<->yellow must."""
    policy, pre = green_reads_as_red()
    report = instruction_sensitivity(policy, pre, raw_frames(policy.config, BOWL), BOWL)
    assert report["frames"] == 6 and len(report["pairs"]) == 6
    words = report["one_word_changes"]
    assert words["red -> green"]["sensitivity"] == 0.0 and words["green -> red"]["sensitivity"] == 0.0
    assert words["red -> yellow"]["sensitivity"] > 1e-3 and words["yellow -> green"]["sensitivity"] > 1e-3
    assert report["mean_other_pairs"] is None  # every pair here differs in one word


def test_probe_needs_two_instructions_and_known_tasks():
    from policies.processor_vla import make_vla_pre_post_processors

    policy = tiny_policy("none")
    pre, _ = make_vla_pre_post_processors(policy.config, dataset_stats=STATS)
    with pytest.raises(ValueError, match="at least 2 task instructions"):
        instruction_sensitivity(policy, pre, raw_frames(policy.config, BOWL[:1]), BOWL[:1])
    with pytest.raises(ValueError, match="missing from the dataset's task list"):
        instruction_sensitivity(policy, pre, raw_frames(policy.config, BOWL), BOWL[:2])


def test_vla_probe_cli_on_a_recorded_dataset(tmp_path, tabletop_dataset):
    """As a user runs it: a checkpoint + a `vla collect` dataset -> Markdown, JSON, heatmap, reproduce command."""
    from policies.processor_vla import make_vla_pre_post_processors
    from vla.checkpoint import save_checkpoint

    policy = tiny_policy("compressor_vla")
    pre, post = make_vla_pre_post_processors(policy.config, dataset_stats=STATS)
    save_checkpoint(tmp_path / "ckpt", policy, pre, post)
    out = tmp_path / "probe"
    proc = subprocess.run(
        [sys.executable, "-m", "vla.cli", "probe", f"checkpoint={tmp_path / 'ckpt'}", f"dataset={tabletop_dataset}",
         "frames=6", "batch_size=3", "threads=1", f"hydra.run.dir={out}"],
        cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "instruction_probe.json").read_text())
    assert report["frames"] == 6 and len(report["tasks"]) == 3
    per_own = {p["own"] for p in report["pairs"]}
    assert len(report["pairs"]) == 2 * len(per_own) and per_own <= set(report["tasks"])
    assert all(p["sensitivity"] >= 0 for p in report["pairs"]) and report["mean_other_pairs"] > 0
    assert (out / "instruction_probe.png").stat().st_size > 0
    assert "all other pairs" in (out / "instruction_probe.md").read_text()
    assert "vla probe checkpoint=" in proc.stdout and "frames=6" in report["reproduce"]


def test_first_frames_only(tabletop_dataset):
    """frame_index=0 samples first frames only (6 episodes -> at most 6 frames); an index no episode
    reaches is an error naming it."""
    from vla.training.data import sample_frames

    cams = list(tiny_config("none").camera_keys)
    batches = sample_frames(tabletop_dataset, cams, num_batches=4, batch_size=4, frame_index=0)
    index = torch.cat([b["frame_index"] for b in batches])
    assert len(index) == 6 and (index == 0).all() and len(torch.cat([b["episode_index"] for b in batches]).unique()) == 6
    later = torch.cat([b["frame_index"] for b in sample_frames(tabletop_dataset, cams, 2, 4, frame_index=5)])
    assert (later == 5).all()
    with pytest.raises(ValueError, match="no episode .* has a frame 100000 steps in"):
        sample_frames(tabletop_dataset, cams, frame_index=100000)


def test_keypose_probe_measures_error_and_how_far_a_word_moves_the_prediction():
    """Keypose head: mean error against the targets, and how far a one-word swap moves the
    prediction; 0 for a word whose embedding equals another's (red<->green), > 0 otherwise."""
    policy, pre = green_reads_as_red(keypose_loss_weight=1.0)
    with torch.no_grad():
        policy.model.keypose_head[-1].weight.mul_(100.0)  # untrained, it predicts ~0: make the words show
    targets = torch.full((6, 3), 0.1)

    def frames(tasks: list[str]) -> list[dict]:
        batch = raw_frames(policy.config, tasks)
        batch[0]["index"] = torch.arange(2 * len(tasks))
        return batch

    red_green = keypose_sensitivity(policy, pre, frames(BOWL[:2]), BOWL[:2], targets)
    assert red_green["one_word_move_m"] == 0.0 and red_green["error_m"] > 0
    assert red_green["target_distance_m"] == pytest.approx(0.1 * 3**0.5, rel=1e-5)
    assert keypose_sensitivity(policy, pre, frames(BOWL), BOWL, targets)["one_word_move_m"] > 1e-4
