"""Video decoding: clips and frames at given times as uint8 (T, H, W, 3) tensors, behind one small interface.

Backends: PyAV (the default, always installed), decord and torchcodec (used only when named and installed),
and folders of per-frame images (always used for a directory). Every backend follows one rule for which
frame is returned: **the frame shown at time t is the last frame whose presentation time is <= t**, with
times in seconds from the start of the video stream. Clip frame i is the frame shown at
``start_sec + i * sampling_rate / fps`` (``fps`` is the average frame rate), so variable-frame-rate video is
sampled by timestamp. Times before the first frame give the first frame; times past the last frame give
the last frame, so clips that run past the end are padded by repeating the last frame.

"<= t" allows a small tolerance, so that timestamps the container rounded (Matroska and WebM store whole
milliseconds: frame 5 at 30 fps is stored at 0.167 s, not 0.16667 s) and computed times rounded in floating
point still select the intended frame: one tick of the container's time base (1 ms where the backend does not
say), at most an eighth of a frame interval and at least 0.1 ms.

Frames come out upright (the container's rotation metadata is applied) and in RGB whatever the pixel
format (8- or 10-bit, 4:2:0, 4:4:4, gray).

Besides reads by time, readers answer the two reads of the released models' protocol (see
``motionformer.data.sampling``): ``read_window`` (PyAV: the frames of a presentation-time window, found by a
seek 1024 time-base units before it) and ``frame_count`` / ``read_positions`` (every frame decoded in
presentation order, then frames picked by position; frame folders only list their files).
"""

from __future__ import annotations

import abc
import bisect
import dataclasses
import errno
import importlib.util
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

log = logging.getLogger(__name__)

Backend = Literal["auto", "pyav", "decord", "torchcodec"]
BACKENDS: tuple[str, ...] = ("auto", "pyav", "decord", "torchcodec")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_FOLDER_FPS = 30.0
# How far after t a frame still counts as shown at t (see the module docstring): at least this, ...
_MIN_TOLERANCE_SEC = 1e-4
# ... and one tick of the time base, taken as 1 ms (Matroska's) where the backend does not give it.
_UNKNOWN_TICK_SEC = 1e-3
# Seek back this much further (doubling) when a seek lands on a keyframe after the wanted time, which
# containers seeking by decoding time or inexactly (MPEG-TS) can do.
_SEEK_BACKOFF_SEC = 1.0
# Between far-apart times, seek ahead only to a keyframe at least this far beyond the decoded frames: a seek
# restarts the decoder, which costs about as much as decoding a few frames.
_SEEK_AHEAD_MIN_SEC = 0.5
# ``read_window`` seeks this many time-base units before the window, as the released models' decoder does.
WINDOW_SEEK_MARGIN = 1024


class VideoDecodeError(ValueError):
    """A file that exists but cannot be decoded: empty, truncated, corrupt, without video, or without frames."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"cannot decode video {os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video holds. ``width`` and ``height`` are those of the upright frames (after rotation).

    ``fps`` is the average frame rate; ``num_frames`` comes from the container, or is estimated as
    ``round(duration * fps)`` when the container does not say; ``duration`` is in seconds; ``rotation`` is
    the clockwise rotation in degrees (0, 90, 180 or 270) applied to the decoded frames to make them upright,
    as in the ``rotate`` tag of phone videos.
    """

    fps: float
    num_frames: int
    duration: float
    width: int
    height: int
    rotation: int = 0


@dataclasses.dataclass(frozen=True)
class StreamHeader:
    """What the video stream's header states: ``fps`` (the average rate), ``num_frames`` (0 when unstated) and
    ``duration_pts`` (the stream's duration in its time base; None when unstated, and for frame folders)."""

    fps: float
    num_frames: int
    duration_pts: int | None


class VideoReader(abc.ABC):
    """One open video. Use as a context manager; ``frames_decoded`` counts the frames the decoder produced."""

    def __init__(self, path: Path):
        self.path = path
        self.frames_decoded = 0

    @property
    @abc.abstractmethod
    def info(self) -> VideoInfo:
        """Frame rate, length, upright size and rotation (may decode the first frame)."""

    @property
    def fps(self) -> float:
        """The average frame rate, which spaces clip frames."""
        return self.info.fps

    @property
    def duration(self) -> float:
        """Length in seconds: the longer of the stated duration and ``num_frames / fps``
        (containers often round the duration a fraction of a frame short: 16 frames at 30 fps stated as
        0.533 s). Backends that can answer from metadata do so without decoding a frame."""
        info = self.info
        return _length(info.duration, info.num_frames, info.fps)

    def read_frames(self, times_sec: Sequence[float]) -> Tensor:
        """The frames shown at ``times_sec`` (seconds, any order, repeats allowed): uint8 (len, H, W, 3).

        Raises ValueError for a negative or non-finite time, VideoDecodeError if the video cannot be decoded.
        """
        times = [float(t) for t in times_sec]
        bad = [t for t in times if not math.isfinite(t) or t < 0]
        if bad:
            raise ValueError(f"times must be finite and >= 0 seconds, got {bad[0]} in {self.path}")
        if not times:
            return torch.empty(0, self.info.height, self.info.width, 3, dtype=torch.uint8)
        order = sorted(range(len(times)), key=times.__getitem__)
        frames = self._frames_at([times[i] for i in order])  # (len, H, W, 3) in time order
        if order == list(range(len(order))):
            return frames
        place = [0] * len(order)  # frames[place[i]] is the frame for times[i]
        for position, i in enumerate(order):
            place[i] = position
        return frames[place]

    def read_clip(self, start_sec: float, num_frames: int, sampling_rate: int = 1) -> Tensor:
        """``num_frames`` frames ``sampling_rate`` frames apart from ``start_sec``: uint8 (num_frames, H, W, 3).

        Frame i is the frame shown at ``start_sec + i * sampling_rate / fps``. Clips that run past the end are
        padded by repeating the last frame; a start past the end returns the last frame repeated.
        """
        if not (math.isfinite(start_sec) and start_sec >= 0):
            raise ValueError(f"start_sec must be finite and >= 0, got {start_sec} for {self.path}")
        if num_frames < 1 or sampling_rate < 1:
            raise ValueError(f"num_frames and sampling_rate must be >= 1, got {num_frames} and {sampling_rate}")
        step = sampling_rate / self.fps
        return self.read_frames([start_sec + i * step for i in range(num_frames)])

    @property
    def header(self) -> StreamHeader:
        """The stream header's frame rate, frame count and duration (see ``StreamHeader``)."""
        return StreamHeader(fps=self.fps, num_frames=self.frame_count(), duration_pts=None)

    def frame_count(self) -> int:
        """How many frames ``read_positions`` counts: the frames a full decode gives (the files of a folder)."""
        return self.info.num_frames

    def read_positions(self, positions: Sequence[int]) -> Tensor:
        """The frames at 0-based ``positions`` in presentation order: uint8 (len, H, W, 3).

        Positions past the last frame give the last frame. This base reads frame k at ``k / fps`` (exact for
        frame folders and constant-frame-rate video); PyAV decodes the whole video once and counts.
        """
        _check_positions(positions, self.path)
        return self.read_frames([position / self.fps for position in positions])

    def read_window(self, start_pts: int, end_pts: int, offsets: Sequence[int]) -> Tensor:
        """The frames at ``offsets`` among those kept from the presentation-time window [start_pts, end_pts].

        Only PyAV readers answer (the window is in the stream's time base, which ``header`` gives with PyAV).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot read a time-base window of {self.path}; "
                                  "open the video with backend='pyav'")

    @abc.abstractmethod
    def _frames_at(self, times: list[float]) -> Tensor:
        """Upright RGB frames (len, H, W, 3) shown at ``times``: sorted, finite, >= 0, not empty."""

    def close(self) -> None:  # noqa: B027 - backends without an open handle have nothing to release
        """Release the file."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_video(path: str | os.PathLike, *, backend: Backend = "auto", threads: int = 0,
               folder_fps: float = DEFAULT_FOLDER_FPS) -> VideoReader:
    """Open a video file, or a folder of per-frame images, for reading clips and frames.

    ``backend="auto"`` uses PyAV, which is always installed and seeks to the keyframe before each clip;
    ``"decord"`` and ``"torchcodec"`` need those packages. A directory is always read as a folder of frame
    images (.jpg, .jpeg, .png, in natural order of file name: ``x_000001.jpg``, ``frame_0000000001.jpg``...),
    frame k shown at ``k / folder_fps`` seconds. ``threads`` is the video decoder's thread count (0: the decoder
    chooses, typically one per core; 1 suits many data-loader workers); frame images are decoded one by one.

    Raises FileNotFoundError for a missing path, VideoDecodeError for a file that cannot be read as video,
    ImportError for a backend that is not installed.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: automatic), got {threads}")
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such video file or frame folder", str(path))
    if path.is_dir():
        return _FrameFolderReader(path, fps=folder_fps)
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes)")
    if backend in ("auto", "pyav"):
        return _PyAVReader(path, threads=threads)
    if importlib.util.find_spec(backend) is None:
        raise ImportError(f"backend={backend!r} needs the {backend} package (pip install {backend})")
    if backend == "decord":
        return _DecordReader(path, threads=threads)
    return _TorchCodecReader(path, threads=threads)


def probe(path: str | os.PathLike, *, backend: Backend = "auto", folder_fps: float = DEFAULT_FOLDER_FPS) -> VideoInfo:
    """Frame rate, length, upright size and rotation of a video file or frame folder (decodes one frame)."""
    with open_video(path, backend=backend, folder_fps=folder_fps) as video:
        return video.info


def read_frames(path: str | os.PathLike, times_sec: Sequence[float], *, backend: Backend = "auto", threads: int = 0,
                folder_fps: float = DEFAULT_FOLDER_FPS) -> Tensor:
    """The frames shown at ``times_sec`` (seconds from the start): uint8 (len, H, W, 3), upright RGB.

    The frame shown at t is the last frame whose presentation time is <= t; times past the end give the last
    frame. Decodes once from the keyframe before the earliest time, seeking ahead across long gaps. See
    ``open_video`` for the arguments and errors.
    """
    with open_video(path, backend=backend, threads=threads, folder_fps=folder_fps) as video:
        return video.read_frames(times_sec)


def read_clip(path: str | os.PathLike, start_sec: float, num_frames: int, sampling_rate: int = 1, *,
              backend: Backend = "auto", threads: int = 0, folder_fps: float = DEFAULT_FOLDER_FPS) -> Tensor:
    """A clip of ``num_frames`` frames ``sampling_rate`` apart from ``start_sec``: uint8 (T, H, W, 3), upright RGB.

    Frame i is the frame shown at ``start_sec + i * sampling_rate / fps`` (``fps``: the average frame rate), so
    frames are chosen by timestamp in variable-frame-rate video. Seeks to the keyframe before the clip and
    decodes only up to its last frame. Clips that run past the end are padded by repeating the last frame; a
    start past the end returns the last frame repeated. Raises ValueError for a negative ``start_sec``; see
    ``open_video`` for the other arguments and errors.
    """
    with open_video(path, backend=backend, threads=threads, folder_fps=folder_fps) as video:
        return video.read_clip(start_sec, num_frames, sampling_rate)


def _check_positions(positions: Sequence[int], path: Path) -> None:
    if any(position < 0 for position in positions):
        raise ValueError(f"positions must be >= 0, got {min(positions)} for {path}")


def _length(duration: float, num_frames: int, fps: float) -> float:
    from_frames = num_frames / fps
    return max(duration, from_frames) if math.isfinite(duration) else from_frames


def _time_tolerance(fps: float, tick_sec: float = _UNKNOWN_TICK_SEC) -> float:
    """Seconds after t within which a frame still counts as shown at t (see the module docstring)."""
    return max(_MIN_TOLERANCE_SEC, min(tick_sec, 1 / (8 * fps)))


def _clockwise(counterclockwise: float) -> int:
    """A display-matrix angle (counter-clockwise, as FFmpeg reports it) as clockwise degrees in {0, 90, 180, 270}."""
    quarter_turns = round(counterclockwise / 90)
    if abs(counterclockwise - 90 * quarter_turns) > 1:
        log.warning("rotation of %s degrees is not a multiple of 90; using %s", counterclockwise, 90 * quarter_turns)
    return (-90 * quarter_turns) % 360


def _upright(frames: list[np.ndarray], rotation: int) -> Tensor:
    """Stack HWC frames into (T, H, W, 3), turning each ``rotation`` degrees clockwise."""
    quarter_turns = -(rotation // 90)  # np.rot90 turns counter-clockwise for positive k
    return torch.from_numpy(np.stack([np.rot90(frame, quarter_turns) for frame in frames]))


def _pyav_rotation(path: Path) -> int:
    """The clockwise rotation of a video file, read by PyAV from its first frame (0 when it has none)."""
    with _PyAVReader(path, threads=1) as video:
        return video.info.rotation


class _PyAVReader(VideoReader):
    """PyAV: seek to the keyframe before the first wanted time, decode forward, convert only the wanted frames."""

    def __init__(self, path: Path, threads: int):
        super().__init__(path)
        self._threads = threads
        self._open()
        self._time_base = self._stream.time_base or Fraction(1, 90_000)
        self._origin = self._stream.start_time or 0  # pts of time 0
        self._seekable = True  # until a seek fails (raw streams: .h264, .m4v ...)
        self._fresh = True  # opened and nothing read yet: the demuxer is at the first frame
        self._info: VideoInfo | None = None
        self._all_frames: list[av.VideoFrame] | None = None  # the whole video, once read_positions needs it

    def _open(self) -> None:
        try:
            self._container = av.open(str(self.path))
        except av.FFmpegError as error:
            raise VideoDecodeError(self.path, _ffmpeg_reason(error)) from error
        if not self._container.streams.video:
            self._container.close()
            raise VideoDecodeError(self.path, "no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.thread_count = self._threads
        self._fresh = True

    @property
    def fps(self) -> float:
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise VideoDecodeError(self.path, "the container gives no frame rate")
        return float(rate)

    @property
    def info(self) -> VideoInfo:
        if self._info is None:
            first = self._decode_from(None)
            frame = next(first, None)
            if frame is None:
                raise VideoDecodeError(self.path, "no frames decoded")
            rotation = _clockwise(frame.rotation)
            width, height = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
            duration, num_frames = self._stated_length()
            self._info = VideoInfo(fps=self.fps, num_frames=num_frames, duration=duration, width=width,
                                   height=height, rotation=rotation)
        return self._info

    @property
    def duration(self) -> float:
        return _length(*self._stated_length(), self.fps)  # metadata only: no frame is decoded

    def _stated_length(self) -> tuple[float, int]:
        """(duration in seconds, frame count) as the container states them, estimated from each other."""
        stream, container, fps = self._stream, self._container, self.fps
        if stream.duration:
            duration = float(stream.duration * self._time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = (stream.frames or 0) / fps
        return duration, stream.frames or round(duration * fps)

    def close(self) -> None:
        self._container.close()

    def _frames_at(self, times: list[float]) -> Tensor:
        targets = [self._origin + t / self._time_base for t in times]  # pts, sorted
        frames: list[av.VideoFrame] = []
        while len(frames) < len(targets):
            frames += self._decode_run(targets, first=len(frames))
        return _pyav_rgb(frames)

    @property
    def header(self) -> StreamHeader:
        stream = self._stream
        return StreamHeader(fps=self.fps, num_frames=stream.frames or 0, duration_pts=stream.duration or None)

    def frame_count(self) -> int:
        return len(self._decode_all())

    def read_positions(self, positions: Sequence[int]) -> Tensor:
        """The frames at 0-based ``positions`` among all decoded frames (by pts; decodes the whole video once)."""
        _check_positions(positions, self.path)
        frames = self._decode_all()
        return _pyav_rgb([frames[min(position, len(frames) - 1)] for position in positions])

    def read_window(self, start_pts: int, end_pts: int, offsets: Sequence[int]) -> Tensor:
        """The frames at ``offsets`` (past the end: the last) among the kept frames of [start_pts, end_pts].

        Seeks backward to the keyframe at or before ``start_pts - WINDOW_SEEK_MARGIN`` and decodes; the kept
        frames are those whose pts lies in the window plus the first frame decoded past it, one per pts, in
        pts order. Raises VideoDecodeError when no frame lies in or past the window.
        """
        kept: dict[int, av.VideoFrame] = {}
        for frame in self._decode_from(max(start_pts - WINDOW_SEEK_MARGIN, 0)):
            if frame.pts >= start_pts:
                kept[frame.pts] = frame
                if frame.pts > end_pts:
                    break
        if not kept:
            raise VideoDecodeError(self.path, f"no frame at or after pts {start_pts} (window {start_pts}-{end_pts})")
        frames = [kept[pts] for pts in sorted(kept)]
        return _pyav_rgb([frames[min(offset, len(frames) - 1)] for offset in offsets])

    def _decode_all(self) -> list[av.VideoFrame]:
        """Every frame of the video, one per pts, in pts order (decoded once per reader)."""
        if self._all_frames is None:
            frames = {frame.pts: frame for frame in self._decode_from(None)}
            if not frames:
                raise VideoDecodeError(self.path, "no frames decoded")
            self._all_frames = [frames[pts] for pts in sorted(frames)]
        return self._all_frames

    def _decode_run(self, targets: list[float], first: int) -> list[av.VideoFrame]:
        """Seek before ``targets[first]`` and decode forward: the frames shown at ``targets[first:]``, in order.

        Stops after the last target, or early (returning fewer frames) where the index shows a keyframe
        between the decoded frames and the next target, so that the caller seeks ahead instead.
        """
        tolerance = _time_tolerance(self.fps, float(self._time_base)) / self._time_base  # in pts units
        seek_ahead = _SEEK_AHEAD_MIN_SEC / self._time_base
        back_off = 0.0
        while True:  # seek to a keyframe at or before the first target
            seek_pts = targets[first] - back_off / self._time_base
            decoded = self._decode_from(seek_pts if seek_pts > self._origin else None)
            head = next(decoded, None)
            if seek_pts <= self._origin or (head is not None and head.pts <= targets[first] + tolerance):
                break
            back_off = max(_SEEK_BACKOFF_SEC, 2 * back_off)
        if head is None:
            raise VideoDecodeError(self.path, "no frames decoded")
        shown: list[av.VideoFrame] = []
        remaining = len(targets) - first
        previous = head  # a target before the first frame gets the first frame
        next_keyframe = None  # indexed keyframe before the next target, once this run has shown a frame
        for frame in _chain(head, decoded):
            while len(shown) < remaining and targets[first + len(shown)] + tolerance < frame.pts:
                shown.append(previous)
                if len(shown) < remaining:
                    next_keyframe = self._keyframe_before(targets[first + len(shown)])
            if len(shown) == remaining or (next_keyframe is not None and next_keyframe > frame.pts + seek_ahead):
                return shown
            previous = frame
        return shown + [previous] * (remaining - len(shown))  # past the end: the last frame

    def _decode_from(self, seek_pts: float | None) -> Iterator[av.VideoFrame]:
        """Frames in presentation order from the keyframe at or before ``seek_pts`` (None: the first frame)."""
        try:
            if seek_pts is not None and self._seekable:
                try:
                    self._container.seek(math.floor(seek_pts), stream=self._stream, backward=True, any_frame=False)
                except av.EOFError:  # nothing at or before seek_pts (or no frames at all): the caller seeks back
                    return
                except av.FFmpegError as error:
                    log.debug("%s: cannot seek (%s); decoding from the start", self.path, _ffmpeg_reason(error))
                    self._seekable = False
            if (seek_pts is None or not self._seekable) and not self._fresh:
                # reopening is the one sure way back to the first frame (seeking MPEG-TS is approximate)
                self._container.close()
                self._open()
            self._fresh = False
            previous_pts = None
            for frame in self._container.decode(self._stream):
                if frame.pts is None:  # some raw streams carry no timestamps: continue from the last one
                    frame.pts = self._origin if previous_pts is None else previous_pts + round(
                        1 / (self.fps * self._time_base))
                previous_pts = frame.pts
                self.frames_decoded += 1
                yield frame
        except av.FFmpegError as error:
            raise VideoDecodeError(self.path, _ffmpeg_reason(error)) from error

    def _keyframe_before(self, target: float) -> float | None:
        """Timestamp of the last indexed keyframe at or before ``target`` (pts), None without an index."""
        entries = self._stream.index_entries
        position = entries.search_timestamp(math.floor(target), backward=True) if len(entries) else -1
        return entries[position].timestamp if position >= 0 else None


def _chain(head: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield head
    yield from rest


def _pyav_rgb(frames: list[av.VideoFrame]) -> Tensor:
    """Upright RGB uint8 (len, H, W, 3) of PyAV frames (repeats allowed), converting each distinct frame once."""
    arrays: dict[int, np.ndarray] = {}
    for frame in frames:
        if id(frame) not in arrays:
            arrays[id(frame)] = frame.to_ndarray(format="rgb24")
    return _upright([arrays[id(frame)] for frame in frames], _clockwise(frames[0].rotation))


def _ffmpeg_reason(error: av.FFmpegError) -> str:
    """FFmpeg's message without the file name PyAV appends (the caller names the file)."""
    return getattr(error, "strerror", None) or str(error)


def _natural_key(name: str) -> list[int | str]:
    """``frame_2.jpg`` before ``frame_10.jpg``; zero-padded names sort as they read."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class _FrameFolderReader(VideoReader):
    """A folder of per-frame images, frame k shown at ``k / fps`` seconds."""

    def __init__(self, path: Path, fps: float):
        super().__init__(path)
        if not fps > 0:
            raise ValueError(f"folder_fps must be > 0, got {fps}")
        self._fps = float(fps)
        names = [entry.name for entry in os.scandir(path)
                 if entry.is_file() and entry.name.lower().endswith(FRAME_SUFFIXES)]
        if not names:
            raise VideoDecodeError(path, f"a folder without frame images ({', '.join(FRAME_SUFFIXES)})")
        self._files = [path / name for name in sorted(names, key=_natural_key)]
        self._info: VideoInfo | None = None

    @property
    def info(self) -> VideoInfo:
        if self._info is None:
            height, width, _ = self._decode(0).shape
            count = len(self._files)
            self._info = VideoInfo(fps=self._fps, num_frames=count, duration=count / self._fps, width=width,
                                   height=height)
        return self._info

    @property
    def fps(self) -> float:
        return self._fps

    def frame_count(self) -> int:
        return len(self._files)

    def _frames_at(self, times: list[float]) -> Tensor:
        last = len(self._files) - 1
        indices = [min(last, math.floor((t + _MIN_TOLERANCE_SEC) * self._fps)) for t in times]
        images = {index: self._decode(index) for index in dict.fromkeys(indices)}
        shapes = {image.shape for image in images.values()}
        if len(shapes) > 1:
            raise VideoDecodeError(self.path, f"frame images of different sizes (H, W, C): {sorted(shapes)}")
        return torch.stack([images[index] for index in indices])

    def _decode(self, index: int) -> Tensor:
        """Frame ``index`` as uint8 (H, W, 3)."""
        file = self._files[index]
        try:
            with Image.open(file) as image:
                rgb = ImageOps.exif_transpose(image).convert("RGB")
        except OSError as error:  # PIL's UnidentifiedImageError and truncated-file errors are OSErrors
            raise VideoDecodeError(file, str(error)) from error
        self.frames_decoded += 1
        return torch.from_numpy(np.asarray(rgb).copy())


class _DecordReader(VideoReader):
    """decord: frames read by index, chosen from decord's frame timestamps.

    Rotation is read with PyAV (decord ignores it), which opens the file a second time.
    """

    def __init__(self, path: Path, threads: int):
        super().__init__(path)
        import decord
        from decord._ffi.base import DECORDError

        try:
            self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
        except DECORDError as error:
            raise VideoDecodeError(path, str(error)) from error
        if len(self._reader) == 0:
            raise VideoDecodeError(path, "no frames decoded")
        self._starts = self._reader.get_frame_timestamp(np.arange(len(self._reader)))[:, 0].tolist()  # seconds
        self._rotation = _pyav_rotation(path)  # decord does not apply rotation metadata
        self._info: VideoInfo | None = None

    @property
    def fps(self) -> float:
        return float(self._reader.get_avg_fps())

    @property
    def info(self) -> VideoInfo:
        if self._info is None:
            height, width = self._reader[0].shape[:2]
            if self._rotation in (90, 270):
                height, width = width, height
            count, fps = len(self._reader), self.fps
            self._info = VideoInfo(fps=fps, num_frames=count, duration=count / fps, width=width, height=height,
                                   rotation=self._rotation)
        return self._info

    def _frames_at(self, times: list[float]) -> Tensor:
        origin, tolerance = self._starts[0], _time_tolerance(self.fps)
        indices = [max(0, bisect.bisect_right(self._starts, origin + t + tolerance) - 1) for t in times]
        unique = list(dict.fromkeys(indices))
        batch = self._reader.get_batch(unique).asnumpy()  # (len(unique), H, W, 3)
        self.frames_decoded += len(unique)
        position = {index: i for i, index in enumerate(unique)}
        return _upright([batch[position[index]] for index in indices], self._rotation)


class _TorchCodecReader(VideoReader):
    """torchcodec: ``get_frames_played_at`` implements the same rule (the frame whose play interval holds t)."""

    def __init__(self, path: Path, threads: int):
        super().__init__(path)
        from torchcodec.decoders import VideoDecoder

        try:
            self._decoder = VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=threads,
                                         seek_mode="exact")
        except (RuntimeError, ValueError) as error:
            raise VideoDecodeError(path, str(error)) from error
        metadata = self._decoder.metadata
        if not metadata.num_frames:
            raise VideoDecodeError(path, "no frames decoded")
        self._metadata = metadata
        if hasattr(metadata, "rotation"):  # torchcodec >= 0.11 applies rotation itself
            self._rotation, self._to_apply = _clockwise(metadata.rotation or 0), 0
        else:
            self._rotation = self._to_apply = _pyav_rotation(path)
        self._info: VideoInfo | None = None

    @property
    def fps(self) -> float:
        return float(self._metadata.average_fps)

    @property
    def info(self) -> VideoInfo:
        if self._info is None:
            height, width = self._frames_at([0.0]).shape[1:3]
            metadata = self._metadata
            self._info = VideoInfo(fps=self.fps, num_frames=metadata.num_frames,
                                   duration=float(metadata.duration_seconds), width=width, height=height,
                                   rotation=self._rotation)
        return self._info

    def _frames_at(self, times: list[float]) -> Tensor:
        begin, end = self._metadata.begin_stream_seconds, self._metadata.end_stream_seconds
        tolerance = _time_tolerance(self.fps)
        # clamp into [first frame, end of the last frame): past the end is the last frame
        seconds = [min(begin + t + tolerance, end - _MIN_TOLERANCE_SEC) for t in times]
        data = self._decoder.get_frames_played_at(seconds=seconds).data  # (len, H, W, 3)
        self.frames_decoded += len(times)
        if not self._to_apply:
            return data
        return _upright(list(data.numpy()), self._to_apply)
