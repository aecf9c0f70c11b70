"""``motionformer data check``: open every video an annotation file lists and decode a frame of each entry.

Real downloads have missing and corrupt files (a few percent of Kinetics): find them before training does.
Videos are checked in threads (PyAV releases the GIL while it demuxes and decodes, and threads need no
pickling); each video is opened once and a frame is decoded at the start of each entry's window (the first
frame for whole videos). A window starting after the end of its video counts as a failure of that video.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from motionformer.data.datasets.annotations import Annotations, read_annotations
from motionformer.data.datasets.entry import VideoEntry
from motionformer.data.decoding import VideoDecodeError, open_video

# A window may start this much after the duration the container reports (rounding of the last frame's time).
_END_TOLERANCE_SEC = 0.5


@dataclass(frozen=True)
class CheckReport:
    """How many videos were checked, how many decoded, and why the others failed (``path``, ``reason``)."""

    checked: int
    ok: int
    failed: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> str:
        """``{"checked": N, "ok": N, "failed": [{"path": "...", "reason": "..."}]}``."""
        return json.dumps({"checked": self.checked, "ok": self.ok, "failed": self.failed})


def check_videos(annotations: Annotations, *, root: str | os.PathLike | None = None, workers: int = 1,
                 progress: bool = True) -> CheckReport:
    """Open every video of ``annotations`` and decode a frame at the start of each entry's window.

    Counts videos, not entries: entries that share a file (Epic-Kitchens segments) are checked with one opening
    and reported once. A failure's ``path`` is the video path relative to ``root`` when it lies inside it (so,
    for ``path label`` lists, as listed), else the full path; its ``reason`` says what went wrong (missing,
    FFmpeg's message, a window after the end ...).
    ``progress`` writes a progress line (count/total, rate, time left) to stderr.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    videos: dict[Path, list[VideoEntry]] = {}
    for entry in annotations.entries:
        videos.setdefault(entry.path, []).append(entry)
    meter = _Progress(len(videos), enabled=progress)
    failed = []
    decoder_threads = 0 if workers == 1 else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, reason in pool.map(lambda item: (item[0], _check_video(*item, decoder_threads)), videos.items()):
            if reason is not None:
                failed.append({"path": _as_listed(path, root), "reason": reason})
            meter.advance(failed=len(failed))
    meter.close()
    return CheckReport(checked=len(videos), ok=len(videos) - len(failed), failed=failed)


def run_check(annotations_path: str | os.PathLike, root: str | os.PathLike | None = None, format: str = "auto",
              json_output: bool = False, workers: int = 1, *, frames: bool = False,
              out: TextIO | None = None) -> int:
    """Read an annotation file, check its videos and write a summary (or, with ``json_output``, the JSON report).

    Returns the exit status: 1 if any video failed, else 0. Missing or malformed annotation files raise
    FileNotFoundError / ValueError (see ``read_annotations``).
    """
    out = sys.stdout if out is None else out
    annotations = read_annotations(annotations_path, root, format, frames=frames)
    display_root = Path(root) if root is not None else Path(annotations_path).parent
    report = check_videos(annotations, root=display_root, workers=workers, progress=True)
    if json_output:
        out.write(report.to_json() + "\n")
    else:
        out.write(_summary(report, annotations_path, annotations.format))
    return 1 if report.failed else 0


def _as_listed(path: Path, root: str | os.PathLike | None) -> str:
    if root is not None:
        try:
            return str(path.relative_to(root))
        except ValueError:
            pass
    return str(path)


def _check_video(path: Path, entries: Sequence[VideoEntry], decoder_threads: int) -> str | None:
    """Why the video at ``path`` fails for ``entries``, or None when it decodes at every window start."""
    try:
        with open_video(path, threads=decoder_threads) as video:
            duration = video.info.duration  # decodes the first frame
            starts = sorted({entry.window[0] for entry in entries if entry.window is not None})
            late = [start for start in starts if duration > 0 and start > duration + _END_TOLERANCE_SEC]
            if late:
                entry = next(entry for entry in entries if entry.window is not None and entry.window[0] == late[0])
                return (f"window {entry.window[0]:.2f}-{entry.window[1]:.2f} s ({entry.source}) starts after the end "
                        f"of the video ({duration:.2f} s)")
            if starts:
                video.read_frames(starts)
    except FileNotFoundError:
        return "missing: no such file or frame folder"
    except VideoDecodeError as error:
        return error.reason
    except Exception as error:  # a check reports every failure and goes on
        return f"{type(error).__name__}: {error}"
    return None


def _summary(report: CheckReport, annotations_path: str | os.PathLike, format: str) -> str:
    lines = [f"{os.fspath(annotations_path)} ({format}): checked {report.checked} videos, {report.ok} ok, "
             f"{len(report.failed)} failed"]
    lines += [f"  {failure['path']}: {failure['reason']}" for failure in report.failed]
    return "\n".join(lines) + "\n"


class _Progress:
    """``checked 120/2000 (3 failed)  35.2 videos/s  0:00:53 left`` on stderr, rewritten in place on a terminal."""

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None):
        self.total, self.count, self.failed = total, 0, 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled and total > 0
        self.interactive = self.stream.isatty()
        self.interval = 0.2 if self.interactive else 10.0  # seconds between lines
        self.start = self.last = time.monotonic()

    def advance(self, failed: int) -> None:
        self.count, self.failed = self.count + 1, failed
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.interval or self.count == self.total):
            self.last = now
            self._write(now)

    def close(self) -> None:
        if self.enabled and self.interactive:
            self.stream.write("\n")
            self.stream.flush()

    def _write(self, now: float) -> None:
        rate = self.count / max(now - self.start, 1e-9)
        left = round((self.total - self.count) / rate) if rate > 0 else 0
        line = (f"checked {self.count}/{self.total} ({self.failed} failed)  {rate:.1f} videos/s  "
                f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left")
        self.stream.write(f"\r{line}" if self.interactive else f"{line}\n")
        self.stream.flush()
