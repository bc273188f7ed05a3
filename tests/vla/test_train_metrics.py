"""`metrics.jsonl` survives a crash: a torn last line (a run killed mid-write) is dropped with a
warning and the run resumes; a bad line in the middle is an error naming the file and the line."""

from __future__ import annotations

import json
import logging

import pytest

from train_helpers import small_run, write_dataset
from vla.train import train
from vla.training.checkpointing import RunFolderError
from vla.training.loop import METRICS_FILE, _truncate_metrics, read_metrics

ROWS = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}, {"step": 3, "loss": 0.3}]


def _write(path, text: str) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + text)


def test_torn_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / METRICS_FILE
    _write(path, '{"step": 4, "lo')  # killed mid-write: no newline, not JSON
    with caplog.at_level(logging.WARNING):
        assert read_metrics(tmp_path) == ROWS
    assert f"{path} line 4 is incomplete" in caplog.text
    _truncate_metrics(path, 2)  # what a resume from step 2 does: atomic rewrite of complete lines
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in ROWS[:2])
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_text(json.dumps(ROWS[0]) + "\n{garbage\n" + json.dumps(ROWS[1]) + "\n")
    with pytest.raises(RunFolderError, match=rf"'{path}' line 2 is not a metrics row"):
        read_metrics(tmp_path)
    before = path.read_text()
    with pytest.raises(RunFolderError):
        _truncate_metrics(path, 10)
    assert path.read_text() == before  # nothing rewritten


def test_run_with_a_torn_metrics_line_resumes(tmp_path):
    dataset = write_dataset(tmp_path / "ds", episodes=1, length=10)
    out = tmp_path / "run"
    first = train(small_run(dataset, out, "train.steps=2", "train.save_every=2"))
    assert first.end_step == 2
    metrics = out / METRICS_FILE
    with open(metrics, "a") as f:
        f.write('{"step": 3, "loss": 0.1')  # the run was killed while logging step 3
    resumed = train(small_run(dataset, out, "train.steps=3", "train.save_every=2"))
    assert resumed.start_step == 2 and resumed.end_step == 3
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2, 3]
    assert metrics.read_text().endswith("\n")
