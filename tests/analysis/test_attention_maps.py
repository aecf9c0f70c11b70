"""Attention maps of a query point (Fig. 4): maps, pictures, errors, the command, and the page in Chromium."""

from __future__ import annotations

import dataclasses
import importlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from motionformer.analysis import (
    animation_gif,
    attention_maps,
    colour_scale,
    grid_png,
    html_page,
    overlay_frames,
    parse_point,
    save_attention_pictures,
)
from motionformer.cli import build_parser, main
from motionformer.data.datasets import VideoClipDataset, VideoEntry
from motionformer.data.sampling import UniformClipSampler
from motionformer.data.synthetic import generate
from motionformer.data.transforms import test_transform
from motionformer.engine.build import model_from_weights
from motionformer.inference import predict
from motionformer.models.registry import create_model
from motionformer.models.weights import WeightsInfo, save_model

# 2 blocks of 2 heads on 32-pixel, 4-frame clips: 8-pixel patches, tubelets of 2 frames -> a 2 x 4 x 4 token grid
TINY = {"num_classes": 10, "img_size": 32, "patch_size": 8, "num_frames": 4, "embed_dim": 32, "depth": 2,
        "num_heads": 2}
SCALE = 6  # 32-pixel frames are drawn 6x (>= 192 pixels)
PANEL = (32 * SCALE, 32 * SCALE + 16)  # (width, height) of one panel: the frame under a 16-pixel caption
SCALE_HEIGHT = 28  # the colour scale under the grid and under every GIF frame


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A synthetic video and untrained tiny checkpoints: trajectory attention on 32 and 24 pixels, joint attention."""
    root = tmp_path_factory.mktemp("attention")
    generate(root / "data", num_videos=10, size=32, frames=8, plain=True, workers=1)
    torch.manual_seed(0)
    trajectory, _ = save_model(create_model("mformer_tiny", **TINY), root / "trajectory")
    smaller, _ = save_model(create_model("mformer_tiny", **{**TINY, "img_size": 24}), root / "trajectory24")
    joint, _ = save_model(create_model("joint_tiny", **TINY), root / "joint")
    return {"video": next(iter(sorted((root / "data" / "videos").rglob("*.mp4")))), "checkpoint": trajectory,
            "checkpoint24": smaller, "joint": joint}


@pytest.fixture(scope="module")
def result(files):
    return attention_maps(files["video"], files["checkpoint"], (9, 17), frame=3, layer=-1, device="cpu")


def test_maps_are_a_softmax_over_each_frames_tokens_per_head(result):
    assert result.maps.shape == (2, 2, 4, 4)  # (heads, token frames, rows, columns)
    torch.testing.assert_close(result.maps.sum((-2, -1)), torch.ones(2, 2))
    assert (result.maps >= 0).all()
    torch.testing.assert_close(result.heatmap.sum((-2, -1)), torch.ones(2))
    assert result.token == (1, 2, 1) and result.layer == 1 and result.head is None  # frame 3 // 2, 17 // 8, 9 // 8
    assert len(result.prediction[""]) == 5


@pytest.mark.parametrize(("checkpoint", "crop"), [("checkpoint", 32), ("checkpoint24", 24)])
def test_frames_are_the_models_centred_test_view(files, checkpoint, crop):
    """The frames drawn are the model's input (as ``predict`` reads it), also where the video is resized."""
    drawn = attention_maps(files["video"], files[checkpoint], (0, 0), device="cpu")
    dataset = VideoClipDataset([VideoEntry(path=files["video"], label=0)], UniformClipSampler(4, 4, 1),
                               test_transform(crop_size=crop, num_crops=1), training=False)
    model_input = dataset[0]["video"][0]  # (3, T, H, W), normalised with mean = std = 0.5
    assert drawn.frames.shape == (4, crop, crop, 3) and drawn.frames.dtype == torch.uint8
    shown = drawn.frames.permute(3, 0, 1, 2).float() / 255 * 2 - 1  # the same normalisation
    torch.testing.assert_close(shown, model_input, atol=1 / 255 + 1e-6, rtol=0)  # drawn: rounded to uint8


def test_bgr_weights_see_swapped_channels_and_the_frames_are_drawn_in_rgb(tmp_path):
    generate(tmp_path / "data", num_videos=10, size=32, frames=8, workers=1)  # coloured objects
    video = next(iter(sorted((tmp_path / "data" / "videos").rglob("*.mp4"))))
    torch.manual_seed(0)
    model = create_model("mformer_tiny", **TINY)
    rgb, _ = save_model(model, tmp_path / "rgb")
    spec = dataclasses.replace(model_from_weights(rgb)[2], channel_order="bgr")
    info = WeightsInfo(source="test", architecture=model.architecture, input=spec)
    bgr, _ = save_model(model, tmp_path / "bgr", info)
    as_rgb = attention_maps(video, rgb, (9, 17), frame=3, device="cpu")
    as_bgr = attention_maps(video, bgr, (9, 17), frame=3, device="cpu")
    assert torch.equal(as_bgr.frames, as_rgb.frames)
    dataset = VideoClipDataset([VideoEntry(path=video, label=0)], UniformClipSampler(4, 4, 1),
                               test_transform(crop_size=32, num_crops=1), training=False)
    swapped = dataset[0]["video"].flip(1)  # (1, 3, T, H, W) with the channels reversed
    with torch.no_grad():
        expected = model.eval().trajectory_attention_maps(swapped, as_bgr.token, layers=[1])[1][0]
    torch.testing.assert_close(as_bgr.maps, expected)
    assert not torch.allclose(as_bgr.maps, as_rgb.maps)


def test_one_head_and_the_default_middle_frame(files):
    one = attention_maps(files["video"], files["checkpoint"], (0, 31), head=1, layer=0, device="cpu")
    assert one.frame == 2 and one.token == (1, 3, 0) and one.head == 1
    torch.testing.assert_close(one.heatmap, one.maps[1])


def test_grid_and_gif_sizes(result):
    grid = Image.open(io.BytesIO(grid_png(result)))
    # 4 columns, 1 row, the colour scale under them
    assert grid.format == "PNG" and grid.size == (4 * PANEL[0] + 5 * 4, 20 + PANEL[1] + 2 * 4 + SCALE_HEIGHT)
    gif = Image.open(io.BytesIO(animation_gif(result)))
    assert gif.format == "GIF" and gif.size == (PANEL[0], PANEL[1] + SCALE_HEIGHT)
    assert gif.n_frames == 4 and gif.info["loop"] == 0


def test_colour_scale_runs_from_zero_to_the_largest_weight(result):
    strip = colour_scale(200, 0.25)
    assert strip.size == (200, SCALE_HEIGHT)
    assert strip.getpixel((4, 6)) == (0, 0, 4) and strip.getpixel((195, 6)) == (252, 255, 164)  # the ramp's ends
    grid = Image.open(io.BytesIO(grid_png(result))).convert("RGB")
    assert grid.getpixel((4, grid.height - SCALE_HEIGHT + 6)) == (0, 0, 4)
    assert grid.getpixel((grid.width - 5, grid.height - SCALE_HEIGHT + 6)) == (252, 255, 164)
    labelled = np.asarray(strip)[14:]  # the labels differ with the peak they name
    assert not np.array_equal(labelled, np.asarray(colour_scale(200, 0.5))[14:])


def test_prediction_is_the_predict_commands_for_the_view_and_the_checkpoint_is_read_once(files, monkeypatch):
    module = importlib.import_module("motionformer.analysis.attention_maps")
    reads = []
    original = module.model_from_weights
    monkeypatch.setattr(module, "model_from_weights", lambda path: reads.append(path) or original(path))
    drawn = attention_maps(files["video"], files["checkpoint"], (9, 17), device="cpu")
    expected = predict([files["video"]], files["checkpoint"], top_k=5, device="cpu", num_clips=1, num_crops=1)[0].top
    assert reads == [files["checkpoint"]]
    assert [name for name, _ in drawn.prediction[""]] == [name for name, _ in expected[""]]
    torch.testing.assert_close([score for _, score in drawn.prediction[""]], [score for _, score in expected[""]])


def test_query_is_marked_on_its_frame_only(result):
    panels = overlay_frames(result)
    x, y = result.point
    centre = (int((x + 0.5) * SCALE), int((y + 0.5) * SCALE) + 16)
    assert panels[3].getpixel(centre) == (0, 255, 255)
    assert all(panels[i].getpixel(centre) != (0, 255, 255) for i in (0, 1, 2))


def test_page_is_self_contained(result):
    page = html_page(result, b"png", b"gif")
    assert page.count('src="data:image/') == 2 and not re.findall(r'(?:src|href)="(?!data:)', page)
    assert "http" not in page and "<link" not in page
    assert all(f"<li>{name} " in page for name, _ in result.prediction[""])
    assert "layer</th><td>1" in page and "mean of 2 heads" in page


def test_save_writes_three_files_atomically(result, tmp_path):
    paths = save_attention_pictures(result, tmp_path / "out")
    assert [p.suffix for p in paths] == [".png", ".gif", ".html"] and all(p.stat().st_size > 0 for p in paths)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files


@pytest.mark.parametrize(("point", "options", "message"), [
    ((32, 0), {}, "point (32, 0) is outside the 32x32 input crop"),
    ((0, -1), {}, "point (0, -1) is outside"),
    ((0, 0), {"frame": 4}, "frame 4 is outside the clip: the model reads 4 frames, 0..3"),
    ((0, 0), {"layer": 2}, "layer 2 is out of range: the model has 2 blocks"),
    ((0, 0), {"layer": -3}, "layer -3 is out of range"),
    ((0, 0), {"head": 2}, "head 2 is out of range: layer 1 has 2 heads, 0..1"),
])
def test_errors_name_the_bad_value(files, point, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        attention_maps(files["video"], files["checkpoint"], point, device="cpu", **options)


def test_errors_for_other_models_and_inputs(files, tmp_path):
    with pytest.raises(ValueError, match="need a trajectory-attention model, this one uses joint attention"):
        attention_maps(files["video"], files["joint"], (0, 0), device="cpu")
    with pytest.raises(FileNotFoundError, match="video not found"):
        attention_maps(tmp_path / "nope.mp4", files["checkpoint"], (0, 0), device="cpu")
    assert parse_point("3, 4") == (3, 4, None) and parse_point("3,4,1") == (3, 4, 1)
    for text in ("12", "1,2,3,4", "a,b"):
        with pytest.raises(ValueError, match=re.escape(f"got {text!r}")):
            parse_point(text)


def test_command(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["visualize", "--help"])
    assert done.value.code == 0 and "X,Y[,T]" in capsys.readouterr().out
    common = [str(files["video"]), "--checkpoint", str(files["checkpoint"]), "--device", "cpu"]
    assert main(["visualize", *common, "--point", "9,17,3", "--layer", "0", "--head", "1", "--out",
                 str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 3 and all(Path(path).exists() for path in printed)
    assert main(["visualize", *common, "--point", "40,2"]) == 2
    assert "point (40, 2) is outside the 32x32 input crop" in capsys.readouterr().err


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


def test_page_renders_in_chromium(result, tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("no chromium binary (Debian: apt-get install chromium)")
    page = save_attention_pictures(result, tmp_path)[2]
    dom = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stdout[:2000]
    assert 'data-images-total="2"' in body.group(0) and 'data-images-rendered="2"' in body.group(0), body.group(0)

    screenshot = tmp_path / "page.png"
    shot = _chromium(f"--screenshot={screenshot}", "--window-size=900,1200", page.as_uri(),
                     profile=tmp_path / "profile")
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape[:2] == (1200, 900)
    dark = (pixels.max(-1) < 64).mean()  # the pictures' dark background and black frames
    white = (pixels.min(-1) > 240).mean()  # the page
    assert dark > 0.05 and white > 0.2, (dark, white)
