"""``motionformer data check``: open every video an annotation file lists and decode a frame of each entry.

Real downloads have missing and corrupt files (a few percent of Kinetics): find them before training does.
Videos are checked in threads (PyAV releases the GIL while it demuxes and decodes, and threads need no
pickling); each video is opened once and a frame is decoded at the start of each entry's window (the first
frame for whole videos). A window starting after the end of its video counts as a failure of that video, and so
does a container whose stated duration runs past the end of its video stream (clips sampled from the stated
duration would repeat the last frame). Failures are reported as they are found; an interrupted check (Ctrl-C,
SIGTERM) still reports what it checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import av

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
    total: int | None = None  # videos listed, when the check was interrupted before it checked them all

    @property
    def interrupted(self) -> bool:
        return self.total is not None and self.checked < self.total

    def to_json(self) -> str:
        """``{"checked": N, "ok": N, "failed": [{"path": "...", "reason": "..."}]}``, plus ``"interrupted": true``
        and ``"total": N`` when the check stopped early."""
        record: dict[str, Any] = {"checked": self.checked, "ok": self.ok, "failed": self.failed}
        if self.interrupted:
            record.update(interrupted=True, total=self.total)
        return json.dumps(record)


def check_videos(annotations: Annotations, *, root: str | os.PathLike | None = None, workers: int = 1,
                 progress: bool = True, on_failure: Callable[[dict[str, str]], None] | None = None) -> CheckReport:
    """Open every video of ``annotations`` and decode a frame at the start of each entry's window.

    Counts videos, not entries: entries that share a file (Epic-Kitchens segments) are checked with one opening
    and reported once. A failure's ``path`` is the video path relative to ``root`` when it lies inside it (so,
    for ``path label`` lists, as listed), else the full path; its ``reason`` says what went wrong (missing,
    FFmpeg's message, a window after the end ...). ``on_failure`` is called with each failure as it is found.
    ``progress`` writes a progress line (count/total, rate, time left) to stderr. A KeyboardInterrupt stops the
    check: the report then holds the videos checked so far, and ``total``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    videos: dict[Path, list[VideoEntry]] = {}
    for entry in annotations.entries:
        videos.setdefault(entry.path, []).append(entry)
    meter = _Progress(len(videos), enabled=progress)
    results: list[tuple[Path, str | None]] = []  # one append per video: an interrupt never splits the counts
    reported = 0  # failures passed to on_failure so far
    decoder_threads = 0 if workers == 1 else 1
    pool = ThreadPoolExecutor(max_workers=workers)
    interrupted = False
    try:
        for result in pool.map(lambda item: (item[0], _check_video(*item, decoder_threads)), videos.items()):
            results.append(result)
            if result[1] is not None:
                if on_failure is not None:
                    on_failure({"path": _as_listed(result[0], root), "reason": result[1]})
                reported += 1
            meter.advance(failed=reported)
    except KeyboardInterrupt:
        interrupted = True
        pool.shutdown(wait=False, cancel_futures=True)
    else:
        pool.shutdown()
    meter.close()
    failed = [{"path": _as_listed(path, root), "reason": reason} for path, reason in results if reason is not None]
    if on_failure is not None:
        for failure in failed[reported:]:  # found just before an interrupt
            on_failure(failure)
    return CheckReport(checked=len(results), ok=len(results) - len(failed), failed=failed,
                       total=len(videos) if interrupted else None)


def run_check(annotations_path: str | os.PathLike, root: str | os.PathLike | None = None, format: str = "auto",
              json_output: bool = False, workers: int = 1, *, frames: bool = False,
              out: TextIO | None = None) -> int:
    """Read an annotation file, check its videos and write the report: each failure as it is found, then a
    summary (or, with ``json_output``, the JSON report at the end).

    Returns the exit status: 1 if any video failed, else 0; 130 when interrupted (Ctrl-C or SIGTERM), after
    reporting the videos checked so far. Missing or malformed annotation files raise FileNotFoundError /
    ValueError (see ``read_annotations``).
    """
    out = sys.stdout if out is None else out
    annotations = read_annotations(annotations_path, root, format, frames=frames)
    display_root = Path(root) if root is not None else Path(annotations_path).parent

    def write_failure(failure: dict[str, str]) -> None:
        out.write(f"  {failure['path']}: {failure['reason']}\n")
        out.flush()

    with _sigterm_interrupts():
        report = check_videos(annotations, root=display_root, workers=workers, progress=True,
                              on_failure=None if json_output else write_failure)
    out.write(report.to_json() + "\n" if json_output else _summary(report, annotations_path, annotations.format))
    out.flush()
    if report.interrupted:
        return 130
    return 1 if report.failed else 0


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (like Ctrl-C) in the main thread while the check runs."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
            end = _stream_end(path, duration) if path.is_file() and duration > 0 else None
            if end is not None and duration > end + max(_END_TOLERANCE_SEC, 0.05 * end):
                return (f"the container states a duration of {duration:.2f} s but its video stream ends at "
                        f"{end:.2f} s")
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


def _stream_end(path: Path, stated: float) -> float | None:
    """Where the first video stream's last packet ends, in seconds: demuxed (not decoded) from a seek near the
    ``stated`` duration to the end of the file, or from the start when that seek finds nothing. None when the
    packets carry no timestamps."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        base, origin = stream.time_base, stream.start_time or 0
        for start in (max(stated - 2.0, 0.0), 0.0):
            with contextlib.suppress(av.FFmpegError):
                container.seek(origin + int(start / base), stream=stream, backward=True)
            stops = [float((packet.pts - origin + (packet.duration or 0)) * base)
                     for packet in container.demux(stream) if packet.pts is not None]
            if stops:
                return max(stops)
        return None


def _summary(report: CheckReport, annotations_path: str | os.PathLike, format: str) -> str:
    counts = f"checked {report.checked} videos, {report.ok} ok, {len(report.failed)} failed"
    if report.interrupted:
        counts = f"interrupted: {counts} of {report.total} listed"
    return f"{os.fspath(annotations_path)} ({format}): {counts}\n"


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
