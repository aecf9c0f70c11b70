"""Epic-Kitchens (verb and noun heads) end to end, and fine-tuning from an authors'-format released checkpoint."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from motionformer.engine.build import build_split, input_spec, load_finetune
from motionformer.engine.checkpoint import load_checkpoint
from motionformer.engine.config import ConfigError, load_config
from motionformer.engine.train import train
from motionformer.inference import predict
from motionformer.layers import TrajectoryOptions
from motionformer.models.motionformer import Motionformer
from motionformer.models.registry import create_model
from tests.models.test_weights import _released_cfg, _write_released

from .conftest import tiny_overrides

HEADER = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp", "stop_timestamp",
          "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun", "noun_class", "all_nouns",
          "all_noun_classes"]


def _epic_dataset(source: Path, root: Path) -> None:
    """Synthetic clips laid out as EPIC-KITCHENS-100 videos, one segment each, verb = class, noun = 2 x class."""
    videos = sorted((source / "videos").rglob("*.mp4"))
    for split, chosen in (("train", videos[::2]), ("validation", videos[1::2][:6])):
        with open(root / f"EPIC_100_{split}.csv", "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(HEADER)
            for number, video in enumerate(chosen):
                label = ["moving_left", "moving_right", "moving_up"].index(video.parent.name) \
                    if video.parent.name in ("moving_left", "moving_right", "moving_up") else 3
                video_id = f"P01_{split}_{number:03d}"
                target = root / "P01" / "videos" / f"{video_id}.MP4"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(video, target)
                writer.writerow([f"{video_id}_0", "P01", video_id, "00:00:00.00", "00:00:00.00", "00:00:00.25", 1, 8,
                                 "x", "v", label, "n", 2 * label, "[]", "[]"])


def test_epic_run_trains_both_heads_and_reports_action_accuracy(tiny_data, tmp_path):
    root = tmp_path / "epic"
    root.mkdir()
    _epic_dataset(tiny_data, root)
    output = tmp_path / "run"
    overrides = tiny_overrides(root, output, "data.format=epic", "data.recipe=epic", "data.train=EPIC_100_train.csv",
                               "data.val=EPIC_100_validation.csv", "train.epochs=1", "train.mixup=0.5")
    summary = train(load_config("synthetic-tiny", overrides))
    assert {"test_verb_top1", "test_noun_top1", "test_action_top1", "test_clip_action_top1"} <= set(summary)
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    epoch = next(record for record in records if record["kind"] == "epoch")
    assert 0 <= epoch["val_action_top1"] <= min(epoch["val_verb_top1"], epoch["val_noun_top1"])
    assert (output / "confusion_verb.png").exists() and (output / "confusion_noun.png").exists()
    with open(output / "predictions.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 6 and "action_correct" in rows[0]
    [answer] = predict([root / "P01" / "videos" / "P01_validation_000.MP4"], output / "model.safetensors", top_k=2)
    assert set(answer.top) == {"verb", "noun"} and len(answer.top["verb"]) == 2


def test_finetune_from_a_released_checkpoint(tiny_data, tmp_path, caplog):
    released = Motionformer(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2,
                            num_classes=5, trajectory=TrajectoryOptions(original_temporal_values=True))
    path = tmp_path / "k400_tiny.pyth"
    _write_released(path, released, _released_cfg(classes=5, crop=32, embed_dim=32, PATCH_SIZE=8))
    config = load_config("synthetic-tiny", tiny_overrides(tiny_data, tmp_path / "run"))
    model = create_model("mformer_tiny", num_classes=10, **config.model.options)
    with caplog.at_level(logging.WARNING):
        report = load_finetune(model, path)
    assert "original_temporal_values" in caplog.text
    assert set(report["new"]) == {"head.weight", "head.bias"}
    assert torch.equal(model.blocks[1].attn.proj_kv.weight, released.blocks[1].attn.proj_kv.weight)
    summary = train(load_config("synthetic-tiny", tiny_overrides(tiny_data, tmp_path / "run", "train.epochs=1",
                                                                 "train.test_at_end=false")), finetune=str(path))
    assert summary["steps"] == 5


def test_finetune_rejects_another_architecture(tiny_data, tmp_path):
    other = Motionformer(img_size=32, patch_size=8, num_frames=4, embed_dim=48, depth=2, num_heads=2, num_classes=5)
    path = tmp_path / "wide.pyth"
    _write_released(path, other, _released_cfg(classes=5, crop=32, embed_dim=48, PATCH_SIZE=8))
    config = load_config("synthetic-tiny", tiny_overrides(tiny_data, tmp_path / "run"))
    model = create_model("mformer_tiny", num_classes=10, **config.model.options)
    with pytest.raises(ValueError, match=r"has shape .* the checkpoint holds another architecture"):
        load_finetune(model, path)


def test_finetune_from_bgr_weights_keeps_bgr_unless_told(tiny_data, tmp_path, caplog):
    released = Motionformer(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2,
                            num_classes=5, trajectory=TrajectoryOptions(original_temporal_values=True))
    path = tmp_path / "ssv2_tiny.pyth"  # the released SSv2 models learnt BGR frames
    _write_released(path, released, _released_cfg(dataset="Ssv2", classes=5, crop=32, embed_dim=32, PATCH_SIZE=8))
    for extra, expected in (((), "bgr"), (("data.channel_order=rgb",), "rgb")):
        config = load_config("synthetic-tiny", tiny_overrides(tiny_data, tmp_path / "probe", *extra))
        model = create_model("mformer_tiny", num_classes=10, **config.model.options)
        load_finetune(model, path)
        with caplog.at_level(logging.INFO):
            spec = input_spec(config, model)
        assert spec.channel_order == expected
        for training in (True, False):  # the data gives the clips in that order
            assert build_split(config, "val", spec, training=training).transform.channel_order == expected
    assert "keeping BGR" in caplog.text and "using RGB as data.channel_order says" in caplog.text
    output = tmp_path / "run"
    train(load_config("synthetic-tiny", tiny_overrides(tiny_data, output, "train.epochs=1", "train.test_at_end=false")),
          finetune=str(path))
    assert json.loads((output / "model.json").read_text())["input"]["channel_order"] == "bgr"
    last = output / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["input"]["channel_order"] == "bgr"
    again = create_model("mformer_tiny", num_classes=10, **config.model.options)
    load_finetune(again, last)  # a run's checkpoint passes the order on
    assert input_spec(load_config("synthetic-tiny", tiny_overrides(tiny_data, tmp_path / "probe")),
                      again).channel_order == "bgr"
    with pytest.raises(ConfigError, match=r"data\.channel_order='grb' is not one of rgb, bgr"):
        load_config("synthetic-tiny", ["data.channel_order=grb"])
