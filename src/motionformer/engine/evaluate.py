"""Evaluation: multi-view testing over one or many processes, and its files.

Multi-view testing runs every view (``num_clips`` temporal clips x ``num_crops`` spatial crops) of every video,
averages the softmax scores of each video's views, and reports top-1, top-5 and mean class accuracy (verb, noun and
action accuracy for Epic-Kitchens) of the videos; the same accuracies of each view on its own (clip level) carry the
prefix ``clip_``. Under torchrun each process tests its share, the scores are gathered as tensors on the main
process, which computes the metrics and sends them to the others; only the main process writes files. Views read
from a substitute video (an unreadable file) are left out; videos with no view left are counted in
``videos_missing``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from motionformer.data.datasets import VideoClipDataset
from motionformer.data.loader import build_loader, set_epoch
from motionformer.engine import distributed
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
    """Multi-view metrics of ``model`` on a test-mode loader (items of ``(crops, 3, T, H, W)``) over every process's
    share; returns (metrics, the averager holding every process's views: filled on the main process only).

    Scores stay on the device until the loader ends; then every process's views go to the main process as
    tensors, which computes the metrics and sends them (a few numbers) to the others.
    """
    was_training = model.training
    model.eval()
    dataset = loader.dataset
    set_epoch(loader, 0)
    num_crops = getattr(dataset.transform, "num_crops", 1)
    bar = tqdm(total=len(loader.sampler) * num_crops, unit="view", desc=desc, disable=not context.is_main,
               leave=False, dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    try:
        views = _view_tensors(model, loader, context, autocast_dtype, num_crops, bar)
    finally:
        bar.close()
        model.train(was_training)
    if context.distributed:
        views = {key: value.to(context.device) for key, value in views.items()}
    gathered = {key: distributed.gather_to_main(value) for key, value in views.items()}
    averager, metrics = ViewAverager(), None
    if context.is_main:
        clips = ClipAccuracy()
        _add_views({key: torch.cat(pieces).cpu() for key, pieces in gathered.items()}, averager, clips)
        metrics = {}
        if len(averager):
            _, scores, labels, _ = averager.result()
            metrics.update(video_metrics(scores, labels))
            metrics.update(clips.metrics())
        metrics["videos"] = float(len(averager))
        metrics["videos_missing"] = float(len(dataset.entries) - len(averager))
    return distributed.broadcast_object(metrics), averager


def _view_tensors(model: nn.Module, loader: torch.utils.data.DataLoader, context: distributed.DistributedContext,
                  autocast_dtype: torch.dtype | None, num_crops: int, bar: tqdm) -> dict[str, torch.Tensor]:
    """This process's views: ``scores/HEAD`` (N, crops, K_head) softmax scores on the device, and on the CPU
    ``label/HEAD``, ``entry_index``, ``index`` (N,) and ``keep`` (N,) (False for an item read from a substitute,
    whose entry is not the one its index names)."""
    heads = distributed.unwrap(model).heads
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in loader:
        video = batch["video"].to(context.device, non_blocking=True)
        for name, value in view_scores(model, video, autocast_dtype).items():
            parts.setdefault(f"scores/{name}", []).append(value)
        for name, value in head_labels(batch["label"], heads).items():
            parts.setdefault(f"label/{name}", []).append(value)
        parts.setdefault("entry_index", []).append(batch["entry_index"])
        parts.setdefault("index", []).append(batch["index"])
        parts.setdefault("keep", []).append(batch["entry_index"] == batch["index"] // loader.dataset.num_views)
        bar.update(video.shape[0] * video.shape[1])
    if not parts:  # an empty share
        empty = {f"scores/{name}": torch.zeros(0, num_crops, classes, device=context.device)
                 for name, classes in heads.items()}
        long = torch.zeros(0, dtype=torch.long)
        return {**empty, **{f"label/{name}": long for name in heads}, "entry_index": long, "index": long,
                "keep": torch.zeros(0, dtype=torch.bool)}
    return {key: torch.cat(values) for key, values in parts.items()}


def _add_views(views: dict[str, torch.Tensor], averager: ViewAverager, clips: ClipAccuracy) -> None:
    """Every process's views (``_view_tensors``' keys, concatenated, on the CPU) into the averagers, substitutes
    left out."""
    keep = views["keep"].nonzero().flatten()
    if not len(keep):
        return
    scores = {key.removeprefix("scores/"): value[keep] for key, value in views.items() if key.startswith("scores/")}
    labels = {key.removeprefix("label/"): value[keep] for key, value in views.items() if key.startswith("label/")}
    averager.add(views["entry_index"][keep], {name: value.mean(1) for name, value in scores.items()}, labels,
                 views["index"][keep])
    clips.add(views["index"][keep], scores, labels)


def _write_outputs(output: Path, dataset: VideoClipDataset, averager: ViewAverager, metrics: dict[str, float],
                   predictions: bool, confusion: bool) -> None:
    atomic_write(output / "test_metrics.json",
                 lambda temp: Path(temp).write_text(json.dumps(metrics, indent=2) + "\n"))
    if not len(averager):
        return
    entries, scores, labels, _ = averager.result()
    paths = [str(dataset.entries[int(i)].path) for i in entries]
    if predictions:
        write_predictions(output / "predictions.csv", entries, paths, scores, labels, dataset.class_names)
    if confusion:
        for name, head_scores in scores.items():
            matrix = confusion_matrix(head_scores.argmax(-1), labels[name], head_scores.shape[-1])
            save_confusion_picture(matrix, output / f"confusion{'_' + name if name else ''}.png",
                                   head_class_names(dataset.class_names, name))


def align_classes(dataset: VideoClipDataset, class_names: ClassNames) -> None:
    """Score ``dataset`` in the model's class order: labels of test data that names the same classes in another
    order are renumbered; data naming other classes is refused, with the differences."""
    if class_names is None or dataset.class_names == class_names:
        return
    if dataset.class_names is None:
        dataset.class_names = class_names
        return
    ours = class_names if isinstance(class_names, dict) else {"": class_names}
    theirs = dataset.class_names if isinstance(dataset.class_names, dict) else {"": dataset.class_names}
    for head in ours.keys() | theirs.keys():
        missing = sorted(set(ours.get(head, [])) - set(theirs.get(head, [])))
        extra = sorted(set(theirs.get(head, [])) - set(ours.get(head, [])))
        if missing or extra:
            label = f" ({head})" if head else ""
            raise ValueError(f"the test data's classes{label} are not the checkpoint's: {len(extra)} unknown to it "
                             f"{extra[:5]}, {len(missing)} absent from the data {missing[:5]}")
    index = {head: {name: ours[head].index(name) for name in names} for head, names in theirs.items()}

    def renumber(label: int | dict[str, int]) -> int | dict[str, int]:
        if isinstance(label, dict):
            return {head: index[head][theirs[head][value]] for head, value in label.items()}
        return index[""][theirs[""][label]]

    dataset.entries = [dataclasses.replace(entry, label=renumber(entry.label)) for entry in dataset.entries]
    dataset.class_names = class_names
    log.info("the test data names the checkpoint's classes in another order: labels renumbered to the checkpoint's")


def run_test(config: Config, *, context: distributed.DistributedContext, model: nn.Module,
             class_names: ClassNames = None, spec: InputSpec | None = None) -> dict[str, float]:
    """Multi-view test of ``model`` on the test split (``data.test``, else ``data.val``) with ``eval.num_clips`` x
    ``eval.num_crops`` views, fed as ``spec`` says (sampling, channel order); writes ``test_metrics.json`` (video
    and clip level), ``predictions.csv`` and ``confusion.png`` to ``output_dir`` (main process)."""
    spec = spec or input_spec(config, model)
    dataset = build_split(config, "test", spec, training=False, num_clips=config.eval.num_clips,
                          num_crops=config.eval.num_crops)
    align_classes(dataset, class_names)
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
    if not metrics["videos"]:
        raise ValueError(f"no test video could be read ({int(metrics['videos_missing'])} failed; the warnings above "
                         "say why, 'motionformer data check' lists them); "
                         f"{Path(config.output_dir) / 'test_metrics.json'} records the count")
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
