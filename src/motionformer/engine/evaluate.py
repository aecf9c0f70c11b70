"""Evaluation: multi-view testing over one or many processes, and its files.

Multi-view testing runs every view (``num_clips`` temporal clips x ``num_crops`` spatial crops) of every video,
averages the softmax scores of each video's views, and reports top-1, top-5 and mean class accuracy (verb, noun and
action accuracy for Epic-Kitchens) of the videos; the same accuracies of each view on its own (clip level) carry
the prefix ``clip_``. Under torchrun each process tests its share and the scores are gathered, so
every process holds the same metrics; only the main process writes files. Views read from a substitute video (an
unreadable file) are left out; videos with no view left are counted in ``videos_missing``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from motionformer.data.datasets import VideoClipDataset
from motionformer.data.loader import build_loader, set_epoch
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
from motionformer.engine.precision import inference_dtype
from motionformer.inference import head_class_names, view_scores
from motionformer.io import atomic_write
from motionformer.models.spec import ClassNames, InputSpec

log = logging.getLogger(__name__)

EPIC_HEADS = ("verb", "noun")


class ClipAccuracy:
    """Top-1 and top-5 accuracy of every view on its own (clip level), beside the video level of averaged views.

    Keeps each item's top-5 classes per crop and head; an item index seen before is ignored (like
    ``ViewAverager``), so the repeats of a distributed sampler count once.
    """

    def __init__(self) -> None:
        self.items: dict[int, dict[str, tuple[torch.Tensor, int]]] = {}

    def add(self, item_index: torch.Tensor, scores: Mapping[str, torch.Tensor],
            labels: Mapping[str, torch.Tensor]) -> None:
        """``scores``: {head: (B, crops, K_head)} per view; ``labels``: {head: (B,)}."""
        top = {head: values.topk(min(5, values.shape[-1]), dim=-1).indices for head, values in scores.items()}
        for row, item in enumerate(item_index.tolist()):
            self.items.setdefault(item, {head: (top[head][row], int(labels[head][row])) for head in top})

    def merge(self, items: Mapping[int, Mapping[str, tuple[torch.Tensor, int]]]) -> None:
        for item, value in items.items():
            self.items.setdefault(item, dict(value))

    def metrics(self) -> dict[str, float]:
        """``clip_top1``, ``clip_top5`` (``clip_HEAD_top1`` ... for named heads; ``clip_action_top1`` for verb and
        noun) in percent over all views."""
        first: dict[str, list[torch.Tensor]] = {}
        any_top5: dict[str, list[torch.Tensor]] = {}
        for value in self.items.values():
            for head, (top, label) in value.items():  # top: (crops, 5)
                first.setdefault(head, []).append(top[:, 0] == label)
                any_top5.setdefault(head, []).append((top == label).any(-1))
        results: dict[str, float] = {}
        for head in first:
            prefix = f"clip_{head}_" if head else "clip_"
            results[f"{prefix}top1"] = torch.cat(first[head]).float().mean().item() * 100.0
            results[f"{prefix}top5"] = torch.cat(any_top5[head]).float().mean().item() * 100.0
        if set(first) == set(EPIC_HEADS):
            both = torch.cat(first["verb"]) & torch.cat(first["noun"])
            results["clip_action_top1"] = both.float().mean().item() * 100.0
        return results


@torch.no_grad()
def evaluate(model: nn.Module, loader: torch.utils.data.DataLoader, context: distributed.DistributedContext,
             autocast_dtype: torch.dtype | None = None, desc: str = "test") -> tuple[dict[str, float], ViewAverager]:
    """Multi-view metrics of ``model`` on a test-mode loader (items of ``(crops, 3, T, H, W)``), gathered over
    processes; returns (metrics, the averager holding every process's views)."""
    was_training = model.training
    model.eval()
    dataset = loader.dataset
    set_epoch(loader, 0)
    averager, clips = ViewAverager(), ClipAccuracy()
    heads = distributed.unwrap(model).heads
    total_views = len(loader.sampler) * getattr(loader.dataset.transform, "num_crops", 1)
    bar = tqdm(total=total_views, unit="view", desc=desc, disable=not context.is_main, leave=False,
               dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    try:
        for batch in loader:
            video = batch["video"].to(context.device, non_blocking=True)
            views = {name: value.cpu() for name, value in view_scores(model, video, autocast_dtype).items()}
            labels = head_labels(batch["label"], heads)
            # an item read from a substitute (its own video failed) has another entry than its index says
            keep = (batch["entry_index"] == batch["index"] // dataset.num_views).nonzero().flatten()
            if len(keep):
                kept_labels = {name: value[keep] for name, value in labels.items()}
                averager.add(batch["entry_index"][keep], {name: value[keep].mean(1) for name, value in views.items()},
                             kept_labels, batch["index"][keep])
                clips.add(batch["index"][keep], {name: value[keep] for name, value in views.items()}, kept_labels)
            bar.update(video.shape[0] * video.shape[1])
    finally:
        bar.close()
        model.train(was_training)
    if context.distributed:
        averager, clips = _gathered(averager, clips)
    if len(averager) == 0:
        raise RunError(f"{desc}: no video could be read (see the warnings above)")
    _, scores, labels, _ = averager.result()
    metrics = video_metrics(scores, labels)
    metrics.update(clips.metrics())
    metrics["videos"] = float(len(averager))
    metrics["videos_missing"] = float(len(dataset.entries) - len(averager))
    return metrics, averager


def _gathered(averager: ViewAverager, clips: ClipAccuracy) -> tuple[ViewAverager, ClipAccuracy]:
    """Every process's views, merged (in every process)."""
    states: list[dict[str, Any]] = distributed.all_gather_objects({"views": averager.state(), "clips": clips.items})
    averager, clips = ViewAverager(), ClipAccuracy()
    for state in states:
        averager.merge(state["views"])
        clips.merge(state["clips"])
    return averager, clips


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
                                   head_class_names(dataset.class_names, name))
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
    dtype = inference_dtype(config.eval.precision, context.device)
    log.info("testing on %d videos x %d clips x %d crops (%s sampling, %s)", len(dataset.entries), dataset.num_views,
             config.eval.num_crops, spec.sampling, spec.channel_order.upper())
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
        raise ValueError("checkpoint is not set: pass checkpoint=PATH (a run's .pt, a .safetensors, a released "
                         ".pyth file, or a model-zoo name: see 'motionformer weights')")
    context = distributed.setup(config.train.device)
    try:
        model, class_names, _ = model_from_weights(config.checkpoint)
        return run_test(config, context=context, model=model, class_names=class_names,
                        spec=input_spec(config, model, class_names))
    finally:
        distributed.cleanup()
