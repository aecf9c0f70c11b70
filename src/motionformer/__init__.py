"""motionformer: trajectory attention for video transformers (Motionformer, NeurIPS 2021).

One call each: ``motionformer.predict(video, "k400_mformer_b")`` (class names and probabilities) and
``motionformer.extract(video, "k400_mformer_b")`` (feature tensors); they import inference only when called.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from motionformer.models import create_model, from_checkpoint, init_from_image_vit, list_models

if TYPE_CHECKING:
    from motionformer.extraction import VideoFeatures
    from motionformer.inference import TimelineWindow, VideoPrediction

__version__ = "0.1.0"
__all__ = ["create_model", "extract", "from_checkpoint", "init_from_image_vit", "list_models", "predict"]


def predict(video: str | os.PathLike | Sequence[str | os.PathLike], checkpoint: str | os.PathLike, *,
            top_k: int = 5, window: float | None = None, stride: float | None = None, device: str = "auto",
            precision: str = "auto") -> VideoPrediction | list[VideoPrediction] | list[TimelineWindow]:
    """Class probabilities of a video file or frame folder (or of each of a list of them) by a checkpoint: a path
    or a model-zoo name such as ``"k400_mformer_b"``.

    Returns a ``VideoPrediction`` (``.top``: {head: [(class name, probability), ...]}, the head ``""`` for one
    head; ``.scores``: {head: [probability of each class]}) averaged over the checkpoint's test views, a list of
    them for a list of videos; with ``window`` (seconds; ``stride`` defaults to it) a list of ``TimelineWindow``
    (``.start``, ``.end``, ``.top``), one per window of each video in turn.
    """
    from motionformer.inference import predict as predict_videos
    from motionformer.inference import predict_timeline

    videos = [video] if isinstance(video, (str, os.PathLike)) else list(video)
    if window is not None:
        return list(predict_timeline(videos, checkpoint, window=window, stride=stride, top_k=top_k, device=device,
                                     precision=precision))
    if stride is not None:
        raise ValueError(f"stride={stride} needs a window (the length of each window in seconds)")
    answers = predict_videos(videos, checkpoint, top_k=top_k, device=device, precision=precision)
    return answers[0] if isinstance(video, (str, os.PathLike)) else answers


def extract(video: str | os.PathLike, checkpoint: Any, **options: Any) -> VideoFeatures:
    """Features of one video file or frame folder in memory: ``.features`` (rows, *shape) and, for windows,
    ``.times`` (rows, 2) in seconds. ``checkpoint``: a path, a model-zoo name or a ``Motionformer``; ``options``:
    ``feature`` ("pre_logits", "cls", "tokens"), ``block``, ``window``, ``stride``, ``keep_views``, ``num_clips``,
    ``num_crops``, ``precision``, ``device``, ``batch_size`` (see ``motionformer.extraction.extract``).
    """
    from motionformer.extraction import extract as extract_video

    return extract_video(video, checkpoint, **options)
