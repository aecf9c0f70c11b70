"""Clip samplers: which times (seconds) to read from a video's time window for one clip.

A window is ``(start, stop)`` in seconds from the start of the video stream: ``(0, duration)`` for a whole
video, ``(start, stop)`` of an Epic-Kitchens segment. Every sampler returns the ``num_frames`` times of one
clip, in order, for ``motionformer.data.decoding.read_frames``; the frame shown at time t is the last frame
whose presentation time is <= t, so a time past the last frame reads the last frame (padding).

A clip of ``num_frames`` frames ``sampling_rate`` frames apart covers ``(num_frames - 1) * sampling_rate + 1``
frames, which at ``fps`` last ``clip_duration = ((num_frames - 1) * sampling_rate + 1) / fps`` seconds: a
clip starting at ``start`` lies fully inside the window when ``start >= window[0]`` and
``start + clip_duration <= window[1]``.

Samplers are frozen dataclasses; call one as ``sampler(window, fps, rng=rng, clip_index=k)``. Training
samplers need a ``numpy.random.Generator``; test-time samplers enumerate ``num_views`` views by
``clip_index`` in ``range(sampler.num_views)``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["ClipSampler", "RandomClipSampler", "SegmentSampler", "UniformClipSampler", "clip_duration"]


def clip_duration(num_frames: int, sampling_rate: int, fps: float) -> float:
    """Seconds covered by ``num_frames`` frames ``sampling_rate`` frames apart, counting the last frame's display."""
    return ((num_frames - 1) * sampling_rate + 1) / fps


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_call(window: tuple[float, float], fps: float, clip_index: int, num_views: int) -> tuple[float, float]:
    """Validate the per-call arguments; return the window as floats."""
    start, stop = (float(t) for t in window)
    if not (math.isfinite(start) and math.isfinite(stop) and 0 <= start <= stop):
        raise ValueError(f"window must be (start, stop) seconds with 0 <= start <= stop, got {window!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be finite and > 0, got {fps!r}")
    if not 0 <= clip_index < num_views:
        raise ValueError(f"clip_index must be in [0, {num_views}), got {clip_index!r}")
    return start, stop


def _require_rng(rng: np.random.Generator | None, sampler: object) -> np.random.Generator:
    if rng is None:
        raise ValueError(f"{type(sampler).__name__} samples at random and needs rng=numpy.random.Generator, got None")
    return rng


@dataclasses.dataclass(frozen=True)
class ClipSampler:
    """Base of the samplers: ``num_frames`` times per clip, ``num_views`` clips per video at test time."""

    num_frames: int

    def __post_init__(self) -> None:
        _check_positive_int("num_frames", self.num_frames)

    @property
    def num_views(self) -> int:
        """How many clips (``clip_index`` values) one video gives; 1 for training samplers."""
        return 1

    def __call__(self, window: tuple[float, float], fps: float, rng: np.random.Generator | None = None,
                 clip_index: int = 0) -> list[float]:
        """The ``num_frames`` times (seconds, ascending) of clip ``clip_index`` in ``window``."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class RandomClipSampler(ClipSampler):
    """Training: a clip at a uniformly random start, fully inside the window when it fits.

    Frame i is at ``start + i * sampling_rate / fps``. When the window is shorter than the clip, the clip
    starts at the window start and runs past its end; the decoder pads with the video's last frame, and an
    Epic-Kitchens segment simply takes the frames after the segment.
    """

    sampling_rate: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive_int("sampling_rate", self.sampling_rate)

    def __call__(self, window: tuple[float, float], fps: float, rng: np.random.Generator | None = None,
                 clip_index: int = 0) -> list[float]:
        start, stop = _check_call(window, fps, clip_index, self.num_views)
        rng = _require_rng(rng, self)
        slack = max(stop - start - clip_duration(self.num_frames, self.sampling_rate, fps), 0.0)
        first = start + float(rng.uniform(0.0, slack)) if slack > 0 else start
        step = self.sampling_rate / fps
        return [first + i * step for i in range(self.num_frames)]


@dataclasses.dataclass(frozen=True)
class UniformClipSampler(ClipSampler):
    """Testing: ``num_clips`` clips whose starts are evenly spaced over the window (PySlowFast's convention).

    Clip k starts at ``window[0] + slack * k / (num_clips - 1)``, where ``slack = max(window length -
    clip_duration, 0)``, so the first clip starts at the window start and the last ends at the window end; a
    single clip is centred. Clips longer than the window start at the window start (padded by the decoder).
    """

    sampling_rate: int = 1
    num_clips: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive_int("sampling_rate", self.sampling_rate)
        _check_positive_int("num_clips", self.num_clips)

    @property
    def num_views(self) -> int:
        return self.num_clips

    def __call__(self, window: tuple[float, float], fps: float, rng: np.random.Generator | None = None,
                 clip_index: int = 0) -> list[float]:
        start, stop = _check_call(window, fps, clip_index, self.num_views)
        slack = max(stop - start - clip_duration(self.num_frames, self.sampling_rate, fps), 0.0)
        fraction = 0.5 if self.num_clips == 1 else clip_index / (self.num_clips - 1)
        first = start + slack * fraction
        step = self.sampling_rate / fps
        return [first + i * step for i in range(self.num_frames)]


@dataclasses.dataclass(frozen=True)
class SegmentSampler(ClipSampler):
    """Something-Something v2 sampling: ``num_frames`` equal segments of the window, one frame from each.

    Frame i is at ``window[0] + (i + u) * window length / num_frames`` with u uniform in [0, 1) in training
    (needs ``rng``) and u = 0.5 (the segment's middle) in testing. The clip always spans the whole window,
    whatever its length; ``fps`` is only validated.
    """

    training: bool = False

    def __call__(self, window: tuple[float, float], fps: float, rng: np.random.Generator | None = None,
                 clip_index: int = 0) -> list[float]:
        start, stop = _check_call(window, fps, clip_index, self.num_views)
        segment = (stop - start) / self.num_frames
        if self.training:
            offsets = _require_rng(rng, self).uniform(0.0, 1.0, size=self.num_frames)
        else:
            offsets = np.full(self.num_frames, 0.5)
        return [start + (i + float(u)) * segment for i, u in enumerate(offsets)]
