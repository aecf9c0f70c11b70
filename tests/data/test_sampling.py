"""Clip samplers: clip lengths, spacing, placement inside the window, test-time views, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from motionformer.data import probe, read_frames
from motionformer.data.sampling import RandomClipSampler, SegmentSampler, UniformClipSampler, clip_duration
from tests.data.conftest import frame_indices, make_video

FPS = 30.0


def test_clip_duration_counts_the_last_frame():
    assert clip_duration(8, 4, FPS) == pytest.approx(29 / FPS)
    assert clip_duration(1, 5, FPS) == pytest.approx(1 / FPS)


@pytest.mark.parametrize("window", [(0.0, 10.0), (3.5, 4.8)])
def test_random_clip_spacing_and_inside_window(window):
    sampler = RandomClipSampler(num_frames=8, sampling_rate=4)
    rng = np.random.default_rng(0)
    starts = []
    for _ in range(200):
        times = sampler(window, FPS, rng=rng)
        assert len(times) == 8
        np.testing.assert_allclose(np.diff(times), 4 / FPS)
        assert times[0] >= window[0]
        assert times[0] + clip_duration(8, 4, FPS) <= window[1] + 1e-9
        starts.append(times[0])
    slack = window[1] - window[0] - clip_duration(8, 4, FPS)
    assert min(starts) < window[0] + 0.1 * slack and max(starts) > window[0] + 0.9 * slack  # spread over it


def test_random_clip_longer_than_window_starts_at_window_start():
    times = RandomClipSampler(16, 8)((2.0, 3.0), FPS, rng=np.random.default_rng(1))
    assert times[0] == 2.0
    assert times[-1] == pytest.approx(2.0 + 15 * 8 / FPS)


def test_random_clip_is_deterministic_given_seed():
    sampler = RandomClipSampler(4, 2)
    first = sampler((0.0, 20.0), FPS, rng=np.random.default_rng(7))
    assert first == sampler((0.0, 20.0), FPS, rng=np.random.default_rng(7))
    assert first != sampler((0.0, 20.0), FPS, rng=np.random.default_rng(8))


def test_uniform_clips_are_evenly_spaced_from_start_to_end():
    sampler = UniformClipSampler(num_frames=4, sampling_rate=2, num_clips=3)
    assert sampler.num_views == 3
    window = (1.0, 5.0)
    slack = 4.0 - clip_duration(4, 2, FPS)
    clips = [sampler(window, FPS, clip_index=k) for k in range(3)]
    assert [clip[0] for clip in clips] == pytest.approx([1.0, 1.0 + slack / 2, 1.0 + slack])
    assert clips[-1][-1] + 1 / FPS == pytest.approx(window[1])  # last clip's last frame ends the window
    for clip in clips:
        np.testing.assert_allclose(np.diff(clip), 2 / FPS)


def test_single_uniform_clip_is_centred_and_short_windows_start_at_start():
    sampler = UniformClipSampler(4, 1, num_clips=1)
    assert sampler.num_views == 1
    times = sampler((0.0, 2.0), FPS)
    assert times[0] - 0.0 == pytest.approx(2.0 - (times[-1] + 1 / FPS))
    assert UniformClipSampler(64, 4, num_clips=2)((0.5, 1.0), FPS, clip_index=1)[0] == 0.5


def test_segment_sampler_test_takes_segment_middles():
    sampler = SegmentSampler(num_frames=4, training=False)
    assert sampler((2.0, 6.0), FPS) == pytest.approx([2.5, 3.5, 4.5, 5.5])


def test_segment_sampler_train_takes_one_time_per_segment():
    sampler = SegmentSampler(num_frames=4, training=True)
    for seed in range(20):
        times = np.array(sampler((2.0, 6.0), FPS, rng=np.random.default_rng(seed)))
        assert (np.floor(times - 2.0) == np.arange(4)).all()  # time i lies in segment [2 + i, 3 + i)
    assert sampler((2.0, 6.0), FPS, rng=np.random.default_rng(3)) == sampler(
        (2.0, 6.0), FPS, rng=np.random.default_rng(3))


@pytest.mark.parametrize("sampler", [RandomClipSampler(4, 2), SegmentSampler(4, training=True)])
def test_training_samplers_need_an_rng(sampler):
    with pytest.raises(ValueError, match="rng"):
        sampler((0.0, 5.0), FPS)


@pytest.mark.parametrize(("make", "name"), [
    (lambda: RandomClipSampler(0, 2), "num_frames"),
    (lambda: RandomClipSampler(4, 0), "sampling_rate"),
    (lambda: UniformClipSampler(4, 2, num_clips=0), "num_clips"),
    (lambda: SegmentSampler(2.5), "num_frames"),
])
def test_bad_constructor_arguments_name_the_value(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize(("window", "fps", "clip_index", "name"), [
    ((5.0, 1.0), FPS, 0, "window"),
    ((-1.0, 1.0), FPS, 0, "window"),
    ((0.0, float("nan")), FPS, 0, "window"),
    ((0.0, 1.0), 0.0, 0, "fps"),
    ((0.0, 1.0), FPS, 3, "clip_index"),
])
def test_bad_call_arguments_name_the_value(window, fps, clip_index, name):
    with pytest.raises(ValueError, match=name):
        UniformClipSampler(4, 2, num_clips=3)(window, fps, clip_index=clip_index)


def test_whole_video_windows_read_the_intended_frames(tmp_path):
    path = make_video(tmp_path / "clip.mkv", num_frames=10, size=(32, 32))  # .mkv rounds times to 1 ms
    info = probe(path)
    window = (0.0, info.duration)
    clips = UniformClipSampler(num_frames=3, sampling_rate=3, num_clips=2)
    assert frame_indices(read_frames(path, clips(window, info.fps, clip_index=0))) == [0, 3, 6]
    assert frame_indices(read_frames(path, clips(window, info.fps, clip_index=1))) == [3, 6, 9]
    rng = np.random.default_rng(0)
    for _ in range(5):  # a random clip never runs past the last frame (no padding)
        first, *rest = frame_indices(read_frames(path, RandomClipSampler(3, 3)(window, info.fps, rng=rng)))
        assert rest == [first + 3, first + 6] and first <= 3
    segments = SegmentSampler(num_frames=5, training=False)
    assert frame_indices(read_frames(path, segments(window, info.fps))) == [1, 3, 5, 7, 9]
