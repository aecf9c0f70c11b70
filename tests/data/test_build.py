"""build_dataset on the synthetic motion data: the whole real pipeline, files to batches."""

from __future__ import annotations

import pytest
import torch

from motionformer.data.build import build_dataset
from motionformer.data.loader import build_loader, set_epoch
from motionformer.data.sampling import SegmentSampler, UniformClipSampler
from motionformer.data.synthetic import generate


def test_synthetic_data_through_the_pipeline(tmp_path):
    generate(tmp_path, num_videos=20, size=32, frames=8, workers=1, val_fraction=0.5)
    train = build_dataset(tmp_path / "train.csv", training=True, num_frames=4, sampling_rate=1, crop_size=32,
                          scale_range=(32, 40), flip=False)
    loader = build_loader(train, batch_size=5, training=True, pin_memory=False)
    set_epoch(loader, 0)
    batch = next(iter(loader))
    assert batch["video"].shape == (5, 3, 4, 32, 32) and batch["label"].dtype == torch.int64

    test = build_dataset(tmp_path / "val.csv", training=False, num_frames=4, sampling_rate=1, crop_size=32,
                         num_clips=2, num_crops=1)
    assert isinstance(test.sampler, UniformClipSampler) and len(test) == 2 * 10
    assert test[0]["video"].shape == (1, 3, 4, 32, 32)


def test_ssv2_recipe_uses_segments_and_no_flip(tmp_path):
    generate(tmp_path, num_videos=10, size=32, frames=8, workers=1)
    dataset = build_dataset(tmp_path / "train.csv", training=True, recipe="ssv2", num_frames=4, crop_size=32,
                            scale_range=(32, 36))
    assert isinstance(dataset.sampler, SegmentSampler)
    steps = [type(step).__name__ for step in dataset.transform.augment.transforms]
    assert "RandAugment" in steps and "RandomHorizontalFlip" not in steps  # left/right labels: no flip
    kinetics = build_dataset(tmp_path / "train.csv", training=True, num_frames=4, crop_size=32, scale_range=(32, 36))
    assert "RandomHorizontalFlip" in [type(step).__name__ for step in kinetics.transform.augment.transforms]


def test_sampling_and_channel_order_are_plain_keywords(tmp_path):
    generate(tmp_path, num_videos=20, size=32, frames=8, workers=1, val_fraction=0.5)
    segments = build_dataset(tmp_path / "val.csv", training=False, sampling="segments", channel_order="bgr",
                             num_frames=4, crop_size=32, num_crops=1)
    assert isinstance(segments.sampler, SegmentSampler) and len(segments) == 10  # one clip for each video
    assert segments.transform.channel_order == "bgr"
    rgb = build_dataset(tmp_path / "val.csv", training=False, sampling="segments", num_frames=4, crop_size=32,
                        num_crops=1)
    torch.testing.assert_close(segments[0]["video"], rgb[0]["video"].flip(1), rtol=0, atol=0)  # mean = std = 0.5
    with pytest.raises(ValueError, match="sampling must be one of clips, segments, got 'frames'"):
        build_dataset(tmp_path / "val.csv", training=False, sampling="frames")
    with pytest.raises(ValueError, match="channel_order"):
        build_dataset(tmp_path / "val.csv", training=True, channel_order="rbg")
