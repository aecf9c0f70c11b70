"""``build_dataset``: the one place where dataset options become a ``VideoClipDataset``."""

from __future__ import annotations

import os

from motionformer.data.datasets import VideoClipDataset, read_annotations
from motionformer.data.sampling import ClipSampler, RandomClipSampler, SegmentSampler, UniformClipSampler
from motionformer.data.transforms import RECIPES, recipe_transforms
from motionformer.models.spec import SAMPLINGS


def build_sampler(sampling: str, *, training: bool, num_frames: int = 16, sampling_rate: int = 4,
                  num_clips: int = 10) -> ClipSampler:
    """The sampler of ``sampling``: ``"clips"`` (Kinetics and Epic-Kitchens style: a random clip in training,
    ``num_clips`` clips at test) or ``"segments"`` (SSv2: one frame from each of ``num_frames`` segments)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if sampling == "segments":
        return SegmentSampler(num_frames, training=training)
    if training:
        return RandomClipSampler(num_frames, sampling_rate)
    return UniformClipSampler(num_frames, sampling_rate, num_clips)


def build_dataset(
    annotations: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    training: bool,
    format: str = "auto",
    recipe: str | None = None,
    sampling: str | None = None,
    channel_order: str = "rgb",
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
    ``sampling`` (default: ``"segments"`` for the SSv2 recipe, else ``"clips"``) and ``channel_order``
    (``"rgb"`` or ``"bgr"``, what the weights expect) follow the released models' protocol (see
    ``motionformer.data.sampling`` and ``motionformer.data.transforms``); test items are ``num_clips`` clips
    (1 for segments) x ``num_crops`` crops. ``transform_overrides`` go to ``train_transform`` /
    ``test_transform``.
    """
    loaded = read_annotations(annotations, root, format, frames=frames)
    recipe = recipe or (loaded.format if loaded.format in RECIPES else "kinetics")
    sampling = sampling or ("segments" if recipe == "ssv2" else "clips")
    sampler = build_sampler(sampling, training=training, num_frames=num_frames, sampling_rate=sampling_rate,
                            num_clips=num_clips)
    overrides = {"crop_size": crop_size, "channel_order": channel_order, **transform_overrides}
    if not training:
        overrides["num_crops"] = num_crops
    transform = recipe_transforms(recipe, training, **overrides)
    return VideoClipDataset(loaded.entries, sampler, transform, training=training, seed=seed,
                            max_retries=max_retries, class_names=loaded.class_names)
