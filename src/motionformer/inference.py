"""Inference on single videos, as a checkpoint's authors tested it: the views of a video for an ``InputSpec``
(its sampling, frames, stride, crop, channel order and test views), a batched forward, and the softmax of each
head averaged over all views. ``predict``, ``visualize`` and feature extraction share it; dataset-level testing
is ``motionformer.engine.evaluate``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from motionformer.data.build import build_sampler
from motionformer.data.decoding import VideoReader, open_video
from motionformer.data.transforms import test_transform
from motionformer.engine import distributed
from motionformer.engine.build import model_from_weights
from motionformer.engine.precision import autocast, inference_dtype
from motionformer.models.motionformer import split_heads
from motionformer.models.spec import ClassNames, InputSpec

__all__ = ["TimelineWindow", "VideoPrediction", "head_class_names", "predict", "predict_timeline", "predict_views",
           "sliding_windows", "top_classes", "video_scores", "video_views", "view_scores", "window_views"]


def video_views(video: str | os.PathLike, spec: InputSpec, *, num_clips: int | None = None,
                num_crops: int | None = None) -> Tensor:
    """Every test view of a video file or frame folder as ``spec`` says: float (clips, crops, 3, T, crop, crop).

    ``num_clips`` / ``num_crops`` replace the spec's views (segment sampling always gives one clip).
    """
    sampler = build_sampler(spec.sampling, training=False, num_frames=spec.num_frames,
                            sampling_rate=spec.sampling_rate, num_clips=num_clips or spec.num_clips)
    transform = test_transform(crop_size=spec.crop_size, num_crops=num_crops or spec.num_crops, mean=spec.mean,
                               std=spec.std, channel_order=spec.channel_order)
    with open_video(video) as reader:
        return torch.stack([transform(sampler(reader, clip_index=clip)) for clip in range(sampler.num_views)])


def sliding_windows(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """(start, end) in seconds of windows ``window`` long every ``stride`` over a video of ``duration`` seconds.

    Windows start at 0 and lie whole in the video, so a tail shorter than ``stride`` may be left out; a video
    shorter than one window gives the one window (0, window) (its last frame repeated past its end).
    """
    if not (math.isfinite(window) and math.isfinite(stride) and window > 0 and stride > 0):
        raise ValueError(f"window and stride must be finite and > 0 seconds, got window={window}, stride={stride}")
    count = max(math.floor((duration - window) / stride + 1e-6) + 1, 1)
    return [(k * stride, k * stride + window) for k in range(count)]


def window_views(video: VideoReader, spec: InputSpec, start: float, end: float, num_crops: int = 1) -> Tensor:
    """The views of the window [start, end) seconds of an open video: ``spec.num_frames`` frames evenly spaced
    from ``start`` (frame i shown at ``start + i * (end - start) / num_frames``), float (crops, 3, T, crop, crop)."""
    step = (end - start) / spec.num_frames
    frames = video.read_frames([start + i * step for i in range(spec.num_frames)])
    transform = test_transform(crop_size=spec.crop_size, num_crops=num_crops, mean=spec.mean, std=spec.std,
                               channel_order=spec.channel_order)
    return transform(frames)


@torch.no_grad()
def view_scores(model: nn.Module, video: Tensor, autocast_dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """Softmax scores of every view of a batch of items, each (crops, 3, T, H, W): {head: (B, crops, K_head)}."""
    batch, crops = video.shape[:2]
    flat = video.flatten(0, 1)  # (B * crops, 3, T, H, W)
    with autocast(video.device, autocast_dtype):
        logits = model(flat)
    heads = split_heads(logits.float(), distributed.unwrap(model).heads)
    return {name: values.softmax(-1).view(batch, crops, -1) for name, values in heads.items()}


def predict_views(model: nn.Module, video: Tensor, autocast_dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """Softmax scores of a batch of items, each (crops, 3, T, H, W), averaged over its crops: {head: (B, K_head)}."""
    return {name: values.mean(1) for name, values in view_scores(model, video, autocast_dtype).items()}


@torch.no_grad()
def video_scores(model: nn.Module, views: Tensor, *, batch_size: int = 8,
                 autocast_dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """The softmax of each head averaged over all views (clips, crops, 3, T, H, W) of one video: {head: (K_head,)}.

    Views go through ``model`` ``batch_size`` at a time, on the model's device.
    """
    device = next(model.parameters()).device
    flat = views.flatten(0, 1)  # (clips * crops, 3, T, H, W)
    sums: dict[str, Tensor] = {}
    for start in range(0, len(flat), batch_size):
        chunk = flat[start:start + batch_size].to(device)[:, None]  # (b, 1, 3, T, H, W): one crop per item
        for head, scores in predict_views(model, chunk, autocast_dtype).items():
            sums[head] = sums.get(head, 0) + scores.double().sum(0)  # on the device: no wait per chunk
    return {head: (total / len(flat)).float().cpu() for head, total in sums.items()}


def head_class_names(class_names: ClassNames, head: str) -> list[str] | None:
    """The class names of one head: ``class_names`` is a list for the one head ``""``, {head: list} for several."""
    return class_names.get(head) if isinstance(class_names, Mapping) else class_names


def top_classes(scores: Mapping[str, Tensor], class_names: ClassNames, top_k: int
                ) -> list[dict[str, list[tuple[str, float]]]]:
    """The ``top_k`` classes of each row of ``scores`` ({head: (B, K_head)}) with their names:
    [{head: [(name, score), ...]}] (the head is ``""`` for single-head models; unnamed classes by index)."""
    answers = []
    for row in range(len(next(iter(scores.values())))):
        answer = {}
        for head, values in scores.items():
            names = head_class_names(class_names, head)
            top = values[row].topk(min(top_k, values.shape[-1]))
            answer[head] = [(names[i] if names else str(i), float(score))
                            for score, i in zip(top.values, top.indices.tolist(), strict=True)]
        answers.append(answer)
    return answers


@dataclasses.dataclass(frozen=True)
class VideoPrediction:
    """One video's averaged class probabilities ``scores`` ({head: [p per class, in class order]}) and the
    ``top`` classes ({head: [(name, p), ...]}); the head is ``""`` for a single-head model."""

    video: str
    scores: dict[str, list[float]]
    top: dict[str, list[tuple[str, float]]]

    def to_json(self) -> dict[str, Any]:
        """``{"video": PATH, "scores": {HEAD: [...]}, "top": {HEAD: [[name, p], ...]}}``."""
        return {"video": self.video, "scores": self.scores,
                "top": {head: [[name, score] for name, score in ranked] for head, ranked in self.top.items()}}


def _load_for(videos: Sequence[str | os.PathLike], checkpoint: str | os.PathLike, device: str, precision: str
              ) -> tuple[nn.Module, ClassNames, InputSpec, torch.dtype | None]:
    """The checkpoint's model (eval mode, on ``device``), class names, input spec and autocast dtype, once every
    video is known to exist (FileNotFoundError naming the first missing one)."""
    for video in videos:
        if not Path(video).exists():
            raise FileNotFoundError(f"video not found: {video}")
    model, class_names, spec = model_from_weights(checkpoint)
    target = distributed.resolve_device(device)
    return model.to(target).eval(), class_names, spec, inference_dtype(precision, target)


def predict(videos: Sequence[str | os.PathLike], checkpoint: str | os.PathLike, *, top_k: int = 5,
            device: str = "auto", num_clips: int | None = None, num_crops: int | None = None,
            batch_size: int = 8, precision: str = "auto") -> list[VideoPrediction]:
    """Class probabilities of video files or frame folders by a checkpoint (a path or a model-zoo name), each
    averaged over the views the checkpoint's input spec names (``num_clips`` / ``num_crops`` replace them).
    ``precision``: ``auto``, ``fp32`` or ``bf16`` (``engine.precision.inference_dtype``).

    Raises FileNotFoundError for a missing video and ValueError naming a video that cannot be decoded.
    """
    model, class_names, spec, dtype = _load_for(videos, checkpoint, device, precision)
    answers = []
    for video in videos:
        scores = video_scores(model, video_views(video, spec, num_clips=num_clips, num_crops=num_crops),
                              batch_size=batch_size, autocast_dtype=dtype)
        top = top_classes({head: values[None] for head, values in scores.items()}, class_names, top_k)[0]
        answers.append(VideoPrediction(video=str(video), scores={head: values.tolist() for head, values in
                                                                 scores.items()}, top=top))
    return answers


@dataclasses.dataclass(frozen=True)
class TimelineWindow:
    """The ``top`` classes ({head: [(name, p), ...]}) of the window [start, end) seconds of a video."""

    video: str
    start: float
    end: float
    top: dict[str, list[tuple[str, float]]]

    def to_json(self) -> dict[str, Any]:
        """``{"video": PATH, "start": s, "end": s, "top": {HEAD: [[name, p], ...]}}``."""
        return {"video": self.video, "start": self.start, "end": self.end,
                "top": {head: [[name, score] for name, score in ranked] for head, ranked in self.top.items()}}


def predict_timeline(videos: Sequence[str | os.PathLike], checkpoint: str | os.PathLike, *, window: float,
                     stride: float | None = None, top_k: int = 5, device: str = "auto", num_crops: int = 1,
                     batch_size: int = 8, precision: str = "auto") -> Iterator[TimelineWindow]:
    """The top classes of every sliding window (``sliding_windows``; ``stride`` defaults to ``window``) of each
    video, window after window: videos are decoded ``batch_size`` windows at a time, so memory does not grow with
    a video's length. Each window's softmax is averaged over its ``num_crops`` crops.

    Raises FileNotFoundError for a missing video and ValueError naming a video that cannot be decoded.
    """
    model, class_names, spec, dtype = _load_for(videos, checkpoint, device, precision)
    target = next(model.parameters()).device
    for video in videos:
        with open_video(video) as reader:
            windows = sliding_windows(reader.duration, window, stride or window)
            for first in range(0, len(windows), batch_size):
                part = windows[first:first + batch_size]
                views = torch.stack([window_views(reader, spec, start, end, num_crops) for start, end in part])
                scores = predict_views(model, views.to(target), dtype)  # views: (b, crops, 3, T, H, W)
                for (start, end), top in zip(part, top_classes(scores, class_names, top_k), strict=True):
                    yield TimelineWindow(video=str(video), start=start, end=end, top=top)
