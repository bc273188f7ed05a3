"""`vla train` in-process: the tiny model learns, resumes exactly, fine-tunes with freezing, and
bad input fails with a message naming what is wrong.

Resume after SIGKILL: tests/vla/test_train_resume.py; the CLI path: tests/e2e/test_train_cli.py.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from policies.modeling_vla import CheckpointError
from train_helpers import compose_train, dataset_root, small_run, write_dataset
from vla.train import train
from vla.training.data import DatasetError
from vla.training.settings import TrainConfigError, settings_from


def weights(ckpt) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / "model.safetensors"))


@pytest.fixture(scope="module")
def dataset(tabletop_dataset):
    return dataset_root(tabletop_dataset)


@pytest.fixture(scope="module")
def base_checkpoint(dataset, tmp_path_factory):
    """A 2-step tiny checkpoint to fine-tune from."""
    out = tmp_path_factory.mktemp("base")
    return train(small_run(dataset, out, "train.steps=2")).checkpoint


def _loss_ratio(result, window: int) -> float:
    losses = [loss for _, loss in result.losses]
    return (sum(losses[-window:]) / window) / (sum(losses[:window]) / window)


def test_tiny_model_loss_falls(dataset, tmp_path):
    cfg = small_run(dataset, tmp_path, "train.steps=60", "batch_size=4", "lr=1e-3", "train.warmup_steps=5",
                    "train.log_every=5", "train.save_every=0")
    result = train(cfg)
    # Measured: windows of 5 steps go ~1.7 -> ~1.05 (ratio ~0.64); flow-matching loss is noisy: a margin.
    assert _loss_ratio(result, window=2) < 0.8, result.losses
    assert result.samples_per_s > 0 and (tmp_path / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_tiny_preset_loss_falls_over_a_few_hundred_steps(dataset, tmp_path):
    cfg = compose_train(f"dataset={dataset}", "model=tiny", "threads=1", f"output_dir={tmp_path}", "train.steps=300",
                        "batch_size=8", "lr=1e-3", "train.warmup_steps=20", "train.log_every=10", "train.save_every=0")
    result = train(cfg)
    assert _loss_ratio(result, window=3) < 0.6, result.losses


def test_keypose_auxiliary_loss_is_learned_and_its_checkpoint_acts(dataset, tmp_path):
    """model.keypose_loss_weight > 0: the keypose head trains beside the action head (logged in
    metrics.jsonl), the architecture says so, and the checkpoint loads and acts like any other."""
    from policies.configuration_vla import VLAConfig, make_features
    from policies.modeling_vla import VLAPolicy
    from vla.checkpoint import load_checkpoint
    from vla.runtime import load_policy
    from vla.training.loop import read_metrics

    cfg = small_run(dataset, tmp_path, "train.steps=60", "lr=1e-3", "train.warmup_steps=5", "train.log_every=10",
                    "model.keypose_loss_weight=1.0")
    result = train(cfg)
    rows = [r for r in read_metrics(tmp_path) if "keypose_loss" in r]
    assert len(rows) == 6 and all(r["loss"] > r["action_loss"] for r in rows)
    assert rows[-1]["keypose_loss"] < 0.7 * rows[0]["keypose_loss"], rows
    loaded = load_checkpoint(result.checkpoint)
    assert loaded.policy.config.architecture()["keypose_head"] is True
    assert loaded.policy.model.keypose_head is not None
    rng = np.random.default_rng(0)
    obs = {"images": {cam: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for cam in ("agentview", "wrist")},
           "state": rng.normal(size=8).astype(np.float32), "instruction": "put the red cube in the bowl"}
    actions = load_policy(result.checkpoint).infer(obs)["actions"]
    assert actions.shape == (8, 7) and np.isfinite(actions).all()
    # vla probe reports the keypose head: how far off it is, and how much a one-word swap moves it.
    from omegaconf import OmegaConf

    from vla.probe import run as probe

    cfg = OmegaConf.create({"checkpoint": str(result.checkpoint), "dataset": str(dataset), "frames": 8,
                            "batch_size": 4, "seed": 0, "device": "cpu", "threads": 1, "frame_index": 0})
    keypose = probe(cfg, tmp_path / "probe", [])["keypose"]
    assert 0 < keypose["error_m"] < 1 and keypose["target_distance_m"] > 0.05
    assert keypose["one_word_move_m"] is None  # these 3 instructions differ in more than one word
    assert "Keypose head" in (tmp_path / "probe" / "instruction_probe.md").read_text()
    # Off (the default): no head and no fingerprint key, so checkpoints saved before it still match.
    inputs, outputs = make_features()
    default = VLAConfig(input_features=inputs, output_features=outputs)
    assert "keypose_head" not in default.architecture() and VLAPolicy(default).model.keypose_head is None
    with pytest.raises(ValueError, match="no keypose head"):
        VLAPolicy(default).predict_keypose({})


def test_oversample_start_puts_first_frames_in_every_batch(dataset, tmp_path, monkeypatch):
    from vla.training import loop

    seen: list[list[int]] = []
    real_step = loop.train_step

    def recording_step(run, batch, step):
        seen.append(batch["frame_index"].tolist())
        return real_step(run, batch, step)

    monkeypatch.setattr(loop, "train_step", recording_step)
    train(small_run(dataset, tmp_path, "train.steps=6", "train.save_every=0",
                    "data.oversample_start.frames=2", "data.oversample_start.fraction=0.5"))
    assert len(seen) == 6
    # 2 of every 4 rows come from frames 0-1; uniform sampling would give ~2/12 of them
    assert all(sum(f < 2 for f in batch) >= 2 for batch in seen), seen
    assert all(f < 2 for batch in seen for f in batch[2:]), seen


def test_resuming_with_other_oversampling_warns_that_the_data_order_differs(dataset, tmp_path, caplog):
    train(small_run(dataset, tmp_path, "train.steps=2"))
    with caplog.at_level("WARNING", logger="vla.training.loop"):
        result = train(small_run(dataset, tmp_path, "train.steps=3", "data.oversample_start.frames=2"))
    assert result.start_step == 2 and result.end_step == 3
    warned = [r.getMessage() for r in caplog.records if "changed settings" in r.getMessage()]
    assert warned and "'oversample_start': '[0, 0] -> [2, 1]'" in warned[0], warned


def test_validation_loss_on_held_out_episodes_without_the_frame_cache(dataset, tmp_path):
    cfg = small_run(dataset, tmp_path, "train.steps=2", "data.val_episodes=1", "train.eval_every=2",
                    "train.eval_batches=2", "data.cache=false")
    result = train(cfg)
    assert len(result.val_losses) == 1 and 0 < result.val_losses[0][1] < 100
    assert len(result.losses) == 2


FROZEN = {"none": (), "vision": ("model.vision.",), "vision_backbone": ("model.vision.", "model.backbone.")}


@pytest.mark.parametrize("freeze", list(FROZEN))
def test_finetune_freezes_what_it_is_asked_to(dataset, base_checkpoint, tmp_path, freeze):
    result = train(small_run(dataset, tmp_path, f"init_from={base_checkpoint}", f"freeze={freeze}", "train.steps=2"))
    before, after = weights(base_checkpoint), weights(result.checkpoint)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    frozen = {k for k in before if k.startswith(FROZEN[freeze])}
    assert not changed & frozen
    assert any(k.startswith("model.head.") for k in changed)
    if freeze == "none":
        assert any(k.startswith("model.vision.") for k in changed)


def test_finetune_on_another_robots_dataset(base_checkpoint, tmp_path, caplog):
    """Cross-embodiment: the robot-specific parts are re-initialised (and said); its stats cannot be kept."""
    other = write_dataset(tmp_path / "teleop", state_dim=6)
    with pytest.raises(TrainConfigError, match=r"finetune_stats=checkpoint: checkpoint .* is for another robot"):
        train(small_run(other, tmp_path / "keep", f"init_from={base_checkpoint}", "train.steps=1",
                        "finetune_stats=checkpoint"))
    with caplog.at_level("WARNING"):
        train(small_run(other, tmp_path / "out", f"init_from={base_checkpoint}", "train.steps=1"))
    assert "re-initialised model.head, model.state_proj" in caplog.text


def test_resuming_with_another_architecture_is_refused(dataset, base_checkpoint, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base_checkpoint.parent, out / "checkpoints")
    with pytest.raises(CheckpointError, match="backbone.num_layers"):
        train(compose_train(f"dataset={dataset}", "model=cpu", f"output_dir={out}", "train.steps=3"))
    with pytest.raises(CheckpointError, match="backbone.num_layers"):  # init_from with a model named explicitly
        train(compose_train(f"dataset={dataset}", "model=cpu", f"output_dir={tmp_path / 'ft'}",
                            f"init_from={base_checkpoint}"), check_init_arch=True)


def test_a_killed_finetune_resumes_with_the_init_checkpoint_architecture(dataset, tmp_path):
    # The base differs from the default architecture (compressor), and the fine-tune command names none:
    # rerunning it must resume the fine-tune, not compare the checkpoint with the defaults.
    base = train(small_run(dataset, tmp_path / "base", "compressor=pool", "train.steps=2")).checkpoint
    command = (f"init_from={base}", "train.save_every=2")
    first = train(small_run(dataset, tmp_path / "ft", *command, "train.steps=2"))
    resumed = train(small_run(dataset, tmp_path / "ft", *command, "train.steps=4"))
    assert first.checkpoint.name == "000002" and resumed.checkpoint.name == "000004"
    assert resumed.start_step == 2 and resumed.end_step == 4  # continued, not restarted


def test_finetune_with_checkpoint_stats_warns_when_the_data_does_not_fit_them(tmp_path, caplog):
    """finetune_stats=checkpoint on data spread far wider than the checkpoint's: a warning naming the
    dimensions and the way out; on data like the checkpoint's own: no warning."""
    narrow = write_dataset(tmp_path / "narrow", action_scale=0.05)
    base = train(small_run(narrow, tmp_path / "base", "train.steps=1")).checkpoint
    wide = write_dataset(tmp_path / "wide", action_scale=1.0)
    for data, expect_warning in ((narrow, False), (wide, True)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="vla.training.build"):
            train(small_run(data, tmp_path / f"ft_{data.name}", f"init_from={base}", "finetune_stats=checkpoint",
                            "train.steps=1"))
        warned = [r.getMessage() for r in caplog.records if "finetune_stats=checkpoint" in r.getMessage()]
        assert bool(warned) == expect_warning, warned
    assert "'action' dims [0, 1, 2, 3, 4, 5, 6]" in warned[0] and "finetune_stats=dataset" in warned[0]


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (["dataset=/no/such/dataset"], DatasetError, "/no/such/dataset"),
        (["train.steps=abc"], TrainConfigError, "train.steps='abc' must be an integer"),
        (["freeze=visoin"], TrainConfigError, "Did you mean 'vision'"),
        (["device=cuda"], TrainConfigError, "no CUDA GPU"),
        (["resume=true"], TrainConfigError, "has no checkpoint"),
        (["batch_size=0"], TrainConfigError, "batch_size=0 is out of range"),
        (["init_from=/no/such/ckpt"], FileNotFoundError, "/no/such/ckpt"),
        (["train=finetune"], TrainConfigError, "set init_from=<checkpoint>"),
        (["+model.vision.bogus=1"], TrainConfigError, "model=tiny, compressor=none: bad model.*bogus"),
        (["model.chunk_size=0"], TrainConfigError, "chunk_size must be >= 1"),
        (["model.keypose_loss_weight=-1"], TrainConfigError, "keypose_loss_weight must be >= 0"),
        (["data.oversample_start.fraction=1.5"], TrainConfigError, "data.oversample_start.fraction=1.5 is out of range"),
        (["data.oversample_start.frames=-1"], TrainConfigError, "data.oversample_start.frames=-1 is out of range"),
    ],
)
def test_bad_input_is_a_clear_error(dataset, tmp_path, overrides, error, match):
    if torch.cuda.is_available() and "device=cuda" in overrides:
        overrides = ["device=cuda:99"]  # still not usable
        error, match = Exception, ""
    cfg = small_run(dataset, tmp_path, "train.steps=1", *overrides)
    with pytest.raises(error, match=match):
        train(cfg)


def test_cameras_default_to_the_datasets_and_named_ones_must_exist(tmp_path):
    from vla.checkpoint import load_checkpoint

    ds = write_dataset(tmp_path / "one_cam", cameras=("agentview",))
    with pytest.raises(DatasetError, match="camera 'observation.images.wrist'"):
        train(small_run(ds, tmp_path / "named", "train.steps=1",
                        "+model.camera_keys=[observation.images.agentview,observation.images.wrist]"))
    out = tmp_path / "default"
    train(small_run(ds, out, "train.steps=1"))
    config = load_checkpoint(out / "checkpoints" / "last").policy.config
    assert config.camera_keys == ["observation.images.agentview"]
    assert config.robot().camera_names == ["agentview"] and config.robot().action_kind == "other"


def test_the_debug_preset_is_two_steps_on_the_tiny_model(dataset):
    s = settings_from(compose_train(f"dataset={dataset}", "train=debug"))
    assert s.steps == 2 and s.save_every == 1 and s.model["name"] == "tiny"
    s = settings_from(compose_train(f"dataset={dataset}", "train=debug", "model=cpu"))
    assert s.model["name"] == "cpu"  # the command line wins over the preset
