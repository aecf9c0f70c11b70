"""The ``motionformer`` command: help everywhere, demo, test and predict on generated data, error exits."""

from __future__ import annotations

import json

import pytest

from motionformer.cli import build_parser, main

from .conftest import TINY_MODEL, run_cli, tiny_overrides

COMMANDS = [[], ["demo"], ["train"], ["test"], ["predict"], ["visualize"], ["config"], ["config", "show"],
            ["config", "list"], ["flops"], ["convert"], ["export"], ["data"], ["data", "synthetic"], ["data", "check"],
            ["bench"], ["bench", "motion"], ["lra"], ["lra", "generate"], ["lra", "train"], ["lra", "cost"],
            ["lra", "report"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "motionformer")
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])
    assert done.value.code == 0 and "usage: motionformer" in capsys.readouterr().out


def test_config_errors_exit_with_status_2(capsys):
    assert main(["config", "show", "synthetic-tiny", "train.epoch=3"]) == 2
    assert "did you mean train.epochs" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_then_test_and_predict_commands(tmp_path):
    folder = tmp_path / "demo"
    tiny = [f"model.options={TINY_MODEL}", "data.scale_range=[32, 36]", "data.batch_size=4", "data.workers=0"]
    demo = run_cli("demo", "--dir", str(folder), "--epochs", "1", "--num-videos", "30", *tiny)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "test top-1" in demo.stdout and "(true class:" in demo.stdout and "chance 10%" in demo.stdout
    assert "training: " in demo.stdout and "min for 1 epochs (metrics.jsonl, every invocation" in demo.stdout
    run = folder / "run"
    assert (run / "model.safetensors").exists() and (folder / "data" / "train.csv").exists()
    assert json.loads((run / "model.json").read_text())["dataset"] == "synthetic-motion"

    tested = run_cli("test", "synthetic-tiny", *tiny_overrides(folder / "data", tmp_path / "test",
                                                              f"checkpoint={run / 'checkpoints' / 'last.pt'}"))
    assert tested.returncode == 0, tested.stderr[-3000:]
    metrics = json.loads((tmp_path / "test" / "test_metrics.json").read_text())
    assert metrics["videos"] == 10 and (tmp_path / "test" / "confusion.png").exists()

    video = next((folder / "data" / "videos").rglob("*.mp4"))
    predicted = run_cli("predict", str(video), "--checkpoint", str(run / "model.safetensors"), "--top-k", "2")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    lines = predicted.stdout.splitlines()
    assert lines[0] == str(video) and lines[1].startswith("  1. ") and lines[2].startswith("  2. ")

    missing = run_cli("predict", str(folder / "nope.mp4"), "--checkpoint", str(run / "model.safetensors"))
    assert missing.returncode == 2 and "video not found" in missing.stderr
