"""Evaluation metrics on tensors: top-k and mean class accuracy, confusion matrices, Epic-Kitchens verb / noun /
action accuracy, multi-view averaging, and the files an evaluation leaves behind (predictions CSV, confusion
picture).

Everything here but ``model_accuracy`` (a model's top-1 on a tensor of inputs, as a fraction) is a pure function of
CPU-copyable tensors; gathering across processes belongs to ``motionformer.engine.distributed``. Scores are
``(N, K)`` (one row per item, one column per class), labels ``(N,)`` integer class indices. Accuracies are
percentages (0-100). Where a model may have several heads (multi-view testing, predictions files), scores and labels
are dicts keyed by the model's heads (``model.heads``): ``{"": ...}`` for one head, ``{"verb": ..., "noun": ...}``
for Epic-Kitchens.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn

from motionformer.io import atomic_write

__all__ = [
    "ViewAverager",
    "classification_metrics",
    "confusion_matrix",
    "epic_metrics",
    "format_metrics_table",
    "head_labels",
    "mean_class_accuracy",
    "model_accuracy",
    "save_confusion_picture",
    "topk_accuracy",
    "video_metrics",
    "write_predictions",
]

log = logging.getLogger(__name__)

EPIC_HEADS = ("verb", "noun")
CONFUSION_TITLE = "confusion matrix (rows: true, columns: predicted; numbers: videos)"
CONFUSION_SCALE = "share of the row"
_SCALE_RAMP = 10  # pixels: the height of the colour scale's ramp
# Heat-map end points: a row fraction of 0 is white, 1 is dark blue.
_LOW, _HIGH = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])

HeadTensors = Mapping[str, Tensor]


# ---------------------------------------------------------------------- checks


def _labels(labels: Tensor, name: str = "labels") -> Tensor:
    """``labels`` as a CPU int64 vector; raises for another shape or a floating / bool dtype."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(labels).__name__}")
    if labels.dim() != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    return labels.detach().cpu().long()


def _scores_and_labels(scores: Tensor, labels: Tensor, head: str | None = None) -> tuple[Tensor, Tensor]:
    """CPU float32 ``(N, K)`` scores and int64 ``(N,)`` labels, checked: N > 0, N equal, labels in [0, K)."""
    name, label_name = ("scores", "labels") if head is None else (f"scores[{head!r}]", f"labels[{head!r}]")
    if not isinstance(scores, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(scores).__name__}")
    if scores.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N items, K classes), got shape {tuple(scores.shape)}")
    labels = _labels(labels, label_name)
    count, num_classes = scores.shape
    if count == 0:
        raise ValueError(f"{name} is empty (0 items): metrics need at least one item")
    if num_classes == 0:
        raise ValueError(f"{name} has 0 classes (shape {tuple(scores.shape)})")
    if labels.numel() != count:
        raise ValueError(f"{name} has {count} rows but {label_name} has {labels.numel()} items")
    _check_range(labels, num_classes, label_name)
    return scores.detach().cpu().float(), labels


def _check_range(values: Tensor, num_classes: int, name: str) -> None:
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num_classes):
        raise ValueError(f"{name} must lie in 0..{num_classes - 1} ({num_classes} classes), "
                         f"got values from {int(values.min())} to {int(values.max())}")


def _heads(scores: Mapping[str, Tensor], labels: Mapping[str, Tensor]) -> None:
    """Raise unless both mappings have the Epic heads and the same item count for each."""
    for name, mapping in (("scores", scores), ("labels", labels)):
        if not isinstance(mapping, Mapping):
            raise TypeError(f"{name} must be a mapping with keys {list(EPIC_HEADS)}, got {type(mapping).__name__}")
        missing = [head for head in EPIC_HEADS if head not in mapping]
        if missing:
            raise ValueError(f"{name} lacks the head(s) {missing}; got keys {sorted(mapping)}")
    counts = {head: len(scores[head]) for head in EPIC_HEADS}
    if len(set(counts.values())) != 1:
        raise ValueError(f"the heads have different item counts: {counts}")


# ---------------------------------------------------------------------- metrics


def topk_accuracy(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Percent of items whose label is among the ``k`` highest scores, for each ``k`` in ``ks``.

    A ``k`` larger than the number of classes K counts as K (always 100). Raises ValueError for no items,
    mismatched sizes, labels outside 0..K-1 or a ``k`` below 1. Ties are broken as ``torch.topk`` breaks them.
    """
    scores, labels = _scores_and_labels(scores, labels)
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty list of integers >= 1, got {list(ks)}")
    num_classes = scores.shape[1]
    top = scores.topk(min(max(ks), num_classes), dim=1).indices  # (N, min(max k, K))
    hits = top == labels[:, None]
    return {int(k): hits[:, :min(int(k), num_classes)].any(dim=1).float().mean().item() * 100.0 for k in ks}


def mean_class_accuracy(scores: Tensor, labels: Tensor) -> float:
    """Mean over the classes present in ``labels`` of each class's top-1 recall, in percent."""
    scores, labels = _scores_and_labels(scores, labels)
    num_classes = scores.shape[1]
    correct = scores.argmax(dim=1) == labels
    totals = torch.bincount(labels, minlength=num_classes)
    hits = torch.bincount(labels[correct], minlength=num_classes)
    present = totals > 0
    return (hits[present].double() / totals[present]).mean().item() * 100.0


@torch.no_grad()
def model_accuracy(model: nn.Module, inputs: Tensor, labels: Tensor, *, batch_size: int,
                   device: torch.device | None = None, prepare: Callable[[Tensor], Tensor] | None = None) -> float:
    """Top-1 accuracy of ``model`` on ``inputs`` (N, ...) with ``labels`` (N,), as a fraction (0-1).

    Runs in eval mode (the model's mode is restored after) in batches of ``batch_size`` moved to ``device`` (default:
    where the inputs are); ``prepare`` maps each batch before the forward pass (trimming padding, say).
    """
    training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start:start + batch_size]
        if prepare is not None:
            batch = prepare(batch)
        logits = model(batch.to(device or batch.device))
        correct += (logits.argmax(-1).cpu() == labels[start:start + batch_size].cpu()).sum().item()
    model.train(training)
    return correct / len(inputs)


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Counts ``(K, K)`` int64 with rows = true class, columns = predicted class; all zeros for no items."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    predictions, labels = _labels(predictions, "predictions"), _labels(labels)
    if predictions.numel() != labels.numel():
        raise ValueError(f"predictions has {predictions.numel()} items but labels has {labels.numel()}")
    _check_range(predictions, num_classes, "predictions")
    _check_range(labels, num_classes, "labels")
    flat = torch.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)  # (true, predicted)


def classification_metrics(scores: Tensor, labels: Tensor) -> dict[str, float]:
    """``{"top1", "top5", "mean_class_accuracy"}`` in percent (top5 is top-K when there are fewer classes)."""
    top = topk_accuracy(scores, labels, (1, 5))
    return {"top1": top[1], "top5": top[5], "mean_class_accuracy": mean_class_accuracy(scores, labels)}


def epic_metrics(scores: Mapping[str, Tensor], labels: Mapping[str, Tensor]) -> dict[str, float]:
    """Epic-Kitchens metrics from ``{"verb": (N, 97), "noun": (N, 300)}`` scores and ``{"verb", "noun"}`` labels.

    Returns verb_top1, verb_top5, noun_top1, noun_top5, action_top1 (an action is right only when the top-1 verb
    and the top-1 noun of the same item are both right), verb_mean_class_accuracy, noun_mean_class_accuracy.
    """
    _heads(scores, labels)
    results: dict[str, float] = {}
    correct = {}
    for head in EPIC_HEADS:
        head_scores, head_labels = _scores_and_labels(scores[head], labels[head], head)
        top = topk_accuracy(head_scores, head_labels, (1, 5))
        results[f"{head}_top1"], results[f"{head}_top5"] = top[1], top[5]
        correct[head] = head_scores.argmax(dim=1) == head_labels
    results["action_top1"] = (correct["verb"] & correct["noun"]).float().mean().item() * 100.0
    for head in EPIC_HEADS:
        results[f"{head}_mean_class_accuracy"] = mean_class_accuracy(scores[head], labels[head])
    return results


def head_labels(labels: Tensor | Mapping[str, Tensor], heads: Mapping[str, int]) -> dict[str, Tensor]:
    """A batch's labels as the data gives them (a Tensor for one head, {head: Tensor} for several) keyed by the
    model's ``heads``."""
    if isinstance(labels, Tensor):
        if list(heads) != [""]:
            raise ValueError(f"the data gives one label per item but the model has the heads {list(heads)}")
        return {"": labels}
    missing = [head for head in heads if head not in labels]
    if missing:
        raise ValueError(f"the data's labels lack the head(s) {missing} of the model (labels: {sorted(labels)})")
    return {head: labels[head] for head in heads}


def _same_heads(scores: HeadTensors, labels: HeadTensors) -> None:
    if not isinstance(scores, Mapping) or not isinstance(labels, Mapping) or set(scores) != set(labels):
        found = {name: sorted(value) if isinstance(value, Mapping) else type(value).__name__
                 for name, value in (("scores", scores), ("labels", labels))}
        raise ValueError(f"scores and labels must be dicts with the same heads (\"\" for one head), got {found}")


def video_metrics(scores: HeadTensors, labels: HeadTensors) -> dict[str, float]:
    """``epic_metrics`` for the heads verb and noun, else ``classification_metrics`` of each head (the names
    prefixed by ``HEAD_`` for named heads)."""
    _same_heads(scores, labels)
    if set(scores) == set(EPIC_HEADS):
        return epic_metrics(scores, labels)
    results: dict[str, float] = {}
    for head, head_scores in scores.items():
        prefix = f"{head}_" if head else ""
        results.update({prefix + name: value
                        for name, value in classification_metrics(head_scores, labels[head]).items()})
    return results


# ---------------------------------------------------------------------- multi-view testing


class ViewAverager:
    """Averages softmax scores over the views of each video (multi-view testing).

    Each ``add`` gives a batch of items (one view each): the entry (video) index, the scores (probabilities;
    they are averaged as given), the label and the item index. An item index seen before is ignored, so the
    repeats with which ``DistributedSampler`` pads its shards count once; the first copy is kept. Every item's
    scores are kept until ``result`` (about items x classes x 4 bytes), because removing a duplicate that
    arrives with ``merge`` needs that item's own row.

    Gathering: each process calls ``state()``, the states are gathered (e.g. ``all_gather_object``), and one
    averager ``merge``s them all; the result equals adding every batch to a single averager.
    """

    def __init__(self) -> None:
        self._entries: list[Tensor] = []
        self._items: list[Tensor] = []
        self._scores: dict[str, list[Tensor]] = {}  # head -> batches
        self._labels: dict[str, list[Tensor]] = {}
        self._seen_items: set[int] = set()
        self._seen_entries: set[int] = set()
        self._num_classes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._seen_entries)

    def add(self, entry_index: Tensor, scores: HeadTensors, labels: HeadTensors, item_index: Tensor) -> None:
        """Add one batch: ``entry_index`` and ``item_index`` ``(B,)``, ``{head: (B, K_head)}`` scores and
        ``{head: (B,)}`` labels."""
        entry_index, item_index = _labels(entry_index, "entry_index"), _labels(item_index, "item_index")
        size = entry_index.numel()
        if item_index.numel() != size:
            raise ValueError(f"entry_index has {size} items but item_index has {item_index.numel()}")
        head_scores, head_labels = self._split(scores, labels)
        for head, values in head_scores.items():
            where = f"scores[{head!r}]"
            if values.dim() != 2 or values.shape[0] != size:
                raise ValueError(f"{where} must be ({size}, classes) to match entry_index, got {tuple(values.shape)}")
            if head_labels[head].numel() != size:
                raise ValueError(f"labels for {where} has {head_labels[head].numel()} items, expected {size}")
            expected = self._num_classes.get(head, values.shape[1])
            if values.shape[1] != expected:
                raise ValueError(f"{where} has {values.shape[1]} classes but earlier batches had {expected}")
        self._num_classes.update({head: values.shape[1] for head, values in head_scores.items()})
        keep = []
        for position, item in enumerate(item_index.tolist()):
            if item not in self._seen_items:
                self._seen_items.add(item)
                keep.append(position)
        if not keep:
            return
        keep_index = torch.tensor(keep, dtype=torch.long)
        self._entries.append(entry_index[keep_index])
        self._items.append(item_index[keep_index])
        self._seen_entries.update(entry_index[keep_index].tolist())
        for head, values in head_scores.items():
            self._scores.setdefault(head, []).append(values.detach().cpu().float()[keep_index])
            self._labels.setdefault(head, []).append(head_labels[head][keep_index])

    def _split(self, scores: HeadTensors, labels: HeadTensors) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Scores and labels as dicts of checked tensors, with the heads of earlier batches."""
        _same_heads(scores, labels)
        if self._num_classes and set(self._num_classes) != set(scores):
            raise ValueError(f"scores heads {sorted(scores)} differ from earlier batches' {sorted(self._num_classes)}")
        return dict(scores), {head: _labels(labels[head], f"labels[{head!r}]") for head in scores}

    def state(self) -> dict[str, Any]:
        """What was added, as ``add``'s keyword arguments (CPU tensors, picklable); ``merge`` takes it back."""
        if not self._items:
            return {"entry_index": torch.zeros(0, dtype=torch.long), "scores": None, "labels": None,
                    "item_index": torch.zeros(0, dtype=torch.long)}
        scores = {head: torch.cat(batches) for head, batches in self._scores.items()}
        labels = {head: torch.cat(batches) for head, batches in self._labels.items()}
        return {"entry_index": torch.cat(self._entries), "scores": scores, "labels": labels,
                "item_index": torch.cat(self._items)}

    def merge(self, state: Mapping[str, Any]) -> None:
        """Add another averager's ``state()``; items already present are ignored."""
        missing = {"entry_index", "scores", "labels", "item_index"} - set(state)
        if missing:
            raise ValueError(f"not a ViewAverager state: missing keys {sorted(missing)}")
        if state["scores"] is None:  # an averager that saw nothing
            return
        self.add(state["entry_index"], state["scores"], state["labels"], state["item_index"])

    def result(self) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor], Tensor]:
        """``(entries, mean_scores, labels, views)``: entry indices sorted ascending ``(V,)``, mean scores per video
        ``{head: (V, K_head)}``, the label per video ``{head: (V,)}``, the view count per video ``(V,)``.

        Raises ValueError when nothing was added or when the views of one video disagree on its label.
        """
        if not self._items:
            raise ValueError("ViewAverager is empty: no items were added")
        entries, position = torch.unique(torch.cat(self._entries), sorted=True, return_inverse=True)
        views = torch.bincount(position, minlength=entries.numel())
        mean_scores, video_labels = {}, {}
        for head, batches in self._scores.items():
            item_scores = torch.cat(batches).double()
            sums = item_scores.new_zeros(entries.numel(), item_scores.shape[1]).index_add_(0, position, item_scores)
            mean_scores[head] = (sums / views[:, None]).float()
            item_labels = torch.cat(self._labels[head])
            labels = torch.empty(entries.numel(), dtype=torch.long)
            labels[position] = item_labels
            disagree = (item_labels != labels[position]).nonzero()
            if disagree.numel():
                video = position[disagree[0, 0]]
                where = f"{head} label" if head else "label"
                raise ValueError(f"the views of entry {int(entries[video])} have different {where}s: "
                                 f"{sorted(set(item_labels[position == video].tolist()))}")
            video_labels[head] = labels
        return entries, mean_scores, video_labels, views


# ---------------------------------------------------------------------- files


def _names_for(class_names: Sequence[str] | Mapping[str, Sequence[str]] | None, head: str | None,
               num_classes: int) -> list[str]:
    """The class names of one head (indices as text when ``class_names`` is None), checked against K; a list
    for the head ``""`` (or None), {head: list} for named heads."""
    if class_names is None:
        return [str(index) for index in range(num_classes)]
    if head:
        if not isinstance(class_names, Mapping) or head not in class_names:
            raise ValueError(f"class_names must be a mapping with the head {head!r} for head scores, "
                             f"got {type(class_names).__name__}")
        names = list(class_names[head])
    else:
        if isinstance(class_names, Mapping):
            raise ValueError("class_names is a mapping of heads but the scores have one head; pass a list")
        names = list(class_names)
    if len(names) != num_classes:
        where = f"class_names[{head!r}]" if head else "class_names"
        raise ValueError(f"{where} has {len(names)} names but the scores have {num_classes} classes")
    return names


def write_predictions(path: str | os.PathLike, entry_indices: Tensor, video_paths: Sequence[str],
                      scores: HeadTensors, labels: HeadTensors,
                      class_names: Sequence[str] | Mapping[str, Sequence[str]] | None, top_k: int = 5) -> Path:
    """Write a CSV with one row per video (atomically); returns its path.

    ``entry_indices`` ``(V,)`` index ``video_paths``; ``scores`` / ``labels`` are per video, as ``ViewAverager``
    returns them. Columns, for the one head ``""``::

        video, label, pred_1, score_1, ..., pred_k, score_k, correct

    and for named heads (``{"verb": ..., "noun": ...}``) the same group per head with the head as prefix
    (``verb_label, verb_pred_1, verb_score_1, ..., verb_correct, noun_label, ...``), for Epic-Kitchens followed by
    ``action_correct`` (both heads' top-1 right). Labels and predictions are class names (indices when
    ``class_names`` is None), scores have 6 decimals, ``correct`` is 1 when the top-1 prediction is the label
    and 0 otherwise. ``top_k`` is clamped to the number of classes.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    entry_indices = _labels(entry_indices, "entry_indices")
    _same_heads(scores, labels)
    heads = {head: _scores_and_labels(scores[head], labels[head], head or None) for head in scores}
    count = next(iter(heads.values()))[0].shape[0]
    if entry_indices.numel() != count:
        raise ValueError(f"entry_indices has {entry_indices.numel()} items but scores has {count} rows")
    _check_range(entry_indices, len(video_paths), f"entry_indices (video_paths has {len(video_paths)} paths)")

    header = ["video"]
    columns = []  # per head: (prefix, names, top values, top indices, labels, correct)
    for head, (head_scores, head_labels) in heads.items():
        prefix = f"{head}_" if head else ""
        names = _names_for(class_names, head, head_scores.shape[1])
        k = min(top_k, head_scores.shape[1])
        top = head_scores.topk(k, dim=1)  # values, indices: (V, k)
        correct = top.indices[:, 0] == head_labels
        columns.append((prefix, names, top.values.tolist(), top.indices.tolist(), head_labels.tolist(), correct))
        header += [f"{prefix}label"]
        header += [f"{prefix}{kind}_{rank}" for rank in range(1, k + 1) for kind in ("pred", "score")]
        header += [f"{prefix}correct"]
    action_correct = None
    if list(heads) == list(EPIC_HEADS):
        action_correct = (columns[0][5] & columns[1][5]).tolist()
        header.append("action_correct")

    rows = [_prediction_row(str(video_paths[entry]), row, columns, action_correct)
            for row, entry in enumerate(entry_indices.tolist())]
    path = Path(path)
    atomic_write(path, lambda temp: _write_csv(temp, header, rows))
    return path


def _prediction_row(video: str, row: int, columns: list[tuple], action_correct: list[bool] | None) -> list[Any]:
    """One ``predictions.csv`` row: the video, then per head its label, top-k names and scores, and correctness."""
    cells: list[Any] = [video]
    for _prefix, names, values, indices, head_labels, correct in columns:
        cells.append(names[head_labels[row]])
        for value, index in zip(values[row], indices[row], strict=True):
            cells += [names[index], f"{value:.6f}"]
        cells.append(int(correct[row]))
    if action_correct is not None:
        cells.append(int(action_correct[row]))
    return cells


def _write_csv(path: str, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Any) -> int:
    return int(np.ceil(draw.textlength(text, font=font)))


def _draw_counts(draw: ImageDraw.ImageDraw, counts: np.ndarray, fractions: np.ndarray, origin: tuple[int, int],
                 cell: int, font: Any) -> None:
    """Each non-zero count centred in its cell (black on light cells, white on dark ones), when the text fits."""
    line_height = draw.textbbox((0, 0), "0", font=font)[3]
    if cell < max(_text_width(draw, str(int(counts.max())), font), line_height) + 2:
        return
    left, top = origin
    for (row, column), count in np.ndenumerate(counts):
        if count == 0:
            continue
        text = str(int(count))
        x = left + column * cell + (cell - _text_width(draw, text, font)) // 2
        y = top + row * cell + (cell - line_height) // 2
        draw.text((x, y), text, fill="white" if fractions[row, column] > 0.5 else "black", font=font)


def _draw_names(picture: Image.Image, names: Sequence[str], origin: tuple[int, int], cell: int, pad: int,
                font: Any) -> None:
    """Class names left of the grid's rows and, rotated to read bottom to top, above its columns."""
    draw = ImageDraw.Draw(picture)
    left, top = origin
    line_height = draw.textbbox((0, 0), "Ag", font=font)[3]
    for index, name in enumerate(names):
        text_width = _text_width(draw, name, font)
        offset = (cell - line_height) // 2
        draw.text((left - pad - text_width, top + index * cell + offset), name, fill="black", font=font)
        label = Image.new("RGB", (max(text_width, 1), line_height), "white")
        ImageDraw.Draw(label).text((0, 0), name, fill="black", font=font)
        label = label.rotate(90, expand=True)  # (line_height, text_width)
        picture.paste(label, (left + index * cell + offset, top - pad - text_width))


def _draw_scale(picture: Image.Image, origin: tuple[int, int], width: int, font: Any) -> None:
    """The colour scale at ``origin``: a ramp from white (0) to dark blue (1) over its labels."""
    left, top = origin
    ramp = _LOW + np.linspace(0.0, 1.0, width)[:, None] * (_HIGH - _LOW)  # (width, 3)
    bar = np.broadcast_to(ramp.round().astype(np.uint8)[None], (_SCALE_RAMP, width, 3))
    picture.paste(Image.fromarray(np.ascontiguousarray(bar), "RGB"), (left, top))
    draw = ImageDraw.Draw(picture)
    draw.rectangle([left, top, left + width - 1, top + _SCALE_RAMP - 1], outline=(160, 160, 160))
    below = top + _SCALE_RAMP + 2
    draw.text((left, below), "0", fill="black", font=font)
    draw.text((left + (width - _text_width(draw, CONFUSION_SCALE, font)) // 2, below), CONFUSION_SCALE,
              fill="black", font=font)
    draw.text((left + width - _text_width(draw, "1", font), below), "1", fill="black", font=font)


def save_confusion_picture(matrix: Tensor, path: str | os.PathLike, class_names: Sequence[str] | None = None,
                           max_side: int = 1024) -> Path:
    """Write the row-normalised confusion ``matrix`` ``(K, K)`` as a PNG heat map (atomically); returns its path.

    Each row is divided by its sum (rows without items stay white); 0 is white, 1 dark blue, and a colour scale
    under the grid says so. Cells large enough for the text show their count (none for 0). Every cell is a square
    of ``cell`` pixels, the largest size (at least 1) for which the picture, with a title line, the scale and, when
    ``class_names`` is given and K <= 40, the names along the left and (rotated) the top, fits in ``max_side``
    pixels; with more classes than that allows the picture is larger than ``max_side``.
    """
    if not isinstance(matrix, Tensor) or matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        shape = tuple(matrix.shape) if isinstance(matrix, Tensor) else type(matrix).__name__
        raise ValueError(f"matrix must be a square (K, K) Tensor, got {shape}")
    num_classes = matrix.shape[0]
    if num_classes == 0:
        raise ValueError("matrix is empty (0 classes)")
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    names = _names_for(class_names, None, num_classes) if class_names is not None else None
    if names is not None and num_classes > 40:
        log.info("confusion picture: %d classes, class names left out (drawn only up to 40)", num_classes)
        names = None

    counts = matrix.detach().cpu().double()
    totals = counts.sum(dim=1, keepdim=True)
    fractions = torch.where(totals > 0, counts / totals.clamp_min(1e-12), torch.zeros_like(counts)).numpy()
    colours = (_LOW + fractions[..., None] * (_HIGH - _LOW)).round().astype(np.uint8)  # (K, K, 3)

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad = 4
    line_height = measure.textbbox((0, 0), "Ag", font=font)[3]
    title_height = line_height + 2 * pad
    name_width = max(_text_width(measure, name, font) for name in names) if names else 0
    left = name_width + 2 * pad if names else pad
    top = name_width + 2 * pad if names else 0
    scale_height = _SCALE_RAMP + line_height + 3 * pad
    cell = max(1, (max_side - max(left + pad, title_height + top + scale_height)) // num_classes)
    grid = cell * num_classes
    width = max(left + grid + pad, _text_width(measure, CONFUSION_TITLE, font) + 2 * pad)
    height = title_height + top + grid + scale_height

    picture = Image.new("RGB", (width, height), "white")
    grid_top = title_height + top
    picture.paste(Image.fromarray(colours, "RGB").resize((grid, grid), Image.Resampling.NEAREST), (left, grid_top))
    draw = ImageDraw.Draw(picture)
    draw.text((pad, pad), CONFUSION_TITLE, fill="black", font=font)
    _draw_names(picture, names or [], (left, grid_top), cell, pad, font)
    _draw_counts(draw, counts.numpy(), fractions, (left, grid_top), cell, font)
    _draw_scale(picture, (left, grid_top + grid + pad), max(grid, 3 * line_height), font)

    path = Path(path)
    atomic_write(path, lambda temp: picture.save(temp, format="PNG"))
    return path


def _format_value(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def format_metrics_table(metrics: Mapping[str, object]) -> str:
    """Metrics as two aligned columns (name left, value right: floats with 2 decimals, ints and text as they are)
    under a header line."""
    rows = [("metric", "value")] + [(str(name), _format_value(value)) for name, value in metrics.items()]
    name_width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    lines = [f"{name:<{name_width}}  {value:>{value_width}}" for name, value in rows]
    lines.insert(1, "-" * (name_width + 2 + value_width))
    return "\n".join(lines)
