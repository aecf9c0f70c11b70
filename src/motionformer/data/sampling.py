"""Clip samplers: which frames of a video make one clip, by the released models' protocol.

The rules are those of the authors' released code (``released-protocol.md`` in the project's reference notes),
for clips (Kinetics-style video files and frame folders, Epic-Kitchens segments) and for segments (SSv2):

- **Clips.** A clip of ``num_frames`` frames at ``sampling_rate`` spans ``sampling_rate * num_frames / 30`` s
  (``TARGET_FPS``) whatever the video's rate: ``L = sampling_rate * num_frames * fps / 30`` source frames (a
  float). With ``Δ = max(N - L, 0)`` over N frames, test clip k of K starts at ``Δ * k / K`` (so the last clip
  does not end at the video's end) and a training clip at a uniformly random start in ``[0, Δ]``; its frames
  are ``linspace(start, start + L - 1, num_frames)`` clamped to the video and truncated toward zero
  (``clip_positions``). Where a video file's header states its duration D (in time-base units) and frame count N,
  the clip is the presentation-time window ``[int(start * D / N), int((start + L - 1) * D / N)]`` (pts as stored,
  not shifted by the stream's start time, as in the released code), decoded after a seek
  (``VideoReader.read_window``), and the positions ``linspace(0, L - 1, num_frames)`` are taken among the
  frames kept from it; otherwise (no stated duration, frame folders) N counts every frame of the video.
- **Epic-Kitchens segments** (``Segment``: frames ``start_frame..end_frame`` numbered at 50 or 60 fps): the same
  clip rule over ``n = end_frame - start_frame`` frames with ``fps`` the segment's, the start shifted by 1; frame
  number ``start_frame + index`` is the 1-based frame file ``frame_{number:010d}.jpg``, i.e. position
  ``number - 1`` of the video (in a video file: the frame shown at ``(number - 1) / rate`` seconds, ``rate``
  the file's own frame rate).
- **Segments (SSv2).** Every frame counted (a full decode for video files); with ``seg = (N - 1) / num_frames``,
  segment i runs from ``round(seg * i)`` to ``round(seg * (i + 1))`` (half to even); testing takes the middle
  ``(s + e) // 2``, training a uniformly random frame of the segment (``segment_positions``).

``linspace`` is computed in float32, as the released code's ``torch.linspace``: in float64, 1.5% of the clips
(k of 10, over 12-60 fps videos of 64-400 frames, 16x4, 16x8 and 32x3) pick a frame one away.

Samplers are frozen dataclasses called as ``sampler(video, segment=None, rng=rng, clip_index=k)`` on an open
``VideoReader``; they return the clip's uint8 frames (num_frames, H, W, 3). Training samplers need a
``numpy.random.Generator``; test samplers enumerate ``num_views`` clips by ``clip_index``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor

from motionformer.data.decoding import VideoReader

__all__ = ["TARGET_FPS", "ClipSampler", "RandomClipSampler", "Segment", "SegmentSampler", "UniformClipSampler",
           "clip_length", "clip_positions", "clip_start", "segment_positions"]

TARGET_FPS = 30.0


@dataclasses.dataclass(frozen=True)
class Segment:
    """Frames ``start_frame`` to ``end_frame`` of a video whose frames are numbered at ``fps``.

    Epic-Kitchens numbers the frames of a video at 50 or 60 fps from 1 (``frame_0000000001.jpg`` is the first
    frame); the segment has ``end_frame - start_frame`` frames.
    """

    start_frame: int
    end_frame: int
    fps: float


def clip_length(num_frames: int, sampling_rate: int, fps: float, target_fps: float = TARGET_FPS) -> float:
    """Source frames a clip spans: ``sampling_rate * num_frames * fps / target_fps`` (a float)."""
    return sampling_rate * num_frames * fps / target_fps


def clip_start(num_source_frames: int, length: float, clip_index: int = 0, num_clips: int = 1,
               rng: np.random.Generator | None = None) -> float:
    """Where a clip of ``length`` frames starts among ``num_source_frames``: ``Δ * clip_index / num_clips`` with
    ``Δ = max(num_source_frames - length, 0)``, or uniform in ``[0, Δ]`` when ``rng`` is given (training)."""
    slack = max(num_source_frames - length, 0.0)
    if rng is not None:
        return float(rng.uniform(0.0, slack))
    return slack * clip_index / num_clips


def clip_positions(start: float, length: float, num_frames: int, size: int | None = None) -> list[int]:
    """``linspace(start, start + length - 1, num_frames)`` in float32, clamped to ``[0, size - 1]`` (no upper
    bound when ``size`` is None) and truncated toward zero."""
    values = torch.linspace(start, start + length - 1, num_frames, dtype=torch.float32).clamp(min=0)
    if size is not None:
        values = values.clamp(max=size - 1)
    return values.long().tolist()


def segment_positions(size: int, num_frames: int, rng: np.random.Generator | None = None) -> list[int]:
    """One position per segment of ``num_frames`` equal segments of ``size`` frames: the middle at test, a
    uniformly random one of the segment's frames (both ends included) when ``rng`` is given."""
    step = (size - 1) / num_frames
    positions = []
    for i in range(num_frames):
        first, last = round(step * i), round(step * (i + 1))
        positions.append(int(rng.integers(first, last + 1)) if rng is not None else (first + last) // 2)
    return positions


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ClipSampler:
    """Base of the samplers: ``num_frames`` frames per clip, ``num_views`` clips per video at test time."""

    num_frames: int

    def __post_init__(self) -> None:
        _check_positive_int("num_frames", self.num_frames)

    @property
    def num_views(self) -> int:
        """How many clips (``clip_index`` values) one video gives; 1 for training samplers."""
        return 1

    def __call__(self, video: VideoReader, segment: Segment | None = None, rng: np.random.Generator | None = None,
                 clip_index: int = 0) -> Tensor:
        """The frames of clip ``clip_index`` of ``video`` (or of its ``segment``): uint8 (num_frames, H, W, 3)."""
        raise NotImplementedError

    def _check_call(self, clip_index: int, rng: np.random.Generator | None, training: bool) -> None:
        if not 0 <= clip_index < self.num_views:
            raise ValueError(f"clip_index must be in [0, {self.num_views}), got {clip_index!r}")
        if training and rng is None:
            raise ValueError(f"{type(self).__name__} samples at random and needs rng=numpy.random.Generator, got None")


@dataclasses.dataclass(frozen=True)
class _ProtocolClips(ClipSampler):
    """Clips of ``num_frames`` frames spanning ``sampling_rate * num_frames / target_fps`` seconds."""

    sampling_rate: int = 1
    target_fps: float = dataclasses.field(default=TARGET_FPS, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive_int("sampling_rate", self.sampling_rate)
        if not (math.isfinite(self.target_fps) and self.target_fps > 0):
            raise ValueError(f"target_fps must be finite and > 0, got {self.target_fps!r}")

    def _read(self, video: VideoReader, segment: Segment | None, clip_index: int, num_clips: int,
              rng: np.random.Generator | None) -> Tensor:
        if segment is not None:
            return self._read_segment(video, segment, clip_index, num_clips, rng)
        header = video.header
        length = clip_length(self.num_frames, self.sampling_rate, header.fps, self.target_fps)
        if header.duration_pts is not None and header.num_frames > 0:
            size, duration = header.num_frames, header.duration_pts
            start = clip_start(size, length, clip_index, num_clips, rng)
            window = int(start * duration / size), int((start + length - 1) * duration / size)
            return video.read_window(*window, clip_positions(0.0, length, self.num_frames))
        size = video.frame_count()
        start = clip_start(size, length, clip_index, num_clips, rng)
        return video.read_positions(clip_positions(start, length, self.num_frames, size))

    def _read_segment(self, video: VideoReader, segment: Segment, clip_index: int, num_clips: int,
                      rng: np.random.Generator | None) -> Tensor:
        size = segment.end_frame - segment.start_frame
        if size < 1:
            raise ValueError(f"segment {segment} has no frames: end_frame must be > start_frame")
        length = clip_length(self.num_frames, self.sampling_rate, segment.fps, self.target_fps)
        start = clip_start(size, length, clip_index, num_clips, rng) + 1
        numbers = [segment.start_frame + index for index in clip_positions(start, length, self.num_frames, size)]
        # frame number n is position n - 1, read by time (constant frame rate) to seek in long videos
        return video.read_frames([max(number - 1, 0) / video.fps for number in numbers])


@dataclasses.dataclass(frozen=True)
class RandomClipSampler(_ProtocolClips):
    """Training: one clip at a uniformly random start (see the module docstring)."""

    def __call__(self, video: VideoReader, segment: Segment | None = None, rng: np.random.Generator | None = None,
                 clip_index: int = 0) -> Tensor:
        self._check_call(clip_index, rng, training=True)
        return self._read(video, segment, 0, 1, rng)


@dataclasses.dataclass(frozen=True)
class UniformClipSampler(_ProtocolClips):
    """Testing: ``num_clips`` clips, clip k starting ``k / num_clips`` of the way through the slack Δ."""

    num_clips: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive_int("num_clips", self.num_clips)

    @property
    def num_views(self) -> int:
        return self.num_clips

    def __call__(self, video: VideoReader, segment: Segment | None = None, rng: np.random.Generator | None = None,
                 clip_index: int = 0) -> Tensor:
        self._check_call(clip_index, rng, training=False)
        return self._read(video, segment, clip_index, self.num_clips, None)


@dataclasses.dataclass(frozen=True)
class SegmentSampler(ClipSampler):
    """SSv2: ``num_frames`` segments over every frame of the video, one frame from each (see the module docstring).

    A random frame per segment in training (needs ``rng``), the middle one at test. Counting the frames of a
    video file decodes it whole.
    """

    training: bool = False

    def __call__(self, video: VideoReader, segment: Segment | None = None, rng: np.random.Generator | None = None,
                 clip_index: int = 0) -> Tensor:
        self._check_call(clip_index, rng, training=self.training)
        if segment is not None:
            raise ValueError(f"{type(self).__name__} spreads its frames over whole videos; got the segment {segment} "
                             f"(sample segments of long videos as clips)")
        positions = segment_positions(video.frame_count(), self.num_frames, rng if self.training else None)
        return video.read_positions(positions)
