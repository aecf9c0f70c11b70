"""Sliding-window prediction: a video whose class changes half-way shows the change in the windows after it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from motionformer.cli import main
from motionformer.inference import predict_timeline, sliding_windows
from motionformer.models import InputSpec, WeightsInfo, create_model, save_model

NAMES = ["red", "blue"]


def colour_model() -> torch.nn.Module:
    """A one-block joint-attention model set by hand: class 0 where red pixels outnumber blue ones, class 1 where
    blue do. Every patch embeds as (sum of red, sum of blue, 0 ...), queries and keys are zero (attention is the
    mean over all tokens), values and the output projection are the identity, the MLP adds nothing, and the
    head reads the first two channels of the class token."""
    model = create_model("joint_tiny", img_size=32, patch_size=8, num_frames=4, embed_dim=8, depth=1, num_heads=1,
                         num_classes=2)
    eye = torch.eye(8)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (model.blocks[0].norm1, model.blocks[0].norm2, model.norm):
            norm.weight.fill_(1.0)
        model.patch_embed_3d.proj.weight[0, 0] = 1.0  # red, normalised to [-1, 1]
        model.patch_embed_3d.proj.weight[1, 2] = 1.0  # blue
        model.blocks[0].attn.qkv.weight[16:] = eye  # values; queries and keys stay zero
        model.blocks[0].attn.proj.weight.copy_(eye)
        model.pre_logits.fc.weight.copy_(eye)
        model.head.weight.copy_(eye[:2])
    return model.eval()


def red_then_blue(path: Path, seconds: int = 4, fps: int = 30) -> Path:
    """A 32 x 32 video: red for the first half, blue for the second."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "4", "preset": "veryfast"})
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for frame in range(seconds * fps):
            image = np.zeros((32, 32, 3), np.uint8)
            image[..., 0 if frame < seconds * fps // 2 else 2] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("timeline")
    model = colour_model()
    info = WeightsInfo(source="test", architecture=model.architecture,
                       input=InputSpec(num_frames=4, crop_size=32, class_names=NAMES))
    return red_then_blue(root / "red_then_blue.mp4"), save_model(model, root / "colour", info)[0]


def test_windows_start_every_stride_and_lie_in_the_video():
    assert sliding_windows(4.0, 1.0, 0.5) == [(k * 0.5, k * 0.5 + 1.0) for k in range(7)]
    assert sliding_windows(4.2, 1.0, 1.0) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0)]
    assert sliding_windows(0.3, 1.0, 0.5) == [(0.0, 1.0)]
    with pytest.raises(ValueError, match="window and stride must be finite and > 0 seconds"):
        sliding_windows(4.0, 1.0, 0.0)


def test_the_timeline_changes_class_in_the_window_after_the_change(files):
    video, weights = files
    windows = list(predict_timeline([video], weights, window=1.0, stride=0.5, top_k=1, device="cpu",
                                    precision="fp32"))
    assert [(window.start, window.end) for window in windows] == sliding_windows(4.0, 1.0, 0.5)
    for window in windows:
        (name, score), = window.top[""]
        if window.end <= 2.0:
            assert name == "red" and score > 0.8, window
        elif window.start >= 2.0:
            assert name == "blue" and score > 0.8, window  # the window [1.5, 2.5] holds both colours


def test_predict_window_prints_csv_rows_or_json_objects(files, capsys):
    video, weights = files
    args = ["predict", str(video), "--checkpoint", str(weights), "--window", "2", "--top-k", "2", "--device", "cpu",
            "--precision", "fp32"]
    assert main(args) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(row["start"], row["end"], row["rank"], row["class"]) for row in rows] == [
        ("0", "2", "1", "red"), ("0", "2", "2", "blue"), ("2", "4", "1", "blue"), ("2", "4", "2", "red")]
    assert main([*args, "--json"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(item["start"], item["end"], item["top"][""][0][0]) for item in objects] == [(0, 2, "red"),
                                                                                       (2, 4, "blue")]
    assert objects[0]["video"] == str(video)


def test_stride_without_window_is_refused(files, capsys):
    video, weights = files
    assert main(["predict", str(video), "--checkpoint", str(weights), "--stride", "1"]) == 2
    assert "--stride needs --window" in capsys.readouterr().err


def test_the_timeline_is_decoded_a_batch_of_windows_at_a_time(files, monkeypatch):
    from motionformer import inference

    video, weights = files
    read = []
    original = inference.window_views
    monkeypatch.setattr(inference, "window_views", lambda *args, **kwargs: read.append(args[2:4]) or
                        original(*args, **kwargs))
    windows = predict_timeline([video], weights, window=0.5, stride=0.25, batch_size=2, device="cpu")
    first = next(windows)
    assert (first.start, first.end) == (0.0, 0.5) and read == [(0.0, 0.5), (0.25, 0.75)]  # 2 of 15 windows read
    assert len(list(windows)) == 14 and len(read) == 15
