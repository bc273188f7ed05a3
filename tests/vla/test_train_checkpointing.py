"""Training checkpoints are atomic: `last` only ever points at a complete folder."""

from __future__ import annotations

import json

import pytest
import torch

from vla.training import checkpointing


class FakePolicy(torch.nn.Module):
    """Stands in for VLAPolicy: writes its weights the way save_pretrained does, or fails midway."""

    def __init__(self, fail: bool = False):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.fail = fail

    def save_pretrained(self, path):
        path.mkdir(parents=True, exist_ok=True)
        (path / "model.safetensors").write_bytes(b"partial")
        if self.fail:
            raise OSError("disk full")
        (path / "config.json").write_text("{}")


def _save(tmp_path, step, policy=None):
    policy = policy or FakePolicy()
    opt = torch.optim.AdamW(policy.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return checkpointing.save(tmp_path, step, policy, None, None, opt, sched, {"batch_size": 2}, "a: 1\n", keep_last=2)


def test_last_points_at_the_newest_complete_checkpoint_and_old_ones_are_pruned(tmp_path):
    assert checkpointing.last_checkpoint(tmp_path) is None
    for step in (1, 2, 3):
        _save(tmp_path, step)
    root = checkpointing.checkpoints_dir(tmp_path)
    assert checkpointing.last_checkpoint(tmp_path) == root / "000003"
    assert sorted(p.name for p in root.iterdir()) == ["000002", "000003", "last"]
    state = json.loads((root / "last" / "training_state" / "training_step.json").read_text())
    assert state == {"step": 3, "batch_size": 2}
    for name in ("optimizer_state.safetensors", "scheduler_state.json", "rng_state.safetensors"):
        assert (root / "last" / "training_state" / name).is_file()
    assert (root / "last" / "train_config.yaml").read_text() == "a: 1\n"
    assert (root / "last").is_symlink() and not (root / "last").readlink().is_absolute()


def test_a_failed_write_never_becomes_last_and_is_cleaned_up(tmp_path):
    _save(tmp_path, 1)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, 2, FakePolicy(fail=True))
    root = checkpointing.checkpoints_dir(tmp_path)
    assert checkpointing.last_checkpoint(tmp_path) == root / "000001"
    assert (root / "tmp-000002").is_dir() and not (root / "000002").exists()
    assert checkpointing.clean_partial(tmp_path) == [root / "tmp-000002"]
    assert sorted(p.name for p in root.iterdir()) == ["000001", "last"]
