"""Features of videos from any checkpoint: the pre-logits vector, the class token, or every token of one block.

Clips are the checkpoint's test views (averaged into one row per video, or one row per view) or sliding windows
over the whole video (one row per window, recording its start and end in seconds). ``extract`` returns the
features of one video as tensors; ``extract_dataset`` writes those of many videos to a folder:

- ``features-NNNNN.safetensors`` (tensor ``features``, float32) or ``features-NNNNN.npy``: the shards, rows in
  the order of ``index.csv``;
- ``index.csv``: ``video,part,view,start,end,shard,row`` per row (``part``: an annotation's segment, in frames
  ``first-last`` or seconds ``start-end``s; ``view``: clip * crops + crop when views are kept apart; ``start`` /
  ``end``: a window's seconds; ``shard`` the file, ``row`` its row there);
- ``failures.csv``: ``video,part,reason,shard`` for every video that could not be read (the run goes on);
- ``extract.json``: the settings and how many shards are committed.

A shard is committed by writing (each atomically) its file, the index and failures with its rows, and then
``extract.json``; a run in a folder that holds ``extract.json`` resumes after the last committed shard (rows and
files of uncommitted shards are dropped), skipping the videos already done or listed as failures. Shards and
batches are planned from where a run starts, so a resumed run writes the files an uninterrupted one would.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from motionformer.data.build import build_sampler
from motionformer.data.datasets import read_annotations
from motionformer.data.decoding import VideoReader, open_video
from motionformer.data.sampling import ClipSampler, Segment
from motionformer.data.transforms import test_transform
from motionformer.engine import distributed
from motionformer.engine.build import model_from_weights
from motionformer.engine.precision import autocast, inference_dtype
from motionformer.inference import sliding_windows, window_views
from motionformer.io import atomic_write
from motionformer.models.motionformer import Motionformer
from motionformer.models.spec import InputSpec

__all__ = ["FEATURES", "ExtractOptions", "VideoFeatures", "VideoItem", "clip_features", "extract",
           "extract_dataset", "video_items"]

log = logging.getLogger(__name__)

FEATURES = ("pre_logits", "cls", "tokens")
FORMATS = ("safetensors", "npy")
INDEX_COLUMNS = ("video", "part", "view", "start", "end", "shard", "row")
FAILURE_COLUMNS = ("video", "part", "reason", "shard")
MANIFEST, INDEX, FAILURES = "extract.json", "index.csv", "failures.csv"
OWN_TEMPORARY = tuple(f".{name}." for name in (MANIFEST, INDEX, FAILURES))  # atomic_write's temporary files


@dataclasses.dataclass(frozen=True)
class ExtractOptions:
    """What is extracted (``feature`` of block ``block``) and from which clips.

    ``window`` (seconds; ``stride`` defaults to it): sliding windows, each averaged over its ``num_crops`` crops
    (default 1); without it, the checkpoint's test views (``num_clips`` / ``num_crops`` replace its numbers),
    averaged into one row per video unless ``keep_views``. ``block`` counts from 0, negative from the end; the
    last block's tokens are the normalised ones ``forward_features`` returns; ``pre_logits`` reads the last block.
    """

    feature: str = "pre_logits"
    block: int = -1
    window: float | None = None
    stride: float | None = None
    keep_views: bool = False
    num_clips: int | None = None
    num_crops: int | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise ValueError(f"feature={self.feature!r} is not one of {', '.join(FEATURES)}")
        if self.feature == "pre_logits" and self.block != -1:
            raise ValueError(f"feature=pre_logits reads the last block; block={self.block} needs feature=cls or tokens")
        if self.window is None and self.stride is not None:
            raise ValueError(f"stride={self.stride} needs a window (seconds)")
        if self.window is not None:
            sliding_windows(0.0, self.window, self.stride or self.window)  # checks both
            if self.keep_views:
                raise ValueError("keep_views applies to the checkpoint's test views, not to sliding windows")
        if self.num_crops not in (None, 1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {self.num_crops!r}")
        if self.num_clips is not None and self.num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {self.num_clips!r}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class VideoItem:
    """One video file or frame folder, or one part of it: an annotation's ``segment`` (frame numbers, see
    ``Segment``) or ``window`` (seconds)."""

    video: str
    segment: Segment | None = None
    window: tuple[float, float] | None = None

    @property
    def part(self) -> str:
        """The part as the index names it: ``first-last`` frames, ``start-end``s, or empty for the whole video."""
        if self.segment is not None:
            return f"{self.segment.start_frame}-{self.segment.end_frame}"
        if self.window is not None:
            return f"{self.window[0]:g}-{self.window[1]:g}s"
        return ""

    @property
    def key(self) -> tuple[str, str]:
        return self.video, self.part


def video_items(videos: Sequence[str | os.PathLike] = (), annotations: str | os.PathLike | None = None,
                root: str | os.PathLike | None = None, format: str = "auto") -> list[VideoItem]:
    """The items of video paths and of an annotation file's entries (their segments), repeats removed."""
    items = [VideoItem(os.fspath(video)) for video in videos]
    if annotations is not None:
        entries = read_annotations(annotations, root, format).entries
        items += [VideoItem(os.fspath(entry.path), entry.segment, None if entry.segment else entry.window)
                  for entry in entries]
    unique: dict[tuple[str, str], VideoItem] = {}
    for item in items:
        unique.setdefault(item.key, item)
    return list(unique.values())


@torch.no_grad()
def clip_features(model: Motionformer, clips: Tensor, feature: str = "pre_logits", block: int = -1) -> Tensor:
    """Features of clips (B, 3, T, H, W): ``pre_logits`` (B, C), what the classifier reads; ``cls`` (B, C), the
    class token of ``block``; ``tokens`` (B, 1 + T*S, C), every token of ``block`` (class token first, then the
    patches frame-major). The blocks after ``block`` are not run; for the last block's class token only its row
    is computed there, as ``forward`` does (``forward_class_token``)."""
    depth = len(model.blocks)
    if not -depth <= block < depth:
        raise ValueError(f"block={block} is outside this model's {depth} blocks (0..{depth - 1}, or negative)")
    last = block % depth
    if feature != "tokens" and last == depth - 1:
        return _class_token_feature(model, model.forward_class_token(clips), feature)  # (B, 1, C)
    tokens, frames = model.embed(clips)  # (B, 1 + T*S, C)
    for module in model.blocks[:last + 1]:
        tokens = module(tokens, frames)
    if last == depth - 1:
        tokens = model.norm(tokens)
    if feature == "tokens":
        return tokens
    return _class_token_feature(model, tokens, feature)


def _class_token_feature(model: Motionformer, tokens: Tensor, feature: str) -> Tensor:
    """``cls`` or ``pre_logits`` (B, C) of tokens (B, N, C) whose first is the class token."""
    if feature == "cls":
        return tokens[:, 0]
    return model.forward_head(tokens, pre_logits=True)


def feature_shape(model: Motionformer, spec: InputSpec, feature: str) -> tuple[int, ...]:
    """The shape of one clip's ``feature`` for ``spec``'s clips."""
    if feature != "tokens":
        return (model.embed_dim,)
    grid = spec.crop_size // model.patch_size
    return (1 + spec.num_frames // model.tubelet_size * grid * grid, model.embed_dim)


# ---------------------------------------------------------------------------------------------- reading clips


@dataclasses.dataclass(frozen=True)
class _Reader:
    """Reads the clips of items for one ``InputSpec`` and ``ExtractOptions``: a task is a clip index (test views)
    or a window (start, end) in seconds; each gives float (crops, 3, T, crop, crop)."""

    spec: InputSpec
    options: ExtractOptions

    @property
    def num_crops(self) -> int:
        default = 1 if self.options.window is not None else self.spec.num_crops
        return self.options.num_crops or default

    def view_tasks(self) -> list[int]:
        """The clip indices of the test views."""
        return list(range(self._sampler().num_views))

    def window_tasks(self, item: VideoItem) -> list[tuple[float, float]]:
        """The sliding windows of an item (decodes nothing but the header)."""
        with open_video(item.video, threads=1) as reader:
            first, last = self._bounds(item, reader)
        windows = sliding_windows(last - first, self.options.window, self.options.stride or self.options.window)
        return [(first + start, first + end) for start, end in windows]

    def read(self, item: VideoItem, tasks: Sequence[int | tuple[float, float]]) -> Tensor:
        """The views of ``tasks`` of one item: (len(tasks), crops, 3, T, crop, crop)."""
        with open_video(item.video, threads=1) as reader:
            if self.options.window is not None:
                return torch.stack([window_views(reader, self.spec, start, end, self.num_crops)
                                    for start, end in tasks])
            sampler, transform = self._sampler(), self._transform()
            segment = self._segment(item, reader)
            return torch.stack([transform(sampler(reader, segment=segment, clip_index=task)) for task in tasks])

    def _sampler(self) -> ClipSampler:
        spec = self.spec
        return build_sampler(spec.sampling, training=False, num_frames=spec.num_frames,
                             sampling_rate=spec.sampling_rate, num_clips=self.options.num_clips or spec.num_clips)

    def _transform(self) -> Callable[[Tensor], Tensor]:
        spec = self.spec
        return test_transform(crop_size=spec.crop_size, num_crops=self.num_crops, mean=spec.mean, std=spec.std,
                              channel_order=spec.channel_order)

    @staticmethod
    def _segment(item: VideoItem, reader: VideoReader) -> Segment | None:
        """The item's segment (a window in seconds taken at the video's rate, as the clip datasets do)."""
        if item.window is None:
            return item.segment
        fps = reader.fps
        return Segment(round(item.window[0] * fps), round(item.window[1] * fps), fps)

    @staticmethod
    def _bounds(item: VideoItem, reader: VideoReader) -> tuple[float, float]:
        """The seconds of the video that the item covers."""
        if item.window is not None:
            return item.window
        if item.segment is not None:
            return item.segment.start_frame / item.segment.fps, item.segment.end_frame / item.segment.fps
        return 0.0, reader.duration


def _reason(error: Exception) -> str:
    """Why a video could not be read, without its path."""
    if isinstance(error, FileNotFoundError):
        return "file not found"
    return getattr(error, "reason", None) or f"{type(error).__name__}: {error}"


# ---------------------------------------------------------------------------------------------- one video


@dataclasses.dataclass(frozen=True)
class VideoFeatures:
    """The features of one video: ``features`` (rows, *shape), one row per window, per view, or the views'
    average; ``times`` (rows, 2): each window's start and end in seconds (None for test views)."""

    video: str
    features: Tensor
    times: Tensor | None


def _rows(features: Tensor, options: ExtractOptions) -> Tensor:
    """The rows of one item from its tasks' features (tasks, crops, *shape)."""
    if options.window is not None:
        return features.mean(1)
    if options.keep_views:
        return features.flatten(0, 1)  # row clip * crops + crop
    return features.flatten(0, 1).mean(0, keepdim=True)


def _features(model: Motionformer, views: Tensor, options: ExtractOptions, dtype: torch.dtype | None) -> Tensor:
    """Float32 CPU features of views (n, crops, 3, T, H, W): (n, crops, *shape)."""
    device = next(model.parameters()).device
    with autocast(device, dtype):
        flat = clip_features(model, views.flatten(0, 1).to(device), options.feature, options.block)
    return flat.float().cpu().unflatten(0, views.shape[:2])


def extract(video: str | os.PathLike, checkpoint: str | os.PathLike | Motionformer, *,
            options: ExtractOptions | None = None, device: str = "auto", batch_size: int = 8,
            spec: InputSpec | None = None, **option_values: Any) -> VideoFeatures:
    """The features of one video file or frame folder, in memory (nothing is written).

    ``checkpoint``: a path, a model-zoo name, or a ``Motionformer`` (then ``spec``, else its ``weights_info``,
    says its input). Options are an ``ExtractOptions`` or its fields as keywords (``feature="cls"``,
    ``window=2.0`` ...). Raises FileNotFoundError or ValueError naming a video that cannot be read.
    """
    options = _options(options, option_values)
    model, spec, target = _model(checkpoint, spec, device)
    reader, item = _Reader(spec, options), VideoItem(os.fspath(video))
    tasks = reader.window_tasks(item) if options.window is not None else reader.view_tasks()
    dtype = inference_dtype(options.precision, target)
    parts = [_features(model, reader.read(item, tasks[first:first + batch_size]), options, dtype)
             for first in range(0, len(tasks), batch_size)]
    times = torch.tensor(tasks, dtype=torch.float64) if options.window is not None else None
    return VideoFeatures(video=item.video, features=_rows(torch.cat(parts), options), times=times)


def _options(options: ExtractOptions | None, values: dict[str, Any]) -> ExtractOptions:
    """``options``, or an ``ExtractOptions`` of ``values``; not both."""
    if options is not None and values:
        raise ValueError(f"give options=ExtractOptions(...) or its fields as keywords, not both (got {sorted(values)})")
    return options or ExtractOptions(**values)


def _model(checkpoint: str | os.PathLike | Motionformer, spec: InputSpec | None,
           device: str) -> tuple[Motionformer, InputSpec, torch.device]:
    """The model in eval mode on its device, and the input it expects."""
    if isinstance(checkpoint, nn.Module):
        model = checkpoint
        info = getattr(model, "weights_info", None)
        if spec is None and info is None:
            raise ValueError("a model without weights_info needs spec=InputSpec(...) to say what its input is")
        spec = spec or info.input
    else:
        model, _, loaded = model_from_weights(checkpoint)
        spec = spec or loaded
    target = distributed.resolve_device(device)
    return model.to(target).eval(), spec, target


# ---------------------------------------------------------------------------------------------- many videos

Task = int | tuple[float, float]


@dataclasses.dataclass
class _Shard:
    """One planned shard: its items' tasks (position in the item list -> tasks) and items that already failed."""

    number: int
    tasks: dict[int, list[Task]] = dataclasses.field(default_factory=dict)
    failed: dict[int, str] = dataclasses.field(default_factory=dict)

    def batches(self, batch_size: int) -> list[list[tuple[int, Task]]]:
        """The shard's (position, task) pairs in order, ``batch_size`` a batch (batches never cross shards)."""
        pairs = [(position, task) for position, tasks in self.tasks.items() for task in tasks]
        return [pairs[first:first + batch_size] for first in range(0, len(pairs), batch_size)]


def _plan(tasks: Sequence[tuple[int, list[Task] | str]], rows: Callable[[list[Task]], int], row_bytes: int,
          shard_bytes: float, first: int) -> list[_Shard]:
    """Shards of items in order (a task list, or a failure's reason), each closed by the item that makes its
    features reach ``shard_bytes``; numbered from ``first``."""
    shards, current, size = [], _Shard(first), 0
    for position, found in tasks:
        if isinstance(found, str):
            current.failed[position] = found
            continue
        current.tasks[position] = found
        size += rows(found) * row_bytes
        if size >= shard_bytes:
            shards.append(current)
            current, size = _Shard(first + len(shards)), 0
    if current.tasks or current.failed:
        shards.append(current)
    return shards


class _Windows(Dataset):
    """Item i: the sliding windows of the i-th item, or the reason it cannot be read."""

    def __init__(self, reader: _Reader, items: Sequence[VideoItem]):
        self.reader, self.items = reader, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> list[Task] | str:
        try:
            return self.reader.window_tasks(self.items[index])
        except Exception as error:  # an unreadable video is recorded, never stops the run
            return _reason(error)


class _Batches(Dataset):
    """Batch i: the views of its (position, task) pairs, read in a loader worker: ``{"views": (n, crops, 3, T, H, W)
    or None, "positions": position of each view, "failed": {position: reason}}``."""

    def __init__(self, reader: _Reader, items: Sequence[VideoItem], batches: Sequence[list[tuple[int, Task]]]):
        self.reader, self.items, self.batches = reader, items, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Any]:
        groups: dict[int, list[Task]] = {}
        for position, task in self.batches[index]:
            groups.setdefault(position, []).append(task)
        views, positions, failed = [], [], {}
        for position, tasks in groups.items():
            try:
                views.append(self.reader.read(self.items[position], tasks))
            except Exception as error:  # an unreadable video is recorded, never stops the run
                failed[position] = _reason(error)
                continue
            positions += [position] * len(tasks)
        return {"views": torch.cat(views) if views else None, "positions": positions, "failed": failed}


def _unchanged(value: Any) -> Any:
    return value


def _loader(dataset: Dataset, workers: int) -> Iterator[Any]:
    """The dataset's items in order, read by ``workers`` processes (0: in this one)."""
    return iter(DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_unchanged,
                           prefetch_factor=2 if workers else None))


def _shard_name(number: int, format: str) -> str:
    return f"features-{number:05d}.{format}"


def _shard_number(name: str) -> int:
    """The number of a shard file name ``features-NNNNN.EXT`` (-1 for another name)."""
    stem = name.split(".", 1)[0]
    prefix, _, digits = stem.partition("-")
    return int(digits) if prefix == "features" and digits.isdigit() else -1


def _csv_text(columns: Sequence[str], rows: Sequence[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))


def _write_features(path: Path, features: Tensor, format: str) -> None:
    def write(temp: str) -> None:
        if format == "npy":
            with open(temp, "wb") as stream:
                np.save(stream, features.numpy())
        else:
            save_file({"features": features.contiguous()}, temp)

    atomic_write(path, write)


class _Output:
    """An extraction folder: the committed index and failures, and the commit of one shard (see the module
    docstring)."""

    def __init__(self, folder: Path, settings: dict[str, Any]):
        self.folder, self.settings, self.format = folder, settings, settings["format"]
        self.shards, self.index, self.failures = 0, [], []
        manifest = folder / MANIFEST
        if manifest.exists():
            self._resume(json.loads(manifest.read_text(encoding="utf-8")), manifest)
        for path in folder.glob("*"):  # the leftovers of a stopped run: uncommitted shards, temporary files
            temporary = path.name.endswith(".tmp") and path.name.startswith((".features-", *OWN_TEMPORARY))
            if temporary or _shard_number(path.name) >= self.shards:
                path.unlink()
        self._write_manifest()

    def _resume(self, manifest: dict[str, Any], path: Path) -> None:
        old = manifest.get("settings", {})
        changed = [f"{key}: {old.get(key)!r} in the folder, {value!r} now" for key, value in self.settings.items()
                   if old.get(key) != value]
        if changed:
            raise ValueError(f"{path}: the folder holds an extraction with other settings ({'; '.join(changed)}); "
                             "extract into another folder, or delete this one")
        self.shards = int(manifest["shards"])
        self.index = [row for row in self._read(INDEX) if _shard_number(row["shard"]) < self.shards]
        self.failures = [row for row in self._read(FAILURES) if int(row["shard"]) < self.shards]
        log.info("resuming the extraction in %s after %d shards (%d rows, %d failures)", self.folder, self.shards,
                 len(self.index), len(self.failures))

    def _read(self, name: str) -> list[dict[str, str]]:
        path = self.folder / name
        if not path.exists():
            return []
        with path.open(encoding="utf-8", newline="") as stream:
            return list(csv.DictReader(stream))

    @property
    def done(self) -> set[tuple[str, str]]:
        """(video, part) of every item with rows or a failure."""
        return {(row["video"], row["part"]) for row in (*self.index, *self.failures)}

    def commit(self, number: int, features: Tensor, index: list[dict[str, str]], failures: list[dict[str, str]]):
        """Write shard ``number`` with its index rows and failures; ``extract.json`` last."""
        _write_features(self.folder / _shard_name(number, self.format), features, self.format)
        self.index += index
        self.failures += failures
        _write_text(self.folder / INDEX, _csv_text(INDEX_COLUMNS, self.index))
        _write_text(self.folder / FAILURES, _csv_text(FAILURE_COLUMNS, self.failures))
        self.shards = number + 1
        self._write_manifest()

    def _write_manifest(self) -> None:
        manifest = {"settings": self.settings, "shards": self.shards}
        _write_text(self.folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")



@dataclasses.dataclass(frozen=True)
class ExtractSummary:
    """What one ``extract_dataset`` call did: ``videos`` extracted and ``failed`` in this call, ``skipped`` (done
    before), ``rows`` written in this call, ``shards`` in the folder, ``seconds`` taken."""

    folder: Path
    videos: int
    failed: int
    skipped: int
    rows: int
    shards: int
    seconds: float


def extract_dataset(items: Sequence[VideoItem], checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                    options: ExtractOptions | None = None, device: str = "auto", batch_size: int = 8,
                    workers: int = 0, shard_mb: float = 256.0, format: str = "safetensors", progress: bool = True,
                    **option_values: Any) -> ExtractSummary:
    """Extract the features of ``items`` (see ``video_items``) into the folder ``out`` (see the module docstring).

    ``batch_size`` clips (each with its crops) go through the model at a time, read by ``workers`` loader
    processes; a shard closes once its features reach ``shard_mb`` MiB. ``progress`` shows a bar with videos/s
    and the time left. Options are an ``ExtractOptions`` or its fields as keywords.
    """
    options = _options(options, option_values)
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {', '.join(FORMATS)}")
    if not (shard_mb > 0 and batch_size >= 1 and workers >= 0):
        raise ValueError(f"shard_mb must be > 0, batch_size >= 1 and workers >= 0; got {shard_mb}, {batch_size}, "
                         f"{workers}")
    began = time.monotonic()
    model, spec, target = _model(checkpoint, None, device)
    dtype = inference_dtype(options.precision, target)
    output = _Output(Path(out), {"checkpoint": os.fspath(checkpoint), "options": options.to_json(),
                                 "input": spec.to_json(), "format": format, "shard_mb": shard_mb})
    done = output.done
    pending = [position for position, item in enumerate(items) if item.key not in done]
    reader, shape = _Reader(spec, options), feature_shape(model, spec, options.feature)
    shards = _plan(_tasks(reader, items, pending, workers), functools.partial(_row_count, options, reader.num_crops),
                   4 * math.prod(shape), shard_mb * 2**20, output.shards)
    plans = [shard.batches(batch_size) for shard in shards]
    loader = _loader(_Batches(reader, items, [batch for plan in plans for batch in plan]), workers)
    extracted = failed = rows = 0
    with tqdm(total=len(pending), unit="video", disable=not progress, dynamic_ncols=True) as bar:
        for shard, plan in zip(shards, plans, strict=True):
            collected, failures = _run_shard(model, shard, plan, loader, options, dtype, bar)
            features, index, failure_rows = _shard_rows(shard, collected, failures, items, options,
                                                        _shard_name(shard.number, format))
            output.commit(shard.number, torch.zeros(0, *shape) if features is None else features, index,
                          failure_rows)
            extracted += len(shard.tasks.keys() - failures.keys())
            failed, rows = failed + len(failures), rows + len(index)
    return ExtractSummary(folder=Path(out), videos=extracted, failed=failed, skipped=len(items) - len(pending),
                          rows=rows, shards=output.shards, seconds=time.monotonic() - began)


def _row_count(options: ExtractOptions, num_crops: int, tasks: list[Task]) -> int:
    """How many rows an item with ``tasks`` gives."""
    if options.keep_views:
        return len(tasks) * num_crops
    return len(tasks) if options.window is not None else 1


def _tasks(reader: _Reader, items: Sequence[VideoItem], pending: list[int],
           workers: int) -> list[tuple[int, list[Task] | str]]:
    """(position, its tasks or why it cannot be read) of the pending items; windows need each video's length."""
    if reader.options.window is None:
        views = reader.view_tasks()
        return [(position, list(views)) for position in pending]
    lengths = _loader(_Windows(reader, [items[position] for position in pending]), workers)
    return list(zip(pending, lengths, strict=True))


def _run_shard(model: Motionformer, shard: _Shard, plan: list[list[tuple[int, Task]]], loader: Iterator[Any],
               options: ExtractOptions, dtype: torch.dtype | None,
               bar: tqdm) -> tuple[dict[int, list[Tensor]], dict[int, str]]:
    """The features of each task of the shard's items, in order ({position: [(crops, *shape)]}), and the
    items that failed ({position: reason})."""
    collected: dict[int, list[Tensor]] = {}
    failed = dict(shard.failed)
    bar.update(len(shard.failed))
    last = {position: number for number, batch in enumerate(plan) for position, _ in batch}
    finished = collections.Counter(last.values())  # batch number -> items whose last task it holds
    for number in range(len(plan)):
        batch = next(loader)
        failed.update(batch["failed"])
        if batch["views"] is not None:
            features = _features(model, batch["views"], options, dtype)
            for position, feature in zip(batch["positions"], features, strict=True):
                collected.setdefault(position, []).append(feature)
        bar.update(finished[number])
    return collected, failed


def _shard_rows(shard: _Shard, collected: dict[int, list[Tensor]], failed: dict[int, str],
                items: Sequence[VideoItem], options: ExtractOptions,
                name: str) -> tuple[Tensor | None, list[dict[str, str]], list[dict[str, str]]]:
    """The shard's features (None without rows), its index rows and its failure rows."""
    parts, index = [], []
    for position, tasks in shard.tasks.items():
        if position in failed:
            continue
        rows, item = _rows(torch.stack(collected[position]), options), items[position]
        parts.append(rows)
        for number in range(len(rows)):
            start, end = tasks[number] if options.window is not None else ("", "")
            index.append({"video": item.video, "part": item.part, "view": str(number) if options.keep_views else "",
                          "start": str(start), "end": str(end), "shard": name, "row": str(len(index))})
    failures = [{"video": items[position].video, "part": items[position].part, "reason": reason,
                 "shard": str(shard.number)} for position, reason in sorted(failed.items())]
    return (torch.cat(parts) if parts else None), index, failures
