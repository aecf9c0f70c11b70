"""Decoding: the right frames by timestamp, seeking, rotation, pixel formats, padding, frame folders, errors.

Every video is generated here (see conftest.py); each frame encodes its own index, so a test checks which
frame came back, not only the shape.
"""

from __future__ import annotations

import importlib.util

import av
import numpy as np
import pytest
import torch
from PIL import Image

from motionformer.data import VideoDecodeError, VideoInfo, open_video, probe, read_clip, read_frames
from motionformer.data.decoding import StreamHeader
from tests.data.conftest import frame_index, frame_indices, index_frame, make_audio_only, make_video

FPS = 30
CODECS = [("libx264", "mp4"), ("mpeg4", "avi"), ("libvpx-vp9", "webm"), ("libx264", "ts")]  # TS: inexact seeks


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def h264(video_dir):
    """60 frames, a keyframe every 12, B-frames."""
    return make_video(video_dir / "h264.mp4", 60, gop=12)


@pytest.fixture(scope="module")
def long_gop(video_dir):
    """300 frames (10 s), a keyframe every 100 frames."""
    return make_video(video_dir / "long_gop.mp4", 300, size=(32, 32), gop=100)


def _installed(backend):
    return backend == "pyav" or importlib.util.find_spec(backend) is not None


# ----------------------------------------------------------------------------------------------------------
# Which frames


@pytest.mark.parametrize(("codec", "suffix"), CODECS)
@pytest.mark.parametrize("sampling_rate", [1, 4])
def test_clip_frames(video_dir, codec, suffix, sampling_rate):
    path = make_video(video_dir / f"clip_{codec}.{suffix}", 60, codec=codec, gop=12)
    clip = read_clip(path, start_sec=20 / FPS, num_frames=8, sampling_rate=sampling_rate)
    assert clip.shape == (8, 48, 64, 3) and clip.dtype == torch.uint8 and clip.is_contiguous()
    assert frame_indices(clip) == [20 + i * sampling_rate for i in range(8)]


@pytest.mark.parametrize("suffix", ["mp4", "ts"])
def test_every_frame_by_time(video_dir, suffix):
    """One reader, one seek per read: frame k at k / fps and halfway to the next, across keyframes and B-frames."""
    path = make_video(video_dir / f"every_frame.{suffix}", 30, gop=8)
    with open_video(path) as video:
        for k in range(30):
            assert frame_indices(video.read_frames([k / FPS, (k + 0.5) / FPS])) == [k, k], k


def test_times_in_any_order(h264):
    times = [1.0, 0.1, 1.0, 0.5, 0.0, 1.9]
    assert frame_indices(read_frames(h264, times)) == [30, 3, 30, 15, 0, 57]
    assert read_frames(h264, []).shape == (0, 48, 64, 3)


def test_threads_do_not_change_frames(h264):
    single = read_clip(h264, 0.7, 8, 2, threads=1)
    assert torch.equal(single, read_clip(h264, 0.7, 8, 2, threads=0))
    assert torch.equal(single, read_clip(h264, 0.7, 8, 2, threads=3))


def test_probe(h264):
    assert probe(h264) == VideoInfo(fps=30.0, num_frames=60, duration=pytest.approx(2.0), width=64, height=48,
                                    rotation=0)


# ----------------------------------------------------------------------------------------------------------
# Seeking: only what the clip needs is decoded


def test_clip_near_the_end_decodes_far_less_than_the_file(long_gop):
    with open_video(long_gop) as video:
        clip = video.read_clip(start_sec=260 / FPS, num_frames=8, sampling_rate=4)
        near_end = video.frames_decoded
    assert frame_indices(clip) == list(range(260, 292, 4))
    # from the keyframe at 200 to frame 288, a few frames beyond (decoder threads), of 300
    assert 89 <= near_end < 120


def test_far_apart_times_seek_ahead(long_gop):
    """Segment-style sampling over a long video seeks past whole GOPs rather than decoding through them."""
    with open_video(long_gop) as video:
        frames = video.read_frames([5 / FPS, 280 / FPS])
        decoded = video.frames_decoded
    assert frame_indices(frames) == [5, 280]
    assert decoded < 100  # 0..6 and 200..281 (+ decoder threads), not 0..281


def test_reader_reuse_goes_back(long_gop):
    with open_video(long_gop) as video:
        late = video.read_clip(9.0, 2)
        early = video.read_clip(0.0, 2)
    assert frame_indices(late) == [270, 271] and frame_indices(early) == [0, 1]


# ----------------------------------------------------------------------------------------------------------
# Variable frame rate, past the end, arguments


VFR_TIMES = [0.0, 0.01, 0.02, 0.1, 0.2, 0.21, 0.5, 0.51, 0.52, 0.9]


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_variable_frame_rate_by_timestamp(video_dir, suffix):
    path = make_video(video_dir / f"vfr.{suffix}", len(VFR_TIMES), vfr_times=VFR_TIMES)
    times = [0.0, 0.005, 0.015, 0.05, 0.1, 0.15, 0.205, 0.3, 0.5, 0.515, 0.7, 0.95, 3.0]
    expected = [0, 0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 9]  # the last frame with time <= t
    assert frame_indices(read_frames(path, times)) == expected
    info = probe(path)
    if suffix == "mp4":  # the average rate (MP4 has every frame's duration); Matroska declares the nominal 30
        assert 10 < info.fps < 30
    clip_times = [0.2 + i * 2 / info.fps for i in range(6)]
    shown = [max(k for k, start in enumerate(VFR_TIMES) if start <= t + 1e-9) for t in clip_times]
    assert frame_indices(read_clip(path, 0.2, 6, 2)) == shown


def test_past_the_end_repeats_the_last_frame(video_dir):
    path = make_video(video_dir / "short.mp4", 20, gop=8)
    assert frame_indices(read_clip(path, 15 / FPS, 8)) == [15, 16, 17, 18, 19, 19, 19, 19]
    assert frame_indices(read_clip(path, 10 / FPS, 4, 4)) == [10, 14, 18, 19]
    assert frame_indices(read_clip(path, 100.0, 3)) == [19, 19, 19]


def test_bad_arguments(h264):
    with pytest.raises(ValueError, match="start_sec"):
        read_clip(h264, -0.1, 4)
    with pytest.raises(ValueError, match="times"):
        read_frames(h264, [0.1, -1.0])
    with pytest.raises(ValueError, match="num_frames"):
        read_clip(h264, 0.0, 0)
    with pytest.raises(ValueError, match="sampling_rate"):
        read_clip(h264, 0.0, 4, 0)
    with pytest.raises(ValueError, match="backend"):
        read_clip(h264, 0.0, 4, backend="opencv")


# ----------------------------------------------------------------------------------------------------------
# Rotation and pixel formats


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_gives_upright_frames(video_dir, rotation):
    """The stored frames are turned; the display matrix (written by hand, see conftest) turns them back."""
    path = make_video(video_dir / f"rotated_{rotation}.mp4", 12, size=(64, 48), rotation=rotation)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        coded = (stream.width, stream.height)
    assert coded == ((48, 64) if rotation != 180 else (64, 48))
    clip = read_clip(path, 2 / FPS, 4)
    assert clip.shape == (4, 48, 64, 3)  # upright: width 64, height 48 whatever is stored
    assert frame_indices(clip) == [2, 3, 4, 5]  # the orientation markers are checked too
    assert (clip[0].float() - torch.from_numpy(index_frame(2, 64, 48))).abs().mean() < 8
    assert probe(path) == VideoInfo(fps=30.0, num_frames=12, duration=pytest.approx(0.4, abs=0.01), width=64,
                                    height=48, rotation=rotation)


@pytest.mark.parametrize(("codec", "pix_fmt", "size", "suffix", "decoded_as"), [
    ("libx264", "yuv420p10le", (64, 48), "mp4", "yuv420p10le"),
    ("libx264", "yuv444p", (33, 17), "mp4", "yuv444p"),  # odd size needs unsubsampled chroma
    ("libx264", "gray", (64, 48), "mp4", "yuv420p"),  # monochrome H.264: FFmpeg decodes it as yuv420p
    ("ffv1", "gray", (33, 17), "mkv", "gray"),
    ("libvpx-vp9", "yuv444p", (35, 21), "webm", "yuv444p"),
])
def test_pixel_formats_and_odd_sizes(video_dir, codec, pix_fmt, size, suffix, decoded_as):
    path = video_dir / f"format_{pix_fmt}_{size[0]}x{size[1]}.{suffix}"
    try:
        make_video(path, 10, size=size, codec=codec, pix_fmt=pix_fmt, gop=4)
    except (av.FFmpegError, ValueError) as error:
        pytest.skip(f"this FFmpeg build cannot encode {codec} {pix_fmt}: {error}")
    with av.open(str(path)) as container:
        assert next(container.decode(video=0)).format.name == decoded_as  # the format the reader converts
    clip = read_clip(path, 3 / FPS, 5)
    assert clip.shape == (5, size[1], size[0], 3) and clip.dtype == torch.uint8
    assert frame_indices(clip) == [3, 4, 5, 6, 7]


def test_channels_are_rgb(video_dir):
    path = make_video(video_dir / "red.mp4", 4, pix_fmt="yuv444p", color=(255, 0, 0))
    corner = read_clip(path, 0.0, 1)[0, :6, :8].float().mean((0, 1))  # inside the always-bright cell
    assert corner[0] > 200 and corner[1] < 60 and corner[2] < 60


# ----------------------------------------------------------------------------------------------------------
# Folders of frame images


def _write_frames(folder, count, name, size=(40, 30)):
    folder.mkdir()
    for k in range(count):
        Image.fromarray(index_frame(k, *size)).save(folder / name.format(k + 1), quality=95)
    return folder


def test_frame_folder(tmp_path):
    folder = _write_frames(tmp_path / "vid", 12, "vid_{:06d}.jpg")
    (folder / "notes.txt").write_text("not a frame")
    assert probe(folder, folder_fps=10) == VideoInfo(fps=10.0, num_frames=12, duration=1.2, width=40, height=30)
    clip = read_clip(folder, 0.2, 4, 2, folder_fps=10)
    assert clip.shape == (4, 30, 40, 3) and frame_indices(clip) == [2, 4, 6, 8]
    assert frame_indices(read_clip(folder, 0.9, 4, folder_fps=10)) == [9, 10, 11, 11]  # padded
    assert frame_indices(read_clip(folder, 1 / 30, 2)) == [1, 2]  # default 30 fps


def test_frame_folder_natural_order(tmp_path):
    folder = _write_frames(tmp_path / "unpadded", 12, "frame_{}.jpg")  # frame_2.jpg sorts before frame_10.jpg
    assert frame_indices(read_frames(folder, [k / 30 for k in range(12)])) == list(range(12))


# ----------------------------------------------------------------------------------------------------------
# Errors name the path and the reason


def test_missing_path(tmp_path):
    for path in (tmp_path / "missing.mp4", tmp_path / "missing_folder" / "x.mp4"):
        with pytest.raises(FileNotFoundError, match="missing"):
            read_clip(path, 0.0, 4)


@pytest.mark.parametrize(("kind", "reason"), [
    ("empty", "empty"),
    ("truncated", "Invalid data"),
    ("garbage", "Invalid data"),
    ("corrupt", "Invalid data"),
    ("audio_only", "no video stream"),
    ("empty_folder", "without frame images"),
])
def test_undecodable(tmp_path, h264, kind, reason):
    path = tmp_path / f"{kind}.mp4"
    data = h264.read_bytes()
    if kind == "empty":
        path.touch()
    elif kind == "truncated":  # the index (moov) is written last: half a file has none
        path.write_bytes(data[:len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "corrupt":  # intact index, zeroed picture data
        start, end = data.index(b"mdat") + 4, data.index(b"moov") - 4
        path.write_bytes(data[:start] + bytes(end - start) + data[end:])
    elif kind == "audio_only":
        path = make_audio_only(tmp_path / "audio.m4a")
    else:
        path = tmp_path / "frames"
        path.mkdir()
    for read in (lambda: read_clip(path, 0.5, 4), lambda: probe(path)):
        with pytest.raises(VideoDecodeError, match=reason) as caught:
            read()
        assert str(path) in str(caught.value) and caught.value.path == str(path)
        assert isinstance(caught.value, ValueError)


def test_corrupt_frame_image(tmp_path):
    folder = _write_frames(tmp_path / "frames", 3, "{:03d}.jpg")
    (folder / "002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert frame_indices(read_clip(folder, 0.0, 1)) == [0]  # only the frames needed are decoded
    with pytest.raises(VideoDecodeError, match=r"002\.jpg"):
        read_clip(folder, 0.0, 3)


# ----------------------------------------------------------------------------------------------------------
# Other backends: same interface, same frames (skipped where the package is not installed)


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
def test_other_backends_match_pyav(video_dir, h264, backend):
    pytest.importorskip(backend)
    rotated = make_video(video_dir / "rotated_backends.mp4", 12, rotation=90)
    for path, start in ((h264, 20 / FPS), (h264, 55 / FPS), (rotated, 0.1)):
        clip = read_clip(path, start, 8, 1, backend=backend)
        assert frame_indices(clip) == frame_indices(read_clip(path, start, 8, 1))
    assert probe(rotated, backend=backend) == probe(rotated)


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
def test_missing_backend_says_what_to_install(h264, backend):
    if _installed(backend):
        pytest.skip(f"{backend} is installed")
    with pytest.raises(ImportError, match=f"pip install {backend}"):
        read_clip(h264, 0.0, 2, backend=backend)


def test_frame_index_helper_catches_a_turned_frame():
    upright = torch.from_numpy(index_frame(5, 64, 48))
    assert frame_index(upright) == 5
    with pytest.raises(AssertionError, match="upright"):
        frame_index(torch.rot90(upright, 2, (0, 1)))


def test_duration_comes_from_metadata_without_decoding(tmp_path):
    path = make_video(tmp_path / "v.mp4", 16, fps=30)
    with open_video(path) as video:
        assert video.duration >= 16 / 30 - 1e-9  # never a fraction of a frame short
        assert video.frames_decoded == 0


# ----------------------------------------------------------------------------------------------------------
# The protocol's reads: stream header, pts windows, frames by position


def test_stream_header(video_dir, h264, tmp_path):
    with open_video(h264) as video:
        header = video.header
        assert (header.fps, header.num_frames) == (FPS, 60) and header.duration_pts is not None
        assert video.frames_decoded == 0  # from metadata alone
    with open_video(make_video(video_dir / "header.mkv", 10, size=(32, 32))) as video:
        assert video.header.duration_pts is None  # Matroska states the duration of the file, not the stream
        assert video.frame_count() == 10
    with open_video(_write_frames(tmp_path / "header", 5, "{:03d}.jpg")) as video:
        assert video.header == StreamHeader(fps=30.0, num_frames=5, duration_pts=None)
        assert video.frame_count() == 5 and video.frames_decoded == 0


def test_read_window_keeps_the_window_and_the_first_frame_past_it(h264):
    with open_video(h264) as video:
        per_frame = video.header.duration_pts // 60  # pts of one frame
        window = (20 * per_frame - 1, 30 * per_frame + 1)  # frames 20..30, then 31 past the end
        assert frame_indices(video.read_window(*window, [0, 5, 10, 11, 40])) == [20, 25, 30, 31, 31]
        assert frame_indices(video.read_window(58 * per_frame, 70 * per_frame, [0, 1, 2])) == [58, 59, 59]
        with pytest.raises(VideoDecodeError, match="no frame at or after pts"):
            video.read_window(61 * per_frame, 70 * per_frame, [0])


@pytest.mark.parametrize("suffix", ["mp4", "webm", "frames"])
def test_read_positions(video_dir, tmp_path, suffix):
    if suffix == "frames":
        path = _write_frames(tmp_path / "positions", 20, "{:03d}.jpg")
    else:
        path = make_video(video_dir / f"positions.{suffix}", 20, codec="libx264" if suffix == "mp4" else "libvpx-vp9")
    with open_video(path) as video:
        assert frame_indices(video.read_positions([19, 0, 7, 7, 25])) == [19, 0, 7, 7, 19]
        with pytest.raises(ValueError, match="positions must be >= 0"):
            video.read_positions([-1])
