"""What a dataset annotation line becomes: one video (or one segment of a video) with its label."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from motionformer.data.sampling import Segment


@dataclass(frozen=True)
class VideoEntry:
    """One sample: a video file or frame folder, its label, and optionally a time window.

    ``label`` is a class index, or ``{"verb": v, "noun": n}`` for Epic-Kitchens. ``window`` is
    (start, stop) in seconds within the video (Epic-Kitchens segments); None means the whole video.
    ``segment`` is the same part in frame numbers, as Epic-Kitchens counts them (clips are sampled in it when
    given; from ``window`` at the video's own rate otherwise). ``source`` says where the entry was read
    ("file:line"), for messages.
    """

    path: Path
    label: int | dict[str, int]
    window: tuple[float, float] | None = None
    source: str = ""
    segment: Segment | None = None
