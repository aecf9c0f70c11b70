"""The demo: where its synthetic data is generated (and where not), its timing over resumed runs, its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from motionformer.engine import demo
from motionformer.engine.config import load_config


@pytest.fixture
def generated(monkeypatch) -> list[dict]:
    """Calls of the synthetic generator, recorded instead of run."""
    calls: list[dict] = []

    class Summary:
        num_written, root, seconds = 0, None, 0.0

    def record(root, **kwargs):
        calls.append({"root": Path(root), **kwargs})
        return Summary()

    monkeypatch.setattr(demo, "generate", record)
    return calls


def test_the_preset_generates_only_in_its_own_folder(generated, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = load_config(demo.PRESET)
    demo.prepare_preset_data(config, ["train.epochs=1"])
    assert generated == [{"root": Path("data/synthetic-motion"), "num_videos": 2000, "size": 32, "frames": 16,
                          "plain": True, "seed": 0}]
    generated.clear()
    demo.prepare_preset_data(load_config(demo.PRESET, ["data.root=/mine"]), ["data.root=/mine"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    demo.prepare_preset_data(config, [])
    assert generated == []


def test_the_training_time_counts_every_invocation(tmp_path):
    records = [{"kind": "train", "step": 1, "loss": 2.3}, {"kind": "epoch", "epoch": 0, "step": 5, "seconds": 30.0},
               {"kind": "summary", "step": 5, "train_seconds": 31.0},  # the first invocation ends here
               {"kind": "epoch", "epoch": 1, "step": 10, "seconds": 45.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    assert demo.logged_training_seconds(tmp_path) == 75.0
    assert demo.logged_training_seconds(tmp_path / "nothing") == 0.0


def test_report_names_both_times():
    result = demo.DemoResult(summary={"epochs": 10, "steps": 1000, "test_top1": 79.0, "test_top5": 100.0,
                                      "test_videos": 400.0},
                             video=Path("v.mp4"), true_class="moving left", predictions=[("moving left", 0.9)],
                             chance=10.0, seconds=30.0, training_seconds=390.0, output_dir=Path("run"))
    assert result.report().splitlines() == [
        "motionformer demo: 10 epochs, 1000 steps; run folder run",
        "test top-1 79.0% (top-5 100.0%, chance 10%) on 400 held-out videos",
        "held-out video v.mp4 (true class: moving left):",
        "  1. moving left  0.900",
        "training: 6.5 min for 10 epochs (metrics.jsonl, every invocation of this run)",
        "this invocation: 0.5 min (data, training, test and prediction)",
    ]


def test_train_never_writes_videos_into_a_data_root_it_was_given(tmp_path, capsys):
    from motionformer.cli import main

    given = tmp_path / "mine"
    assert main(["train", demo.PRESET, f"data.root={given}", f"output_dir={tmp_path / 'run'}"]) == 2
    assert "annotation file not found" in capsys.readouterr().err and not given.exists()
