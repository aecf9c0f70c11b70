"""Clip samplers: the released models' frame indices, computed by hand, on generated videos and frame folders.

Every frame of a generated video encodes its own index (see conftest.py), so each test checks which frames came
back. The expected lists are worked out in the comments from the protocol's rules (see ``motionformer.data.sampling``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from motionformer.data import open_video
from motionformer.data.datasets import read_annotations
from motionformer.data.sampling import (
    RandomClipSampler,
    Segment,
    SegmentSampler,
    UniformClipSampler,
    clip_length,
    clip_positions,
    clip_start,
    segment_positions,
)
from tests.data.conftest import frame_indices, index_frame, make_video

SIZE = (32, 32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("sampling")


def _frame_folder(path: Path, num_frames: int, name: str) -> Path:
    """A folder of index-frame JPEGs: file ``name.format(k + 1)`` holds frame k."""
    path.mkdir()
    for k in range(num_frames):
        Image.fromarray(index_frame(k, *SIZE)).save(path / name.format(k + 1), quality=95)
    return path


def _read(path: Path, sampler, **kwargs) -> list[int]:
    with open_video(path) as video:
        return frame_indices(sampler(video, **kwargs))


# ----------------------------------------------------------------------------------------------------------
# Kinetics-style clips of video files: 16 frames at rate 4, clip k of 10


# 30 fps: L = 4 * 16 * 30 / 30 = 64 frames, Δ = 300 - 64 = 236, clip k starts at 23.6 k. The header states
# D = 153600 pts for N = 300 frames (512 a frame). Clip 4: start 94.4, end 157.4, window [48332, 80588]: frames 95
# (pts 48640) to 157, and 158 the first past the end; offsets trunc(linspace(0, 63, 16)) = 0, 4, 8, 12, 16, 21, ...
# 25 fps: L = 53.33, Δ = 246.67, clip 4 starts at 98.67 (window from pts 50517: frame 99); offsets
# trunc(linspace(0, 52.33, 16)) = 0, 3, 6, 10, 13, 17, 20, 24, 27, 31, 34, 38, 41, 45, 48, 52.
THIRTY_OFFSETS = [0, 4, 8, 12, 16, 21, 25, 29, 33, 37, 42, 46, 50, 54, 58, 63]
TWENTY_FIVE_OFFSETS = [0, 3, 6, 10, 13, 17, 20, 24, 27, 31, 34, 38, 41, 45, 48, 52]


@pytest.mark.parametrize(("fps", "clip_index", "first", "offsets"), [
    (30, 0, 0, THIRTY_OFFSETS),
    (30, 4, 95, THIRTY_OFFSETS),
    (30, 9, 213, THIRTY_OFFSETS),  # start 212.4: the last clip ends at 276, not at the video's end
    (25, 0, 0, TWENTY_FIVE_OFFSETS),
    (25, 4, 99, TWENTY_FIVE_OFFSETS),
    (25, 9, 222, TWENTY_FIVE_OFFSETS),  # start 222.0 exactly: pts 113664 is frame 222's
])
def test_test_clips_of_video_files(folder, fps, clip_index, first, offsets):
    path = folder / f"k{fps}.mp4"
    if not path.exists():
        make_video(path, 300, size=SIZE, fps=fps, gop=30)
    indices = _read(path, UniformClipSampler(16, 4, 10), clip_index=clip_index)
    assert indices == [first + offset for offset in offsets]


def test_unknown_stream_duration_decodes_the_whole_video(folder):
    """Matroska states no stream duration: M = 100 decoded frames, L = 53.33 at 25 fps, Δ = 46.67; clip 4 is
    trunc(linspace(18.67, 71, 16)) = 18.67, 22.16, 25.64, 29.13, 32.62, 36.11, 39.6, 43.09, ..."""
    path = make_video(folder / "unknown.mkv", 100, size=SIZE, fps=25)
    with open_video(path) as video:
        assert video.header.duration_pts is None
    assert _read(path, UniformClipSampler(16, 4, 10), clip_index=4) == [
        18, 22, 25, 29, 32, 36, 39, 43, 46, 50, 53, 57, 60, 64, 67, 71]
    assert _read(path, UniformClipSampler(16, 4, 10), clip_index=0)[:4] == [0, 3, 6, 10]


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])  # duration stated (pts window) and unknown (whole decode)
def test_clip_longer_than_the_video(folder, suffix):
    """40 frames at 30 fps, L = 64: Δ = 0, every clip starts at 0; offsets past frame 39 give frame 39."""
    path = make_video(folder / f"short.{suffix}", 40, size=SIZE, fps=30)
    expected = [0, 4, 8, 12, 16, 21, 25, 29, 33, 37, 39, 39, 39, 39, 39, 39]
    assert _read(path, UniformClipSampler(16, 4, 10), clip_index=0) == expected
    assert _read(path, UniformClipSampler(16, 4, 10), clip_index=9) == expected


def test_random_clips_span_the_same_time_from_a_random_start(folder):
    path = make_video(folder / "random.mp4", 120, size=SIZE, fps=30, gop=30)
    sampler = RandomClipSampler(8, 2)  # L = 16 frames: offsets trunc(linspace(0, 15, 8)) = 0, 2, 4, 6, 8, 10, 12, 15
    firsts = set()
    for seed in range(12):
        indices = _read(path, sampler, rng=np.random.default_rng(seed))
        first = indices[0]
        assert indices == [first + offset for offset in (0, 2, 4, 6, 8, 10, 12, 15)] and 0 <= first <= 105
        firsts.add(first)
    assert len(firsts) > 6
    assert _read(path, sampler, rng=np.random.default_rng(3)) == _read(path, sampler, rng=np.random.default_rng(3))


def test_linspace_is_float32_like_the_released_code():
    """At 23.976 fps, 16 frames at rate 8 over 206 frames, clip 6 of 10: float64 would take frame 123 at place 9."""
    length = clip_length(16, 8, 24000 / 1001)
    start = clip_start(206, length, 6, 10)
    assert clip_positions(start, length, 16, 206)[9] == 122


def test_clip_start_and_length():
    assert clip_length(16, 4, 25.0) == pytest.approx(53.333333)
    assert clip_start(300, 64.0, 4, 10) == pytest.approx(94.4)
    assert clip_start(40, 64.0, 9, 10) == 0.0
    starts = [clip_start(300, 64.0, rng=np.random.default_rng(seed)) for seed in range(50)]
    assert 0 <= min(starts) < 30 and 206 < max(starts) <= 236


# ----------------------------------------------------------------------------------------------------------
# SSv2 segments


# 30 frames: seg = 29 / 16 = 1.8125; boundaries round(1.8125 i) = 0, 2, 4, 5, 7, 9, 11, 13, 14 (14.5 to even), 16,
# 18, 20, 22, 24, 25, 27, 29; middles (s + e) // 2.
SSV2_30 = [1, 3, 4, 6, 8, 10, 12, 13, 15, 17, 19, 21, 23, 24, 26, 28]
# 47 frames: seg = 2.875; boundaries 0, 3, 6, 9, 12 (11.5 to even), 14, 17, 20, 23, 26, 29, 32, 34 (34.5 to even),
# 37, 40, 43, 46.
SSV2_47 = [1, 4, 7, 10, 13, 15, 18, 21, 24, 27, 30, 33, 35, 38, 41, 44]


@pytest.mark.parametrize(("num_frames", "expected"), [(30, SSV2_30), (47, SSV2_47)])
def test_ssv2_frame_folders(folder, num_frames, expected):
    path = _frame_folder(folder / f"{num_frames}", num_frames, f"{num_frames}_{{:06d}}.jpg")
    assert _read(path, SegmentSampler(16)) == expected


def test_ssv2_webm_decodes_every_frame_then_takes_segments(folder):
    path = make_video(folder / "ssv2.webm", 47, size=SIZE, codec="libvpx-vp9", fps=12)
    assert _read(path, SegmentSampler(16)) == SSV2_47


def test_ssv2_training_takes_a_random_frame_of_each_segment():
    bounds = [0, 2, 4, 5, 7, 9, 11, 13, 14, 16, 18, 20, 22, 24, 25, 27, 29]
    seen = set()
    for seed in range(200):
        positions = segment_positions(30, 16, np.random.default_rng(seed))
        assert all(bounds[i] <= p <= bounds[i + 1] for i, p in enumerate(positions))
        seen.add(positions[0])
    assert seen == {0, 1, 2}  # both ends of segment 0 are drawn


# ----------------------------------------------------------------------------------------------------------
# Epic-Kitchens segments


EPIC_HEADER = "narration_id,participant_id,video_id,start_timestamp,stop_timestamp,verb_class,noun_class"


@pytest.mark.parametrize(("video_id", "start", "stop", "expected_numbers"), [
    # 60 fps: frames 60 to 240, n = 180, L = 128, Δ = 52; clip 5 starts at 26 + 1 = 27:
    # trunc(linspace(27, 154, 16)) = 27, 35, 43, 52, 60, 69, 77, 86, 94, 103, 111, 120, 128, 137, 145, 154
    ("P01_01", "00:00:01.00", "00:00:04.00", [87, 95, 103, 112, 120, 129, 137, 146, 154, 163, 171, 180, 188, 197, 205,
                                              214]),
    # 50 fps (three digits after the underscore): frames 100 to 250, n = 150, L = 106.67, Δ = 43.33; clip 5 starts
    # at 21.67 + 1: trunc(linspace(22.67, 128.33, 16)) = 22, 29, 36, 43, 50, 57, 64, 71, 79, 86, 93, 100, 107, 114,
    # 121, 128
    ("P01_101", "00:00:02.00", "00:00:05.00", [122, 129, 136, 143, 150, 157, 164, 171, 179, 186, 193, 200, 207, 214,
                                               221, 228]),
])
def test_epic_segments_of_frame_folders(folder, video_id, start, stop, expected_numbers):
    frames = folder / "epic" / "P01" / "rgb_frames"
    frames.mkdir(parents=True, exist_ok=True)
    _frame_folder(frames / video_id, 240, "frame_{:010d}.jpg")
    listing = folder / f"{video_id}.csv"
    listing.write_text(f"{EPIC_HEADER}\nP01_x,P01,{video_id},{start},{stop},0,0\n")
    (entry,) = read_annotations(listing, folder / "epic", frames=True).entries
    indices = _read(entry.path, UniformClipSampler(16, 4, 10), segment=entry.segment, clip_index=5)
    assert indices == [number - 1 for number in expected_numbers]  # frame_0000000001.jpg holds frame 0


def test_epic_segment_of_a_video_file(folder):
    """The same rule in a video file, frame number n read at position n - 1 (60 fps, 8 frames at rate 2)."""
    path = make_video(folder / "P02_01.mp4", 90, size=SIZE, fps=60, gop=20)
    # frames 20 to 80, n = 60, L = 32, Δ = 28; clip 0 starts at 1: trunc(linspace(1, 32, 8)) = 1, 5, 9, 14, ...
    indices = _read(path, UniformClipSampler(8, 2, 2), segment=Segment(20, 80, 60.0), clip_index=0)
    assert indices == [20 + index - 1 for index in (1, 5, 9, 14, 18, 23, 27, 32)]


# ----------------------------------------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize("sampler", [RandomClipSampler(4, 2), SegmentSampler(4, training=True)])
def test_training_samplers_need_an_rng(folder, sampler):
    path = make_video(folder / "rng.mp4", 20, size=SIZE)
    with pytest.raises(ValueError, match="rng"), open_video(path) as video:
        sampler(video)


@pytest.mark.parametrize(("make", "name"), [
    (lambda: RandomClipSampler(0, 2), "num_frames"),
    (lambda: RandomClipSampler(4, 0), "sampling_rate"),
    (lambda: UniformClipSampler(4, 2, num_clips=0), "num_clips"),
    (lambda: UniformClipSampler(4, 2, target_fps=0.0), "target_fps"),
    (lambda: SegmentSampler(2.5), "num_frames"),
])
def test_bad_constructor_arguments_name_the_value(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_bad_call_arguments_name_the_value(folder):
    path = make_video(folder / "calls.mp4", 20, size=SIZE)
    with open_video(path) as video:
        with pytest.raises(ValueError, match="clip_index"):
            UniformClipSampler(4, 2, num_clips=3)(video, clip_index=3)
        with pytest.raises(ValueError, match="no frames"):
            UniformClipSampler(4, 2)(video, segment=Segment(5, 5, 60.0))
        with pytest.raises(ValueError, match="whole videos"):
            SegmentSampler(4)(video, segment=Segment(0, 10, 60.0))
