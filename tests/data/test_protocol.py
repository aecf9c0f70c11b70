"""The test views of generated videos equal views computed straight from the released protocol's description.

The reference below is written from the description alone (``released-protocol.md``), slowly and plainly in
float64: decode every frame with PyAV, choose frames by the clip rule or the segment rule, normalise, resize
with ``interpolate`` and crop. It shares no code with the pipeline, which must agree to float rounding.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from motionformer.data.datasets import VideoClipDataset, VideoEntry
from motionformer.data.sampling import SegmentSampler, UniformClipSampler
from motionformer.data.transforms import test_transform

CROP = 32
MEAN, STD = (0.45, 0.5, 0.55), (0.22, 0.25, 0.28)
# float32 rounding: the pipeline computes the resize's source coordinates in float32 (an error of about 1e-6 of
# a pixel times neighbours up to 5 apart); a wrong frame, a shifted crop, antialiasing or resizing in uint8
# differ by 1e-2 or more.
ATOL = 1e-4


def _noise_video(path: Path, num_frames: int, fps: int, codec: str, width: int = 62, height: int = 46) -> Path:
    """Smooth random colour frames (so that resizing matters), encoded at ``fps``."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(num_frames):
            coarse = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3)).astype(np.uint8)
            image = np.kron(coarse, np.ones((4, 4, 1), np.uint8))[:height, :width]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode())
    return path


def _decode_everything(path: Path) -> tuple[dict[int, np.ndarray], float, int, int | None]:
    """Every frame by pts, and the stream's average rate, stated frame count and stated duration."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = {frame.pts: frame.to_ndarray(format="rgb24") for frame in container.decode(stream)}
        return frames, float(stream.average_rate), stream.frames, stream.duration


def _linspace(first: float, last: float, count: int) -> list[float]:
    return [first + (last - first) * i / (count - 1) for i in range(count)]


def _reference_clip(path: Path, num_frames: int, rate: int, clip: int, num_clips: int) -> list[np.ndarray]:
    """Kinetics test clip ``clip`` of ``num_clips``, by the description's steps 1-4."""
    frames, fps, stated_frames, duration = _decode_everything(path)
    all_pts = sorted(frames)
    length = rate * num_frames * fps / 30
    if duration:
        start = max(stated_frames - length, 0) * clip / num_clips
        end = start + length - 1
        low, high = int(start * duration / stated_frames), int(end * duration / stated_frames)
        kept = [pts for pts in all_pts if low <= pts <= high]
        kept += [pts for pts in all_pts if pts > high][:1]
        chosen = [min(max(x, 0), len(kept) - 1) for x in _linspace(0, length - 1, num_frames)]
    else:
        kept = all_pts
        start = max(len(kept) - length, 0) * clip / num_clips
        chosen = [min(max(x, 0), len(kept) - 1) for x in _linspace(start, start + length - 1, num_frames)]
    return [frames[kept[int(x)]] for x in chosen]


def _reference_segments(path: Path, num_frames: int) -> list[np.ndarray]:
    """SSv2 test frames: the middle of each of ``num_frames`` segments over every decoded frame."""
    frames, *_ = _decode_everything(path)
    ordered = [frames[pts] for pts in sorted(frames)]
    segment = (len(ordered) - 1) / num_frames
    middles = [(round(segment * i) + round(segment * (i + 1))) // 2 for i in range(num_frames)]
    return [ordered[i] for i in middles]


def _reference_views(frames: list[np.ndarray], channel_order: str) -> torch.Tensor:
    """Spatial steps 1-3 in float64: (3 crops, 3, T, CROP, CROP)."""
    video = torch.from_numpy(np.stack(frames)).double()  # (T, H, W, 3)
    if channel_order == "bgr":
        video = video[..., [2, 1, 0]]
    video = (video / 255 - torch.tensor(MEAN, dtype=torch.float64)) / torch.tensor(STD, dtype=torch.float64)
    video = video.permute(0, 3, 1, 2)  # (T, 3, H, W)
    height, width = video.shape[-2:]
    if min(height, width) != CROP:
        short, long = min(height, width), max(height, width)
        size = (CROP, math.floor(long / short * CROP)) if height <= width else (math.floor(long / short * CROP), CROP)
        video = torch.nn.functional.interpolate(video, size=size, mode="bilinear", align_corners=False)
    height, width = video.shape[-2:]
    top, left = math.ceil((height - CROP) / 2), math.ceil((width - CROP) / 2)
    if height > width:
        corners = [(0, left), (top, left), (height - CROP, left)]
    else:
        corners = [(top, 0), (top, left), (top, width - CROP)]
    crops = [video[:, :, y:y + CROP, x:x + CROP].permute(1, 0, 2, 3) for y, x in corners]  # each (3, T, CROP, CROP)
    return torch.stack(crops)


@pytest.mark.parametrize(("fps", "suffix", "channel_order"), [
    (30, "mp4", "rgb"),
    (25, "mp4", "bgr"),  # L = 26.67 frames: a stride of 3.8
    (24, "mkv", "rgb"),  # no stated duration: every frame decoded
])
def test_clip_views_follow_the_protocol(tmp_path, fps, suffix, channel_order):
    codec = "libx264"
    path = _noise_video(tmp_path / f"video.{suffix}", 75, fps, codec)
    sampler = UniformClipSampler(8, 4, num_clips=3)
    transform = test_transform(CROP, num_crops=3, mean=MEAN, std=STD, channel_order=channel_order)
    dataset = VideoClipDataset([VideoEntry(path, label=0)], sampler, transform, training=False)
    for clip in range(3):
        expected = _reference_views(_reference_clip(path, 8, 4, clip, 3), channel_order)
        torch.testing.assert_close(dataset[clip]["video"].double(), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("portrait", [False, True])
def test_segment_views_follow_the_protocol(tmp_path, portrait):
    size = (46, 62) if portrait else (62, 46)
    path = _noise_video(tmp_path / "ssv2.webm", 37, 12, "libvpx-vp9", *size)
    transform = test_transform(CROP, num_crops=3, mean=MEAN, std=STD, channel_order="bgr")
    dataset = VideoClipDataset([VideoEntry(path, label=0)], SegmentSampler(8), transform, training=False)
    expected = _reference_views(_reference_segments(path, 8), "bgr")
    torch.testing.assert_close(dataset[0]["video"].double(), expected, rtol=0, atol=ATOL)
