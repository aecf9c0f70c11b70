"""Benchmark the video data path: decoding a training clip with ``read_clip`` against the least work it needs.

Usage::

    python benchmarks/data.py [--json OUT] [--repeats N] [--threads N] [--quick]

Prints one table per part and the targets met; ``--json`` also writes every number. ``--quick`` uses 3 repeats.

Part 1, decoding. The video: 10 s of generated 340x256 H.264 (libx264, preset medium, CRF 23, yuv420p, B-frames)
at 30 fps, a keyframe every 250 frames like typical web video (x264's default keyint; scene-cut keyframes off, so
the keyframes are exactly frames 0 and 250). The picture pans across a smoothed random texture with a bright disc
moving over it, so that motion compensation has real work. Clip: 16 frames, 4 apart (16x4), starting at several
offsets (the last one starts after the second keyframe and runs past the end of the file, so its last frames
are the file's last frame repeated); read with ``motionformer.data.read_clip`` (PyAV, decoder threads as
``--threads``, default 0: the decoder chooses).

- floor: the least work any PyAV reader of that clip must do, written out by hand: open the file, seek to the
  keyframe at or before the clip's first frame, decode forward and stop at the clip's last frame (or the end of
  the file), convert exactly the clip's distinct frames to RGB (``to_ndarray(format="rgb24")``) and stack the 16
  into one tensor; same thread settings. It knows the frame numbers and the keyframe interval in advance.
- whole file: open, decode every frame of the file, convert the 16 clip frames and stack them: what a reader
  that does not seek costs (the same conversion and stacking).
- frames decoded: counted by ``read_clip``'s reader (``VideoReader.frames_decoded``) and by the floor.

Method: one warm-up run of every variant at every offset, then each repeat times the three variants at one offset
alternately in one process (the starting variant rotates from repeat to repeat) with ``time.perf_counter``, so
that other work on the machine slows all alike; the table reports medians. Target: read_clip <= 1.5x the floor at
every offset.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from common import format_table, log
from motionformer.data import open_video
from motionformer.data.build import build_dataset
from motionformer.data.loader import build_loader, set_epoch

WIDTH, HEIGHT, FPS, SECONDS, GOP = 340, 256, 30, 10, 250
CLIP_FRAMES, SAMPLING_RATE = 16, 4
OFFSETS_SEC = (0.0, 2.0, 4.0, 6.0, 7.8, 8.4)  # 8.4: after the second keyframe, runs past the end
DEFAULT_REPEATS, QUICK_REPEATS = 9, 3
TARGET_FLOOR_RATIO = 1.5
VIDEO_SEED = 0


@dataclass
class Section:
    """One part of the benchmark: a title, a printed table, targets and the numbers for JSON (under ``key``)."""

    key: str
    title: str
    table: str
    checks: list[dict[str, Any]]
    data: dict[str, Any]


# ----------------------------------------------------------------------------------------------------------
# Part 1: decoding


def make_benchmark_video(path: Path) -> Path:
    """The 10 s 340x256 H.264 test video described in the module docstring."""
    rng = np.random.default_rng(VIDEO_SEED)
    pan_x, pan_y = 4, 1  # pixels per frame
    num_frames = FPS * SECONDS
    texture_height, texture_width = HEIGHT + pan_y * num_frames + 1, WIDTH + pan_x * num_frames + 1
    noise = rng.random((texture_height // 8 + 2, texture_width // 8 + 2, 3))
    # smoothed texture: coarse noise upsampled 8x (nearest) then box-blurred over 8 pixels
    texture = np.kron(noise, np.ones((8, 8, 1)))[:texture_height, :texture_width]
    kernel = np.ones(8) / 8
    for axis in (0, 1):
        texture = np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="same"), axis, texture)
    texture = (texture * 200 + 20).astype(np.uint8)
    ys, xs = np.mgrid[:HEIGHT, :WIDTH]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "medium", "crf": "23",
                                                                     "x264-params": "scenecut=0"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = GOP
        for k in range(num_frames):
            image = texture[pan_y * k:pan_y * k + HEIGHT, pan_x * k:pan_x * k + WIDTH].copy()
            centre_x = WIDTH / 2 + WIDTH / 3 * math.sin(2 * math.pi * k / 90)
            centre_y = HEIGHT / 2 + HEIGHT / 4 * math.cos(2 * math.pi * k / 70)
            image[(xs - centre_x) ** 2 + (ys - centre_y) ** 2 < 30**2] = (250, 230, 60)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def clip_frame_numbers(offset_sec: float) -> list[int]:
    """The clip's frame numbers; past the end of the file, the last frame."""
    first = round(offset_sec * FPS)
    return [min(first + i * SAMPLING_RATE, FPS * SECONDS - 1) for i in range(CLIP_FRAMES)]


def keyframe_before(frame_number: int) -> int:
    return frame_number // GOP * GOP


def read_clip_run(path: Path, offset_sec: float, threads: int, stats: dict[str, int]) -> torch.Tensor:
    with open_video(path, threads=threads) as video:
        clip = video.read_clip(offset_sec, CLIP_FRAMES, SAMPLING_RATE)
        stats["frames_decoded"] = video.frames_decoded
    return clip


def floor_run(path: Path, offset_sec: float, threads: int, stats: dict[str, int]) -> torch.Tensor:
    """Seek to the keyframe before the clip, decode to its last frame, convert the 16 clip frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = "AUTO", threads
        ticks_per_frame = round(1 / (stream.time_base * FPS))
        clip_pts = [number * ticks_per_frame for number in clip_frame_numbers(offset_sec)]
        last = clip_pts[-1]
        container.seek(clip_pts[0], stream=stream, backward=True, any_frame=False)
        arrays, decoded = {}, 0
        for frame in container.decode(stream):
            decoded += 1
            if frame.pts in clip_pts:
                arrays[frame.pts] = frame.to_ndarray(format="rgb24")
            if frame.pts >= last:
                break
    stats["frames_decoded"] = decoded
    return torch.from_numpy(np.stack([arrays[pts] for pts in clip_pts]))


def whole_file_run(path: Path, offset_sec: float, threads: int, stats: dict[str, int]) -> torch.Tensor:
    """Decode every frame of the file; convert the 16 clip frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = "AUTO", threads
        ticks_per_frame = round(1 / (stream.time_base * FPS))
        clip_pts = [number * ticks_per_frame for number in clip_frame_numbers(offset_sec)]
        arrays, decoded = {}, 0
        for frame in container.decode(stream):
            decoded += 1
            if frame.pts in clip_pts:
                arrays[frame.pts] = frame.to_ndarray(format="rgb24")
    stats["frames_decoded"] = decoded
    return torch.from_numpy(np.stack([arrays[pts] for pts in clip_pts]))


DECODING_VARIANTS: dict[str, Callable[[Path, float, int, dict[str, int]], torch.Tensor]] = {
    "read_clip": read_clip_run, "floor": floor_run, "whole_file": whole_file_run}


def interleaved_times(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """``repeats`` rounds running every entry once, the starting entry rotating (warm-up is the caller's)."""
    keys = list(runs)
    times: dict[str, list[float]] = {key: [] for key in keys}
    for repeat in range(repeats):
        for i in range(len(keys)):
            key = keys[(repeat + i) % len(keys)]
            begin = time.perf_counter()
            runs[key]()
            times[key].append(time.perf_counter() - begin)
    return times


def benchmark_decoding(repeats: int, threads: int) -> Section:
    with tempfile.TemporaryDirectory() as folder:
        log("part 1: encoding the test video")
        path = make_benchmark_video(Path(folder) / "benchmark.mp4")
        size_bytes = path.stat().st_size
        stats: dict[str, dict[str, dict[str, int]]] = {}
        for offset in OFFSETS_SEC:  # warm-up, and the three variants must agree
            stats[f"{offset:g}"] = {name: {} for name in DECODING_VARIANTS}
            clips = {name: run(path, offset, threads, stats[f"{offset:g}"][name])
                     for name, run in DECODING_VARIANTS.items()}
            if not (torch.equal(clips["read_clip"], clips["floor"]) and torch.equal(clips["floor"],
                                                                                    clips["whole_file"])):
                raise AssertionError(f"the variants decoded different clips at offset {offset} s")
        rows = []
        for offset in OFFSETS_SEC:
            log(f"part 1: offset {offset:g} s, {repeats} repeats")
            runs = {name: functools.partial(run, path, offset, threads, {}) for name, run in DECODING_VARIANTS.items()}
            times = interleaved_times(runs, repeats)
            medians = {name: statistics.median(values) for name, values in times.items()}
            numbers = clip_frame_numbers(offset)
            rows.append({
                "offset_s": offset, "clip_frames": [numbers[0], numbers[-1]],
                "keyframe_before": keyframe_before(numbers[0]),
                "frames_decoded": {name: stats[f"{offset:g}"][name]["frames_decoded"] for name in DECODING_VARIANTS},
                "time_s_median": medians, "times_s": times,
                "ratio_to_floor": medians["read_clip"] / medians["floor"],
                "whole_file_over_read_clip": medians["whole_file"] / medians["read_clip"],
            })
    headers = ["offset (s)", "clip frames", "keyframe", "decoded: read_clip / floor / file", "read_clip (ms)",
               "floor (ms)", "whole file (ms)", "read_clip/floor", "file/read_clip"]
    cells = [[f"{row['offset_s']:g}", f"{row['clip_frames'][0]}-{row['clip_frames'][1]}",
              str(row["keyframe_before"]),
              " / ".join(str(row["frames_decoded"][name]) for name in DECODING_VARIANTS),
              *(f"{row['time_s_median'][name] * 1e3:.1f}" for name in DECODING_VARIANTS),
              f"{row['ratio_to_floor']:.2f}x", f"{row['whole_file_over_read_clip']:.1f}x"] for row in rows]
    checks = [{"target": f"read_clip <= {TARGET_FLOOR_RATIO:g}x the floor", "where": f"offset {row['offset_s']:g} s",
               "value": row["ratio_to_floor"], "met": row["ratio_to_floor"] <= TARGET_FLOOR_RATIO,
               "text": f"{row['ratio_to_floor']:.2f}x"} for row in rows]
    video = {"width": WIDTH, "height": HEIGHT, "fps": FPS, "seconds": SECONDS, "gop": GOP, "codec": "libx264",
             "crf": 23, "preset": "medium", "bytes": size_bytes}
    title = (f"Part 1, decoding: {CLIP_FRAMES}x{SAMPLING_RATE} clips from a {SECONDS} s {WIDTH}x{HEIGHT} H.264 video "
             f"at {FPS} fps, keyframe every {GOP} frames; threads={threads} (0: decoder's choice); "
             f"medians of {repeats}, timed alternately")
    return Section("decoding", title, format_table(headers, cells, left_columns=0), checks,
                   {"video": video, "clip_frames": CLIP_FRAMES, "sampling_rate": SAMPLING_RATE, "threads": threads,
                    "repeats": repeats, "rows": rows})


# ----------------------------------------------------------------------------------------------------------
# Part 2: the training pipeline


PIPELINE_VIDEOS, PIPELINE_BATCH, PIPELINE_BATCHES = 8, 4, 6
PIPELINE_WORKERS = (1, 2)


def loader_clips_per_second(loader: torch.utils.data.DataLoader, epoch: int) -> float:
    """Clips per second over ``PIPELINE_BATCHES`` batches after the first (worker start-up excluded)."""
    set_epoch(loader, epoch)
    batches = iter(loader)
    next(batches)
    begin = time.perf_counter()
    clips = 0
    for _ in range(PIPELINE_BATCHES):
        clips += len(next(batches)["video"])
    return clips / (time.perf_counter() - begin)


def benchmark_pipeline(repeats: int) -> Section:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        log("part 2: encoding the test videos")
        source = make_benchmark_video(root / "video0.mp4")
        for index in range(1, PIPELINE_VIDEOS):
            (root / f"video{index}.mp4").write_bytes(source.read_bytes())
        # each file listed 4 times: 8 batches an epoch, every entry a clip at a random position
        lines = [f"video{i % PIPELINE_VIDEOS}.mp4 {i % 2}\n" for i in range(4 * PIPELINE_VIDEOS)]
        (root / "train.csv").write_text("".join(lines))
        dataset = build_dataset(root / "train.csv", training=True, num_frames=CLIP_FRAMES,
                                sampling_rate=SAMPLING_RATE)
        loaders = {workers: build_loader(dataset, PIPELINE_BATCH, training=True, workers=workers, pin_memory=False)
                   for workers in PIPELINE_WORKERS}
        rates: dict[int, list[float]] = {workers: [] for workers in PIPELINE_WORKERS}
        for repeat in range(repeats):
            for workers in PIPELINE_WORKERS[repeat % 2:] + PIPELINE_WORKERS[:repeat % 2]:
                log(f"part 2: {workers} worker(s), repeat {repeat + 1}/{repeats}")
                rates[workers].append(loader_clips_per_second(loaders[workers], repeat))
    medians = {workers: statistics.median(values) for workers, values in rates.items()}
    headers = ["workers", "clips/s", "s per clip"]
    cells = [[str(workers), f"{medians[workers]:.2f}", f"{1 / medians[workers]:.2f}"] for workers in PIPELINE_WORKERS]
    title = (f"Part 2, training pipeline: {CLIP_FRAMES}x{SAMPLING_RATE} clips from {SECONDS} s {WIDTH}x{HEIGHT} H.264 "
             f"videos, the Kinetics training recipe (scale jitter 256-320, 224 crop, flip, colour jitter), batch "
             f"{PIPELINE_BATCH}, {PIPELINE_BATCHES} batches timed after the first; medians of {repeats}")
    return Section("pipeline", title, format_table(headers, cells, left_columns=0), [],
                   {"workers": {str(w): {"clips_per_s_median": medians[w], "clips_per_s": rates[w]}
                                for w in PIPELINE_WORKERS}, "batch": PIPELINE_BATCH, "repeats": repeats})


# ----------------------------------------------------------------------------------------------------------
# Output and command line


def machine_info() -> dict[str, Any]:
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = None
    return {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "av": av.__version__,
            "ffmpeg": {name: ".".join(map(str, version)) for name, version in av.library_versions.items()},
            "platform": platform.platform(), "load_average_at_start": load}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="OUT", help="also write every number to this JSON file")
    parser.add_argument("--repeats", type=int, help=f"timed rounds per offset (default {DEFAULT_REPEATS})")
    parser.add_argument("--threads", type=int, default=0, help="decoder threads (default 0: the decoder chooses)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REPEATS} repeats")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    machine = machine_info()
    print(f"machine: {machine['processor']} ({machine['cpu_count']} CPUs), PyAV {machine['av']} "
          f"(libavcodec {machine['ffmpeg'].get('libavcodec', '?')}), torch {machine['torch']}; load average "
          f"{machine['load_average_at_start']}", flush=True)
    sections = [benchmark_decoding(repeats, args.threads), benchmark_pipeline(3 if not args.quick else 1)]
    all_met = True
    for section in sections:
        print(f"\n{section.title}\n\n{section.table}\n")
        for check in section.checks:
            all_met &= check["met"]
            print(f"{'met' if check['met'] else 'MISSED'}: {check['target']} at {check['where']}: {check['text']}")
    if args.json:
        report = {"machine": machine, **{section.key: {"title": section.title, "checks": section.checks,
                                                       **section.data} for section in sections}}
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
