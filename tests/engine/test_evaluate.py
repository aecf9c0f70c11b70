"""Inference as the weights expect it (segments, channel order, views), ``predict --json``, clip-level accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from motionformer.cli import main
from motionformer.engine.config import load_config
from motionformer.engine.evaluate import ClipAccuracy, evaluate_checkpoint
from motionformer.inference import predict, video_scores, video_views
from motionformer.models import InputSpec, WeightsInfo, create_model, from_checkpoint, save_model

from .conftest import tiny_overrides

TINY = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2)
NAMES = [f"class {i}" for i in range(10)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """An SSv2-style frame folder: 47 frames of random colours, 40 pixels wide and 32 high."""
    root = tmp_path_factory.mktemp("frames") / "1234"
    root.mkdir()
    rng = np.random.default_rng(0)
    for number in range(1, 48):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(root / f"1234_{number:06d}.png")
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One tiny untrained model saved as RGB clip weights and as BGR segment weights (SSv2's released kind)."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = create_model("mformer_tiny", num_classes=10, **TINY)
    specs = {"rgb": InputSpec(num_frames=4, crop_size=32, sampling_rate=2, num_clips=2, num_crops=3,
                              class_names=NAMES),
             "bgr": InputSpec(num_frames=4, crop_size=32, num_crops=3, channel_order="bgr", sampling="segments",
                              class_names=NAMES)}
    return {name: save_model(model, root / name, WeightsInfo(source="test", architecture=model.architecture,
                                                             input=spec))[0]
            for name, spec in specs.items()}


def test_segment_views_of_a_frame_folder_follow_the_released_protocol(folder):
    spec = InputSpec(num_frames=4, crop_size=32, num_crops=3, channel_order="bgr", sampling="segments")
    views = video_views(folder, spec)
    assert views.shape == (1, 3, 3, 4, 32, 32)  # (clips, crops, channels, frames, height, width)
    # 47 frames in 4 segments: seg = 46 / 4 = 11.5; bounds round(11.5 i) = 0, 12, 23, 34, 46 (half to even);
    # the middles (s + e) // 2 = 6, 17, 28, 40
    for frame, position in enumerate([6, 17, 28, 40]):
        rgb = np.asarray(Image.open(folder / f"1234_{position + 1:06d}.png"), dtype=np.float32)
        bgr = rgb[:, :, ::-1]
        normalised = (bgr / 255 - 0.5) / 0.5  # (32, 40, 3); the short side is already the crop: no resize
        for crop, left in enumerate([0, 4, 8]):  # start, centre ceil((40 - 32) / 2) = 4, end
            expected = torch.from_numpy(normalised[:, left:left + 32].transpose(2, 0, 1).copy())
            torch.testing.assert_close(views[0, crop, :, frame], expected, rtol=0, atol=1e-6)


def test_bgr_weights_see_the_rgb_input_with_channels_swapped(tiny_data, checkpoints):
    video = next((tiny_data / "videos").rglob("*.mp4"))
    rgb = InputSpec(num_frames=4, crop_size=32, sampling_rate=2, num_clips=2, num_crops=3)
    bgr = InputSpec(num_frames=4, crop_size=32, sampling_rate=2, num_clips=2, num_crops=3, channel_order="bgr")
    rgb_views = video_views(video, rgb)
    assert rgb_views.shape == (2, 3, 3, 4, 32, 32)
    torch.testing.assert_close(video_views(video, bgr), rgb_views.flip(2), rtol=0, atol=0)
    [answer] = predict([video], checkpoints["bgr"], device="cpu")  # segments: 1 clip x 3 crops, BGR
    model = from_checkpoint(checkpoints["bgr"])
    segments = InputSpec(num_frames=4, crop_size=32, num_crops=3, sampling="segments")
    expected = video_scores(model, video_views(video, segments).flip(2))[""]
    torch.testing.assert_close(torch.tensor(answer.scores[""]), expected, rtol=0, atol=1e-6)


def test_predict_json_prints_one_object_per_input(tiny_data, folder, checkpoints, capsys):
    video = next((tiny_data / "videos").rglob("*.mp4"))
    assert main(["predict", str(video), str(folder), "--checkpoint", str(checkpoints["rgb"]), "--json",
                 "--top-k", "3", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, (video, folder), strict=True):
        answer = json.loads(line)
        assert set(answer) == {"video", "scores", "top"} and answer["video"] == str(path)
        scores = answer["scores"][""]
        assert len(scores) == 10 and sum(scores) == pytest.approx(1.0, abs=1e-5)
        ranked = sorted(range(10), key=lambda i: -scores[i])[:3]
        assert answer["top"][""] == [[NAMES[i], pytest.approx(scores[i])] for i in ranked]


def test_clip_accuracy_counts_every_view_once():
    clips = ClipAccuracy()
    scores = torch.tensor([[[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]],  # item 0 (label 0): crop 0 right, crop 1 wrong
                           [[0.1, 0.3, 0.6], [0.2, 0.2, 0.6]]])  # item 1 (label 2): both right
    clips.add(torch.tensor([0, 1]), {"": scores}, {"": torch.tensor([0, 2])})
    clips.add(torch.tensor([1]), {"": scores[:1]}, {"": torch.tensor([0])})  # a repeat of item 1: ignored
    assert clips.metrics() == {"clip_top1": 75.0, "clip_top5": 100.0}
    epic = ClipAccuracy()
    epic.add(torch.tensor([0]), {"verb": scores[:1], "noun": scores[1:]}, {"verb": torch.tensor([0]),
                                                                          "noun": torch.tensor([2])})
    assert epic.metrics()["clip_action_top1"] == 50.0 and epic.metrics()["clip_noun_top1"] == 100.0


@pytest.mark.parametrize(("clips", "crops"), [(1, 1), (2, 3)])
def test_test_metrics_hold_clip_and_video_level_accuracy(tiny_data, tmp_path, clips, crops):
    model = create_model("mformer_tiny", num_classes=10, **TINY)
    weights, _ = save_model(model, tmp_path / "model")
    overrides = tiny_overrides(tiny_data, tmp_path / "test", f"checkpoint={weights}", f"eval.num_clips={clips}",
                               f"eval.num_crops={crops}", "eval.confusion=false")
    metrics = evaluate_checkpoint(load_config("synthetic-tiny", overrides))
    written = json.loads((tmp_path / "test" / "test_metrics.json").read_text())
    assert written == pytest.approx(metrics)
    assert {"top1", "top5", "clip_top1", "clip_top5"} <= set(written) and written["videos"] == 10
    if clips * crops == 1:  # one view: the clip is the video
        assert (written["clip_top1"], written["clip_top5"]) == (written["top1"], written["top5"])
