"""Evaluation: multi-view testing over one or many processes, its files, and prediction on single videos.

Multi-view testing runs every view (``num_clips`` temporal clips x ``num_crops`` spatial crops) of every video,
averages the softmax scores of each video's views, and reports top-1, top-5 and mean class accuracy (verb, noun and
action accuracy for Epic-Kitchens). Under torchrun each process tests its share and the scores are gathered, so
every process holds the same metrics; only the main process writes files. Views read from a substitute video (an
unreadable file) are left out; videos with no view left are counted in ``videos_missing``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from motionformer.data.datasets import VideoClipDataset, VideoEntry
from motionformer.data.loader import build_loader, set_epoch
from motionformer.data.sampling import UniformClipSampler
from motionformer.data.transforms import test_transform
from motionformer.engine import RunError, distributed
from motionformer.engine.build import build_split, input_spec, model_from_weights
from motionformer.engine.config import Config
from motionformer.engine.metrics import (
    ViewAverager,
    confusion_matrix,
    format_metrics_table,
    head_labels,
    save_confusion_picture,
    video_metrics,
    write_predictions,
)
from motionformer.engine.precision import autocast, resolve_precision
from motionformer.io import atomic_write
from motionformer.models.motionformer import split_heads
from motionformer.models.spec import ClassNames, InputSpec

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_views(model: nn.Module, video: torch.Tensor, autocast_dtype: torch.dtype | None = None
                  ) -> dict[str, torch.Tensor]:
    """Softmax scores of a batch of items, each (crops, 3, T, H, W), averaged over its crops: {head: (B, K_head)}."""
    batch, crops = video.shape[:2]
    flat = video.flatten(0, 1)  # (B * crops, 3, T, H, W)
    with autocast(video.device, autocast_dtype):
        logits = model(flat)
    heads = split_heads(logits.float(), distributed.unwrap(model).heads)
    return {name: values.softmax(-1).view(batch, crops, -1).mean(1) for name, values in heads.items()}


@torch.no_grad()
def evaluate(model: nn.Module, loader: torch.utils.data.DataLoader, context: distributed.DistributedContext,
             autocast_dtype: torch.dtype | None = None, desc: str = "test") -> tuple[dict[str, float], ViewAverager]:
    """Multi-view metrics of ``model`` on a test-mode loader (items of ``(crops, 3, T, H, W)``), gathered over
    processes; returns (metrics, the averager holding every process's views)."""
    was_training = model.training
    model.eval()
    dataset = loader.dataset
    set_epoch(loader, 0)
    averager = ViewAverager()
    heads = distributed.unwrap(model).heads
    total_views = len(loader.sampler) * getattr(loader.dataset.transform, "num_crops", 1)
    bar = tqdm(total=total_views, unit="view", desc=desc, disable=not context.is_main, leave=False,
               dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    try:
        for batch in loader:
            video = batch["video"].to(context.device, non_blocking=True)
            scores = {name: value.cpu() for name, value in predict_views(model, video, autocast_dtype).items()}
            labels = head_labels(batch["label"], heads)
            # an item read from a substitute (its own video failed) has another entry than its index says
            keep = (batch["entry_index"] == batch["index"] // dataset.num_views).nonzero().flatten()
            if len(keep):
                averager.add(batch["entry_index"][keep], {name: value[keep] for name, value in scores.items()},
                             {name: value[keep] for name, value in labels.items()}, batch["index"][keep])
            bar.update(video.shape[0] * video.shape[1])
    finally:
        bar.close()
        model.train(was_training)
    if context.distributed:
        states = distributed.all_gather_objects(averager.state())
        averager = ViewAverager()
        for state in states:
            averager.merge(state)
    if len(averager) == 0:
        raise RunError(f"{desc}: no video could be read (see the warnings above)")
    _, scores, labels, _ = averager.result()
    metrics = video_metrics(scores, labels)
    metrics["videos"] = float(len(averager))
    metrics["videos_missing"] = float(len(dataset.entries) - len(averager))
    return metrics, averager


def _head_names(class_names: ClassNames, head: str) -> list[str] | None:
    """The class names of one head: ``class_names`` is a list for the one head ``""``, {head: list} for several."""
    return class_names.get(head) if isinstance(class_names, Mapping) else class_names


def _write_outputs(output: Path, dataset: VideoClipDataset, averager: ViewAverager, metrics: dict[str, float],
                   predictions: bool, confusion: bool) -> None:
    entries, scores, labels, _ = averager.result()
    paths = [str(dataset.entries[int(i)].path) for i in entries]
    if predictions:
        write_predictions(output / "predictions.csv", entries, paths, scores, labels, dataset.class_names)
    if confusion:
        for name, head_scores in scores.items():
            matrix = confusion_matrix(head_scores.argmax(-1), labels[name], head_scores.shape[-1])
            save_confusion_picture(matrix, output / f"confusion{'_' + name if name else ''}.png",
                                   _head_names(dataset.class_names, name))
    atomic_write(output / "test_metrics.json",
                  lambda temp: Path(temp).write_text(json.dumps(metrics, indent=2) + "\n"))


def run_test(config: Config, *, context: distributed.DistributedContext, model: nn.Module,
             class_names: ClassNames = None, spec: InputSpec | None = None) -> dict[str, float]:
    """Multi-view test of ``model`` on the test split (``data.test``, else ``data.val``) with ``eval.num_clips`` x
    ``eval.num_crops`` views; writes ``test_metrics.json``, ``predictions.csv`` and ``confusion.png`` to
    ``output_dir`` (main process)."""
    spec = spec or input_spec(config, model)
    dataset = build_split(config, "test", spec, training=False, num_clips=config.eval.num_clips,
                          num_crops=config.eval.num_crops)
    if class_names is not None and dataset.class_names is None:
        dataset.class_names = class_names
    loader = build_loader(dataset, config.eval.batch_size or config.data.batch_size, training=False,
                          workers=config.data.workers, seed=config.seed, distributed=context.distributed or None,
                          persistent_workers=False)
    dtype, _ = resolve_precision(config.train.precision, context.device)
    log.info("testing on %d videos x %d clips x %d crops", len(dataset.entries), config.eval.num_clips,
             config.eval.num_crops)
    metrics, averager = evaluate(model.to(context.device), loader, context, dtype, desc="test")
    if context.is_main:
        output = Path(config.output_dir)
        output.mkdir(parents=True, exist_ok=True)
        _write_outputs(output, dataset, averager, metrics, config.eval.predictions, config.eval.confusion)
        log.info("test metrics (%s):\n%s", output, format_metrics_table(metrics))
    return metrics


def evaluate_checkpoint(config: Config) -> dict[str, float]:
    """``motionformer test CONFIG checkpoint=PATH``: load the weights, then ``run_test``."""
    if not config.checkpoint:
        raise ValueError("checkpoint is not set: pass checkpoint=PATH (a run's .pt, a .safetensors, or a released "
                         ".pyth file)")
    context = distributed.setup(config.train.device)
    try:
        model, class_names, _ = model_from_weights(config.checkpoint)
        return run_test(config, context=context, model=model, class_names=class_names,
                        spec=input_spec(config, model, class_names))
    finally:
        distributed.cleanup()


def predict(videos: Sequence[str | Path], checkpoint: str | Path, *, top_k: int = 5, device: str = "auto",
            num_clips: int | None = None, num_crops: int | None = None
            ) -> list[dict[str, list[tuple[str, float]]]]:
    """The top-``top_k`` classes with their scores for each video: [{head: [(name, score), ...]}] (the head is
    ``""`` for single-head models). Views: the checkpoint's test views unless ``num_clips`` / ``num_crops``."""
    for video in videos:
        if not Path(video).exists():
            raise FileNotFoundError(f"video not found: {video}")
    model, class_names, spec = model_from_weights(checkpoint)
    target = distributed.resolve_device(device)
    model = model.to(target).eval()
    sampler = UniformClipSampler(spec.num_frames, spec.sampling_rate, num_clips or spec.num_clips)
    transform = test_transform(crop_size=spec.crop_size, num_crops=num_crops or spec.num_crops, mean=spec.mean,
                               std=spec.std)
    entries = [VideoEntry(path=Path(video), label=0, source="command line") for video in videos]
    dataset = VideoClipDataset(entries, sampler, transform, training=False, max_retries=0)
    results: list[dict[str, torch.Tensor]] = []
    for index in range(len(entries)):
        try:
            views = [dataset[index * dataset.num_views + view] for view in range(dataset.num_views)]
        except RuntimeError as error:
            raise ValueError(f"{videos[index]}: cannot be read ({error})") from error
        clip = torch.cat([item["video"] for item in views])[None].to(target)  # (1, views x crops, 3, T, H, W)
        results.append(predict_views(model, clip))
    return [top_classes(scores, class_names, top_k)[0] for scores in results]


def top_classes(scores: Mapping[str, torch.Tensor], class_names: ClassNames, top_k: int
                ) -> list[dict[str, list[tuple[str, float]]]]:
    """The ``top_k`` classes of each row of ``scores`` ({head: (B, K_head)}) with their names:
    [{head: [(name, score), ...]}] (the head is ``""`` for single-head models)."""
    answers = []
    for row in range(len(next(iter(scores.values())))):
        answer = {}
        for head, values in scores.items():
            names = _head_names(class_names, head)
            top = values[row].topk(min(top_k, values.shape[-1]))
            answer[head] = [(names[i] if names else str(i), float(score))
                            for score, i in zip(top.values, top.indices.tolist(), strict=True)]
        answers.append(answer)
    return answers
