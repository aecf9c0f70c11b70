"""Feature extraction: the features equal the model's own forward on the same views, folders of shards resume
after a SIGKILL with identical files, and unreadable videos are listed and skipped."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from motionformer.cli import main
from motionformer.data.build import build_sampler
from motionformer.data.decoding import open_video
from motionformer.data.transforms import test_transform
from motionformer.extraction import ExtractOptions, extract, extract_dataset, video_items
from motionformer.inference import sliding_windows, video_views, window_views
from motionformer.models import InputSpec, WeightsInfo, create_model, save_model

from .data.conftest import make_video

TINY = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2)
SPEC = InputSpec(num_frames=4, crop_size=32, sampling_rate=2, num_clips=2, num_crops=3)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny untrained model whose test views are 2 clips x 3 crops."""
    torch.manual_seed(0)
    model = create_model("mformer_tiny", num_classes=10, **TINY)
    info = WeightsInfo(source="test", architecture=model.architecture, input=SPEC)
    return save_model(model, tmp_path_factory.mktemp("weights") / "tiny", info)[0]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    """Four short videos of different lengths (40 x 32 pixels at 30 fps)."""
    root = tmp_path_factory.mktemp("videos")
    return [make_video(root / f"v{i}.mp4", 20 + 10 * i, size=(40, 32)) for i in range(4)]


def _model(weights: Path):
    from motionformer.models import from_checkpoint

    return from_checkpoint(weights).eval()


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_features_equal_the_models_forward_on_the_same_views(weights, videos):
    model, video = _model(weights), videos[1]
    views = video_views(video, SPEC).flatten(0, 1)  # (clips * crops, 3, T, H, W)
    with torch.no_grad():
        tokens = model.forward_features(views)
        pre_logits = model.forward_head(tokens, pre_logits=True)
        first_block = model.blocks[0](*model.embed(views))
        forward_path = model.forward_head(model.forward_class_token(views), pre_logits=True)  # what forward reads
    each = extract(video, weights, keep_views=True, precision="fp32", device="cpu")
    torch.testing.assert_close(each.features, pre_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(each.features, forward_path, rtol=0, atol=0)
    assert each.times is None and each.features.shape == (6, 32)
    averaged = extract(video, weights, precision="fp32", device="cpu", batch_size=1).features
    torch.testing.assert_close(averaged, pre_logits.mean(0, keepdim=True), rtol=0, atol=1e-6)
    cls = extract(video, weights, feature="cls", keep_views=True, precision="fp32", device="cpu").features
    torch.testing.assert_close(cls, tokens[:, 0], rtol=0, atol=1e-6)
    block = extract(video, weights, feature="tokens", block=0, keep_views=True, precision="fp32", device="cpu")
    assert block.features.shape == (6, 1 + 2 * 4 * 4, 32)  # class token + 2 token frames of 4 x 4 patches
    torch.testing.assert_close(block.features, first_block, rtol=0, atol=1e-6)
    first_cls = extract(video, weights, feature="cls", block=0, keep_views=True, precision="fp32", device="cpu")
    torch.testing.assert_close(first_cls.features, first_block[:, 0], rtol=0, atol=1e-6)


def test_a_model_object_takes_its_input_from_spec_or_its_weights_record(weights, videos):
    model = create_model("mformer_tiny", num_classes=10, **TINY)
    model.load_state_dict(_model(weights).state_dict())
    with pytest.raises(ValueError, match="needs spec=InputSpec"):
        extract(videos[0], model, device="cpu")
    expected = extract(videos[0], weights, device="cpu", precision="fp32").features
    torch.testing.assert_close(extract(videos[0], model, spec=SPEC, device="cpu", precision="fp32").features, expected,
                               rtol=0, atol=0)
    torch.testing.assert_close(extract(videos[0], _model(weights), device="cpu", precision="fp32").features, expected,
                               rtol=0, atol=0)


def test_windows_cover_the_video_and_equal_the_forward_on_each_window(weights, videos):
    model, video = _model(weights), videos[3]  # 50 frames: 1.667 s
    result = extract(video, weights, window=0.5, stride=0.25, feature="cls", precision="fp32", device="cpu")
    expected_times = sliding_windows(50 / 30, 0.5, 0.25)
    assert len(expected_times) == 5  # starts 0, 0.25, ... 1.0; 1.25 + 0.5 is past the end
    torch.testing.assert_close(result.times, torch.tensor(expected_times, dtype=torch.float64))
    with open_video(video) as reader, torch.no_grad():
        views = torch.stack([window_views(reader, SPEC, start, end)[0] for start, end in expected_times])
        expected = model.forward_features(views)[:, 0]
    torch.testing.assert_close(result.features, expected, rtol=0, atol=1e-6)


def test_options_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="feature='logits' is not one of pre_logits, cls, tokens"):
        ExtractOptions(feature="logits")
    with pytest.raises(ValueError, match="block=0 needs feature=cls or tokens"):
        ExtractOptions(block=0)
    with pytest.raises(ValueError, match=r"stride=1\.0 needs a window"):
        ExtractOptions(stride=1.0)
    with pytest.raises(ValueError, match="window and stride must be finite and > 0"):
        ExtractOptions(window=-1.0)


@pytest.mark.parametrize("format", ["safetensors", "npy"])
def test_a_folder_of_shards_holds_each_videos_features_and_lists_the_broken_one(weights, videos, tmp_path,
                                                                                  format):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    inputs = [videos[0], broken, videos[1], tmp_path / "missing.mp4", videos[2]]
    summary = extract_dataset(video_items(inputs), weights, tmp_path / "out", keep_views=True, device="cpu",
                              batch_size=4, shard_mb=6 * 32 * 4 * 1.5 / 2**20, format=format, progress=False)
    # shards are planned at 2 items each (6 rows of 32 floats an item); the failures show on reading
    assert (summary.videos, summary.failed, summary.rows, summary.shards) == (3, 2, 18, 3)
    failures = _read_csv(tmp_path / "out" / "failures.csv")
    assert [(row["video"], row["shard"]) for row in failures] == [(str(broken), "0"), (str(tmp_path / "missing.mp4"),
                                                                                       "1")]
    assert failures[1]["reason"] == "file not found" and failures[0]["reason"]
    index = _read_csv(tmp_path / "out" / "index.csv")
    assert len(index) == 18
    for video in videos[:3]:
        rows = [row for row in index if row["video"] == str(video)]
        assert [row["view"] for row in rows] == [str(view) for view in range(6)]
        assert len({row["shard"] for row in rows}) == 1 and rows[0]["start"] == ""
        path = tmp_path / "out" / rows[0]["shard"]
        shard = load_file(path)["features"] if format == "safetensors" else torch.from_numpy(np.load(path))
        stored = shard[[int(row["row"]) for row in rows]]
        torch.testing.assert_close(stored, extract(video, weights, keep_views=True, device="cpu").features,
                                   rtol=0, atol=0)


def test_items_of_paths_and_of_an_annotation_file_without_repeats(videos, tmp_path):
    for name in ("jump", "run"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.mp4").symlink_to(videos[0])
    items = video_items([videos[1], videos[2], videos[1], tmp_path / "run" / "run.mp4"], tmp_path, format="folder")
    assert [item.key for item in items] == [(str(videos[1]), ""), (str(videos[2]), ""),
                                            (str(tmp_path / "run" / "run.mp4"), ""),
                                            (str(tmp_path / "jump" / "jump.mp4"), "")]


def _run_extract(*args: str) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "motionformer", "extract", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment)


def _committed(folder: Path) -> int:
    try:
        return json.loads((folder / "extract.json").read_text())["shards"]
    except (OSError, ValueError, KeyError):
        return 0


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.slow
def test_a_killed_extraction_resumes_without_repeating_videos_and_writes_the_same_files(weights, tmp_path):
    sources = [make_video(tmp_path / f"clip{i:02d}.mp4", 24 + i % 5, size=(40, 32)) for i in range(40)]
    broken = tmp_path / "clip_broken.mp4"
    broken.write_bytes(b"\x00" * 500)
    inputs = [str(path) for path in sources[:20]] + [str(broken)] + [str(path) for path in sources[20:]]
    common = ["--checkpoint", str(weights), "--keep-views", "--shard-mb", "0.0001", "--workers", "1",
              "--device", "cpu", "--precision", "fp32", "--no-progress"]
    whole = _run_extract(*inputs, "--out", str(tmp_path / "whole"), *common)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    killed_folder = tmp_path / "killed"
    killed = _run_extract(*inputs, "--out", str(killed_folder), *common)
    while _committed(killed_folder) < 5 and killed.poll() is None:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL, "the extraction ended before it could be killed"
    done = _committed(killed_folder)
    assert 5 <= done < 41
    first_shard = killed_folder / "features-00000.safetensors"
    written = first_shard.stat().st_mtime_ns
    resumed = _run_extract(*inputs, "--out", str(killed_folder), *common)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert f"{done} done before" in resumed.stderr.read()  # one video a shard: the committed ones are skipped
    assert first_shard.stat().st_mtime_ns == written
    assert _files(killed_folder) == _files(tmp_path / "whole")
    failures = _read_csv(killed_folder / "failures.csv")
    assert [row["video"] for row in failures] == [str(broken)]


def test_the_command_refuses_to_resume_with_other_settings(weights, videos, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["extract", str(videos[0]), "--checkpoint", str(weights), "--out", str(out), "--workers", "0",
            "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    assert main([*args, "--feature", "cls"]) == 2
    assert "other settings (options: " in capsys.readouterr().err


def test_an_epic_annotations_segments_give_their_own_clips_and_windows(weights, tmp_path):
    (tmp_path / "P01" / "videos").mkdir(parents=True)
    video = make_video(tmp_path / "P01" / "videos" / "P01_01.MP4", 240, size=(40, 32), fps=60)  # Epic's 60 fps
    annotations = tmp_path / "epic.csv"
    annotations.write_text("participant_id,video_id,start_timestamp,stop_timestamp,verb_class,noun_class\n"
                           "P01,P01_01,00:00:00.50,00:00:01.50,0,0\nP01,P01_01,00:00:02.00,00:00:03.00,1,1\n")
    items = video_items(annotations=annotations, root=tmp_path, format="epic")
    assert [item.part for item in items] == ["30-90", "120-180"]  # frame numbers at 60 fps
    summary = extract_dataset(items, weights, tmp_path / "views", keep_views=True, device="cpu", progress=False)
    model = _model(weights)
    sampler = build_sampler("clips", training=False, num_frames=4, sampling_rate=2, num_clips=2)
    transform = test_transform(crop_size=32, num_crops=3)
    shard = load_file(tmp_path / "views" / "features-00000.safetensors")["features"]
    assert summary.rows == 12 and shard.shape == (12, 32)
    for number, item in enumerate(items):
        with open_video(video) as reader, torch.no_grad():
            views = torch.cat([transform(sampler(reader, segment=item.segment, clip_index=k)) for k in range(2)])
            expected = model.forward_head(model.forward_features(views), pre_logits=True)
        torch.testing.assert_close(shard[6 * number:6 * number + 6], expected, rtol=0, atol=1e-6)
    extract_dataset(items, weights, tmp_path / "windows", window=0.5, device="cpu", progress=False)
    index = _read_csv(tmp_path / "windows" / "index.csv")
    assert [(row["part"], row["start"], row["end"]) for row in index] == [
        ("30-90", "0.5", "1.0"), ("30-90", "1.0", "1.5"), ("120-180", "2.0", "2.5"), ("120-180", "2.5", "3.0")]
