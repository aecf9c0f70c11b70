"""Resuming: what may change between a run and its continuation, which checkpoint it continues, one run per
folder, and the metrics log of redone steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from motionformer.engine.checkpoint import load_checkpoint
from motionformer.engine.config import load_config
from motionformer.engine.lock import FolderLockedError, RunLock
from motionformer.engine.train import train

from .conftest import tiny_overrides

pytestmark = pytest.mark.slow

ONE_EPOCH = ("train.epochs=1", "train.eval_every=0", "train.test_at_end=false", "train.lr=0.001")


def _config(data: Path, output: Path, *extra: str):
    return load_config("synthetic-tiny", tiny_overrides(data, output, *ONE_EPOCH, *extra))


@pytest.fixture()
def one_epoch_run(tiny_data, tmp_path) -> Path:
    output = tmp_path / "run"
    train(_config(tiny_data, output))
    return output


@pytest.mark.parametrize(("override", "named"), [
    ("train.lr=0.002", "train.lr: checkpoint 0.001, now 0.002"),
    ("data.batch_size=2", "data.batch_size: checkpoint 4, now 2"),
    ("model.drop_path_rate=0.1", "model.drop_path_rate: checkpoint 0.0, now 0.1"),
])
def test_a_changed_setting_is_refused_naming_both_values(one_epoch_run, tiny_data, override, named):
    with pytest.raises(ValueError, match="cannot be continued with this config") as refused:
        train(_config(tiny_data, one_epoch_run, "train.epochs=2", override))
    assert named in str(refused.value) and "train.resume=fresh" in str(refused.value)
    assert load_checkpoint(one_epoch_run / "checkpoints" / "last.pt")["step"] == 5  # untouched


def test_reordered_or_more_classes_are_refused(one_epoch_run, tiny_data, tmp_path):
    names = (tiny_data / "classes.txt").read_text().splitlines()
    for classes in (names[::-1], [*names, "one more"]):
        other = tmp_path / f"data-{len(classes)}"
        shutil.copytree(tiny_data, other, symlinks=True, dirs_exist_ok=True)
        (other / "classes.txt").write_text("\n".join(classes) + "\n")
        with pytest.raises(ValueError, match="class names of the training data: checkpoint 10 classes"):
            train(_config(other, one_epoch_run, "train.epochs=2"))


def test_length_and_logging_may_change_and_are_recorded(one_epoch_run, tiny_data):
    summary = train(_config(tiny_data, one_epoch_run, "train.epochs=2", "train.log_every=5", "data.workers=1"))
    assert summary["steps"] == 10
    saved = load_checkpoint(one_epoch_run / "checkpoints" / "last.pt")["config"]
    assert (saved["train"]["epochs"], saved["train"]["log_every"], saved["data"]["workers"]) == (2, 5, 1)
    assert "epochs: 2" in (one_epoch_run / "config.yaml").read_text()


def test_override_continues_with_the_new_rate(one_epoch_run, tiny_data):
    train(_config(tiny_data, one_epoch_run, "train.epochs=2", "train.lr=0.002", "train.resume=override",
                  "train.schedule=cosine", "train.min_lr=0.002"))
    last = load_checkpoint(one_epoch_run / "checkpoints" / "last.pt")
    assert last["step"] == 10 and last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.002)


def test_fresh_sets_the_old_run_aside(one_epoch_run, tiny_data):
    old_metrics = (one_epoch_run / "metrics.jsonl").read_text()
    train(_config(tiny_data, one_epoch_run, "train.lr=0.002", "train.resume=fresh"))
    [previous] = (one_epoch_run / "previous").iterdir()
    assert (previous / "metrics.jsonl").read_text() == old_metrics
    assert load_checkpoint(previous / "checkpoints" / "last.pt")["config"]["train"]["lr"] == 0.001
    assert load_checkpoint(one_epoch_run / "checkpoints" / "last.pt")["config"]["train"]["lr"] == 0.002


def test_without_last_pt_the_newest_epoch_checkpoint_is_continued(one_epoch_run, tiny_data):
    (one_epoch_run / "checkpoints" / "last.pt").unlink()
    summary = train(_config(tiny_data, one_epoch_run, "train.epochs=2"))
    assert summary["steps"] == 10  # 5 steps continued from epoch-0001.pt, not 10 from scratch
    records = [json.loads(line) for line in (one_epoch_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 11))  # no step twice


def test_a_held_folder_is_refused(tiny_data, tmp_path):
    with RunLock(tmp_path / "run"), pytest.raises(FolderLockedError, match="is in use by another run"):
        train(_config(tiny_data, tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_metrics_of_a_run_that_never_checkpointed_are_dropped(tiny_data, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 3, "loss": 9.9}) + "\n")
    train(_config(tiny_data, output))
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert all(line.get("loss") != 9.9 for line in lines)
