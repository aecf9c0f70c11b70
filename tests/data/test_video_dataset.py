"""VideoClipDataset: item shapes, reproducibility from (seed, epoch, index), windows, unreadable videos."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch

from motionformer.data.datasets.entry import VideoEntry
from motionformer.data.datasets.video import VideoClipDataset
from motionformer.data.sampling import RandomClipSampler, UniformClipSampler
from motionformer.data.transforms import test_transform, train_transform
from tests.data.conftest import frame_indices, make_video

FPS = 30
NUM_FRAMES = 4


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three readable 16-frame 40x32 videos, a missing path and a corrupt file."""
    folder = tmp_path_factory.mktemp("clips")
    good = [make_video(folder / f"good{k}.mp4", 16, size=(40, 32), gop=8) for k in range(3)]
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(bytes(range(256)) * 8)
    return {"good": good, "missing": folder / "missing.mp4", "corrupt": corrupt}


def _train_set(paths, **kwargs):
    entries = [VideoEntry(path, label=k) for k, path in enumerate(paths)]
    return VideoClipDataset(entries, RandomClipSampler(NUM_FRAMES), train_transform(16, scale_range=(16, 24)),
                            training=True, **kwargs)


def _raw(frames):
    """uint8 (T, H, W, 3) -> float (3, T, H, W) unchanged, so tests can read the frame indices back."""
    return frames.permute(3, 0, 1, 2).float()


def _indices(video):
    return frame_indices(video.permute(1, 2, 3, 0).to(torch.uint8))


def test_train_item(videos):
    dataset = _train_set(videos["good"])
    item = dataset[1]
    assert len(dataset) == 3
    assert item["video"].shape == (3, NUM_FRAMES, 16, 16) and item["video"].dtype == torch.float32
    assert (item["label"], item["index"], item["skipped"]) == (1, 1, [])


def test_test_items_views_and_crops(videos):
    entries = [VideoEntry(path, label=k) for k, path in enumerate(videos["good"])]
    dataset = VideoClipDataset(entries, UniformClipSampler(NUM_FRAMES, num_clips=2), test_transform(16, num_crops=3),
                               training=False)
    assert len(dataset) == 6
    item = dataset[3]
    assert item["video"].shape == (3, 3, NUM_FRAMES, 16, 16)
    assert (item["entry_index"], item["view"], item["label"], item["index"]) == (1, 1, 1, 3)


def test_same_seed_and_epoch_same_item(videos):
    first, second = _train_set(videos["good"], seed=3), _train_set(videos["good"], seed=3)
    first.set_epoch(2)
    second[0]  # what was loaded before does not matter
    assert torch.equal(first[1]["video"], second[(2, 1)]["video"])
    assert not torch.equal(first[1]["video"], second[(3, 1)]["video"])
    assert not torch.equal(first[1]["video"], _train_set(videos["good"], seed=4)[(2, 1)]["video"])


def test_clips_lie_inside_the_window(tmp_path):
    """Window 12-22 at 30 fps: the segment of frame numbers 12 to 22, n = 10; a 4-frame clip starts at index
    1 + uniform(0, 6), indices are clamped to n - 1 = 9, and frame number 12 + index is position 11 + index."""
    path = make_video(tmp_path / "long.mp4", 30, size=(32, 32), gop=10)
    entries = [VideoEntry(path, label={"verb": 1, "noun": 2}, window=(12 / FPS, 22 / FPS))]
    dataset = VideoClipDataset(entries, RandomClipSampler(NUM_FRAMES), _raw, training=True)
    starts = set()
    for epoch in range(8):
        indices = _indices(dataset[(epoch, 0)]["video"])
        assert all(0 <= b - a <= 1 for a, b in itertools.pairwise(indices))
        assert 12 <= indices[0] <= 18 and indices[-1] <= 20
        starts.add(indices[0])
    assert len(starts) > 1
    assert dataset[0]["label"] == {"verb": 1, "noun": 2}


def test_whole_video_without_window(videos):
    entries = [VideoEntry(videos["good"][0], label=0)]
    dataset = VideoClipDataset(entries, UniformClipSampler(NUM_FRAMES, num_clips=2), _raw, training=False)
    assert _indices(dataset[0]["video"]) == [0, 1, 2, 3]
    assert _indices(dataset[1]["video"]) == [6, 7, 8, 9]  # Δ = 16 - 4 frames, clip 1 of 2 starts at Δ / 2


def test_unreadable_videos_are_substituted_and_reported(videos, caplog):
    missing, corrupt = str(videos["missing"]), str(videos["corrupt"])
    dataset = _train_set([videos["good"][0], videos["missing"], videos["corrupt"], videos["good"][1]])
    with caplog.at_level(logging.WARNING, logger="motionformer.data.datasets.video"):
        for epoch in range(2):
            items = [dataset[(epoch, index)] for index in range(len(dataset))]
            for item in items:
                assert item["video"].shape == (3, NUM_FRAMES, 16, 16) and item["label"] in (0, 3)
    assert items[0]["skipped"] == [] and items[1]["skipped"][0] == (missing, "file not found")
    assert items[2]["skipped"][0][0] == corrupt
    assert dataset.skipped.keys() == {missing, corrupt}
    warnings = [record.getMessage() for record in caplog.records]
    assert sum(missing in message for message in warnings) == 1 and sum(corrupt in message for message in warnings) == 1


def test_retries_exhausted(videos, tmp_path):
    dataset = _train_set([videos["missing"], videos["corrupt"], tmp_path / "gone.mp4"], max_retries=3)
    with pytest.raises(RuntimeError, match=r"after 4 attempts \(max_retries=3\).*missing\.mp4"):
        dataset[0]
    with pytest.raises(RuntimeError, match="after 1 attempts"):
        _train_set([videos["missing"]])[0]


def test_bad_arguments(videos):
    with pytest.raises(ValueError, match="entries is empty"):
        _train_set([])
    with pytest.raises(IndexError):
        _train_set(videos["good"])[3]
