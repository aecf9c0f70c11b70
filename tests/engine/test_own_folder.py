"""Training, testing and predicting on a folder of one's own videos with the folder-small preset: the commands a
newcomer runs, and the data folder left exactly as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import TINY_MODEL, run_cli

pytestmark = pytest.mark.slow


def _class_folders(tiny_data: Path, root: Path) -> None:
    """``root/{train,val}/<class>/*.mp4`` (links to the tiny synthetic videos): the layout the preset reads."""
    names = (tiny_data / "classes.txt").read_text().splitlines()
    for split in ("train", "val"):
        for line in (tiny_data / f"{split}.csv").read_text().splitlines():
            path, label = line.rsplit(" ", 1)
            target = root / split / names[int(label)].replace(" ", "_") / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(tiny_data / path)


def _snapshot(root: Path) -> dict[str, float]:
    return {str(path.relative_to(root)): path.lstat().st_mtime for path in sorted(root.rglob("*"))}


def test_train_test_and_predict_on_class_folders(tiny_data, tmp_path):
    data, run = tmp_path / "my-videos", tmp_path / "run"
    _class_folders(tiny_data, data)
    before = _snapshot(data)
    small = [f"data.root={data}", f"output_dir={run}", f"model.options={TINY_MODEL}", "data.sampling_rate=2",
             "data.batch_size=4", "data.workers=0", "train.epochs=1", "train.warmup_epochs=0"]
    trained = run_cli("train", "folder-small", *small)
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["videos"] == 10
    assert json.loads((run / "model.json").read_text())["dataset"] == "custom"

    tested = run_cli("test", "folder-small", *small, f"output_dir={tmp_path / 'test'}",
                     f"checkpoint={run / 'model.safetensors'}")
    assert tested.returncode == 0, tested.stderr[-3000:]
    video = next((data / "val").rglob("*.mp4"))
    predicted = run_cli("predict", str(video), "--checkpoint", str(run / "model.safetensors"), "--top-k", "1")
    assert predicted.returncode == 0 and predicted.stdout.splitlines()[1].startswith("  1. ")
    assert _snapshot(data) == before  # nothing written to the user's folder
