"""Small synthetic videos whose frames say which frame they are, even after lossy compression and rotation.

Each frame is a 4 x 4 grid of black or white cells: the top-left cell is always white and the bottom-right
always black (so a frame turned the wrong way is caught), the other 14 cells spell the frame index in binary.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

GRID = 4
INDEX_CELLS = [(row, col) for row in range(GRID) for col in range(GRID)][1:-1]  # all but the two marker cells
MAX_INDEX = 2 ** len(INDEX_CELLS) - 1
# Near-lossless settings keep the cells black and white; no scene-cut keyframes, so GOPs are exactly `gop`.
ENCODER_OPTIONS = {
    "libx264": {"crf": "4", "preset": "veryfast", "x264-params": "scenecut=0"},
    "mpeg4": {"qscale": "2", "sc_threshold": "1000000000"},
    "libvpx-vp9": {"lossless": "1", "deadline": "realtime", "cpu-used": "8"},
    "ffv1": {},
}
VFR_TIME_BASE = Fraction(1, 1000)


def _cell_bounds(length: int) -> list[tuple[int, int]]:
    edges = [round(i * length / GRID) for i in range(GRID + 1)]
    return list(itertools.pairwise(edges))


def index_frame(index: int, width: int, height: int, color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """The upright frame that encodes ``index``: uint8 (height, width, 3), its bright cells in ``color``."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index must be in [0, {MAX_INDEX}], got {index}")
    white = {(0, 0)} | {cell for bit, cell in enumerate(INDEX_CELLS) if index >> bit & 1}
    image = np.zeros((height, width, 3), np.uint8)
    rows, cols = _cell_bounds(height), _cell_bounds(width)
    for row, col in white:
        image[rows[row][0]:rows[row][1], cols[col][0]:cols[col][1]] = color
    return image


def frame_index(frame: torch.Tensor) -> int:
    """The index a decoded (H, W, 3) frame encodes; AssertionError if its orientation markers are wrong."""
    gray = frame.float().mean(-1)
    rows, cols = _cell_bounds(gray.shape[0]), _cell_bounds(gray.shape[1])

    def bright(row: int, col: int) -> bool:
        (top, bottom), (left, right) = rows[row], cols[col]
        inset_y, inset_x = (bottom - top) // 4, (right - left) // 4  # away from edges blurred by compression
        return bool(gray[top + inset_y:bottom - inset_y, left + inset_x:right - inset_x].mean() > 128)

    assert bright(0, 0) and not bright(GRID - 1, GRID - 1), "orientation markers wrong: frame is not upright"
    return sum(1 << bit for bit, cell in enumerate(INDEX_CELLS) if bright(*cell))


def frame_indices(clip: torch.Tensor) -> list[int]:
    """Indices encoded by each frame of a (T, H, W, 3) clip."""
    return [frame_index(frame) for frame in clip]


def _display_matrix(clockwise_degrees: int) -> list[int]:
    """FFmpeg/ISO-BMFF display matrix (16.16 fixed point, w in 2.30) turning the picture clockwise.

    Written from the matrix definition, not through PyAV's helper, so that the test pins the direction: for
    90 degrees it is the matrix MP4 muxers write for a phone's ``rotate=90`` (a=0, b=1, c=-1, d=0).
    """
    radians = np.deg2rad(clockwise_degrees)
    cos, sin = round(np.cos(radians)), round(np.sin(radians))
    return [cos << 16, sin << 16, 0, -sin << 16, cos << 16, 0, 0, 0, 1 << 30]


def make_video(path: Path, num_frames: int, size: tuple[int, int] = (64, 48), fps: int = 30,
               codec: str = "libx264", pix_fmt: str = "yuv420p", gop: int = 12, rotation: int | None = None,
               vfr_times: Sequence[float] | None = None, color: tuple[int, int, int] = (255, 255, 255)) -> Path:
    """Encode index frames 0, 1, ... ``num_frames - 1`` into ``path`` (the container follows its suffix).

    ``size`` is (width, height) of the upright picture. With ``rotation`` (clockwise degrees, a multiple of
    90) the frames are stored turned the other way and the container's display matrix turns them back.
    ``vfr_times`` gives each frame's presentation time in seconds (millisecond time base) instead of
    ``k / fps``.
    """
    width, height = size
    quarter_turns = (rotation or 0) // 90
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=ENCODER_OPTIONS.get(codec, {}))
        stream.width, stream.height = (height, width) if quarter_turns % 2 else (width, height)
        stream.pix_fmt = pix_fmt
        stream.codec_context.gop_size = gop
        if vfr_times is not None:
            stream.codec_context.time_base = VFR_TIME_BASE
        if rotation:
            stream.set_display_matrix(_display_matrix(rotation))
        for k in range(num_frames):
            stored = np.ascontiguousarray(np.rot90(index_frame(k, width, height, color), quarter_turns))
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            if vfr_times is not None:
                frame.pts, frame.time_base = round(vfr_times[k] / VFR_TIME_BASE), VFR_TIME_BASE
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_audio_only(path: Path, seconds: float = 0.5) -> Path:
    """An AAC file without a video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44_100, layout="mono")
        samples = 1024
        for k in range(round(seconds * 44_100 / samples)):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44_100, k * samples
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
