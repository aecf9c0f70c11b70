"""``build_dataset``: the one place where dataset options become a ``VideoClipDataset``."""

from __future__ import annotations

import os

from motionformer.data.datasets import VideoClipDataset, read_annotations
from motionformer.data.sampling import ClipSampler, RandomClipSampler, SegmentSampler, UniformClipSampler
from motionformer.data.transforms import RECIPES, recipe_transforms


def build_dataset(
    annotations: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    training: bool,
    format: str = "auto",
    recipe: str | None = None,
    num_frames: int = 16,
    sampling_rate: int = 4,
    crop_size: int = 224,
    num_clips: int = 10,
    num_crops: int = 3,
    seed: int = 0,
    frames: bool = False,
    max_retries: int = 10,
    **transform_overrides: object,
) -> VideoClipDataset:
    """A clip dataset for an annotation file with the paper's recipe for its dataset.

    ``recipe`` (``kinetics``, ``ssv2``, ``epic``) picks the augmentation defaults of the recipe table; by
    default it follows the annotation format, and custom data (``csv``, ``folder``) uses the Kinetics recipe.
    SSv2 samples one frame per segment; the others take ``num_frames`` frames ``sampling_rate`` apart, a
    random clip in training and ``num_clips`` uniformly spaced clips x ``num_crops`` crops in testing.
    ``transform_overrides`` go to ``train_transform`` / ``test_transform``.
    """
    loaded = read_annotations(annotations, root, format, frames=frames)
    recipe = recipe or (loaded.format if loaded.format in RECIPES else "kinetics")
    sampler: ClipSampler
    if recipe == "ssv2":
        sampler = SegmentSampler(num_frames, training=training)
    elif training:
        sampler = RandomClipSampler(num_frames, sampling_rate)
    else:
        sampler = UniformClipSampler(num_frames, sampling_rate, num_clips)
    overrides = {"crop_size": crop_size, **transform_overrides}
    if not training:
        overrides["num_crops"] = num_crops
    transform = recipe_transforms(recipe, training, **overrides)
    return VideoClipDataset(loaded.entries, sampler, transform, training=training, seed=seed,
                            max_retries=max_retries, class_names=loaded.class_names)
