"""Metrics: hand-computed accuracies, confusion counts, Epic action accuracy, view averaging, output files."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from motionformer.engine.metrics import (
    CONFUSION_TITLE,
    ViewAverager,
    classification_metrics,
    confusion_matrix,
    epic_metrics,
    format_metrics_table,
    head_labels,
    mean_class_accuracy,
    save_confusion_picture,
    topk_accuracy,
    video_metrics,
    write_predictions,
)

# 4 items, 3 classes. Rankings: item 0 -> 0,1,2; item 1 -> 2,1,0; item 2 -> 1,0,2; item 3 -> 2,0,1.
SCORES = torch.tensor([[0.7, 0.2, 0.1],
                       [0.1, 0.3, 0.6],
                       [0.3, 0.5, 0.2],
                       [0.3, 0.1, 0.6]])
LABELS = torch.tensor([0, 1, 1, 1])  # top-1 right: items 0, 2; top-2 right: 0, 1, 2; top-3: all


def test_topk_accuracy_by_hand():
    assert topk_accuracy(SCORES, LABELS, ks=(1, 2, 3)) == pytest.approx({1: 50.0, 2: 75.0, 3: 100.0})


def test_topk_larger_than_classes_is_clamped():
    assert topk_accuracy(SCORES, LABELS) == pytest.approx({1: 50.0, 5: 100.0})
    assert classification_metrics(SCORES, LABELS)["top5"] == pytest.approx(100.0)


def test_mean_class_accuracy_by_hand():
    # class 0: 1 of 1 right; class 1: 1 of 3 right (item 2); class 2 does not occur and is left out
    assert mean_class_accuracy(SCORES, LABELS) == pytest.approx((100.0 + 100.0 / 3) / 2)
    assert classification_metrics(SCORES, LABELS) == pytest.approx(
        {"top1": 50.0, "top5": 100.0, "mean_class_accuracy": (100.0 + 100.0 / 3) / 2})


def test_confusion_matrix_counts():
    matrix = confusion_matrix(SCORES.argmax(1), LABELS, num_classes=3)
    assert matrix.dtype == torch.int64
    # rows true, columns predicted: true 0 -> 0; true 1 -> 2, 1, 2
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 2], [0, 0, 0]]
    assert confusion_matrix(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 2).sum() == 0


def _epic_case():
    """Item 0: verb right, noun wrong; item 1: verb wrong, noun right; item 2: both right -> action 1 of 3."""
    verb = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])  # argmax 0, 0, 1
    noun = torch.tensor([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])  # argmax 2, 0, 1
    return {"verb": verb, "noun": noun}, {"verb": torch.tensor([0, 1, 1]), "noun": torch.tensor([0, 0, 1])}


def test_epic_action_needs_both_heads_right_on_the_same_item():
    scores, labels = _epic_case()
    metrics = epic_metrics(scores, labels)
    assert list(metrics) == ["verb_top1", "verb_top5", "noun_top1", "noun_top5", "action_top1",
                             "verb_mean_class_accuracy", "noun_mean_class_accuracy"]
    assert metrics["verb_top1"] == pytest.approx(200 / 3)
    assert metrics["noun_top1"] == pytest.approx(200 / 3)
    assert metrics["action_top1"] == pytest.approx(100 / 3)
    assert metrics["verb_mean_class_accuracy"] == pytest.approx(75.0)  # class 0: 1/1, class 1: 1/2
    assert video_metrics(scores, labels) == metrics
    assert video_metrics({"": SCORES}, {"": LABELS}) == classification_metrics(SCORES, LABELS)
    other_heads = video_metrics({"a": SCORES, "b": SCORES}, {"a": LABELS, "b": LABELS})
    assert other_heads["b_top1"] == classification_metrics(SCORES, LABELS)["top1"] and "action_top1" not in other_heads


@pytest.mark.parametrize(("scores", "labels", "message"), [
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "empty"),
    (SCORES, LABELS[:3], "4 rows but labels has 3"),
    (SCORES[0], LABELS, "2-D"),
    (SCORES, LABELS.float(), "integer"),
    (SCORES, torch.tensor([0, 1, 1, 3]), r"0\.\.2"),
])
def test_bad_input_is_named(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        topk_accuracy(scores, labels)


def test_bad_epic_and_confusion_input_is_named():
    scores, labels = _epic_case()
    with pytest.raises(ValueError, match="noun"):
        epic_metrics({"verb": scores["verb"]}, labels)
    with pytest.raises(ValueError, match="different item counts"):
        epic_metrics({"verb": scores["verb"], "noun": scores["noun"][:2]}, labels)
    with pytest.raises(ValueError, match="predictions has 2 items but labels has 3"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 1, 1]), 2)
    with pytest.raises(ValueError, match="same heads"):
        video_metrics(SCORES, LABELS)
    with pytest.raises(ValueError, match="same heads"):
        video_metrics({"verb": scores["verb"]}, labels)


def test_head_labels_follow_the_model_heads():
    assert head_labels(LABELS, {"": 3})[""] is LABELS
    epic = {"noun": LABELS, "verb": LABELS}
    assert list(head_labels(epic, {"verb": 2, "noun": 3})) == ["verb", "noun"]
    with pytest.raises(ValueError, match=r"one label per item but the model has the heads \['verb', 'noun'\]"):
        head_labels(LABELS, {"verb": 2, "noun": 3})
    with pytest.raises(ValueError, match=r"lack the head\(s\) \['noun'\]"):
        head_labels({"verb": LABELS}, {"verb": 2, "noun": 3})


# ---------------------------------------------------------------------- ViewAverager


def _views():
    """Videos 7 and 3 with 2 views each (items 14, 15 and 6, 7) and video 5 with 1 view (item 10)."""
    entries = torch.tensor([7, 3, 7, 5, 3])
    items = torch.tensor([14, 6, 15, 10, 7])
    scores = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.8, 0.2], [0.5, 0.5], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 0, 1, 1])
    return entries, {"": scores}, {"": labels}, items


def _rows(heads, rows):
    return {name: value[rows] for name, value in heads.items()}


def test_view_averager_averages_per_video_and_ignores_repeated_items():
    entries, scores, labels, items = _views()
    averager = ViewAverager()
    averager.add(entries[:3], _rows(scores, slice(0, 3)), _rows(labels, slice(0, 3)), items[:3])
    averager.add(entries[3:], _rows(scores, slice(3, None)), _rows(labels, slice(3, None)), items[3:])
    # DistributedSampler padding: item 14 again (with different scores, which must not count)
    averager.add(torch.tensor([7]), {"": torch.tensor([[0.0, 1.0]])}, {"": torch.tensor([0])}, torch.tensor([14]))
    assert len(averager) == 3
    videos, mean, video_labels, views = averager.result()
    assert videos.tolist() == [3, 5, 7]
    assert views.tolist() == [2, 1, 2]
    assert video_labels[""].tolist() == [1, 1, 0]
    torch.testing.assert_close(mean[""], torch.tensor([[0.3, 0.7], [0.5, 0.5], [0.7, 0.3]]))


def test_view_averager_merge_equals_adding_everything_once():
    entries, scores, labels, items = _views()
    whole = ViewAverager()
    whole.add(entries, scores, labels, items)
    first, second = ViewAverager(), ViewAverager()
    first.add(entries[:3], _rows(scores, slice(0, 3)), _rows(labels, slice(0, 3)), items[:3])
    second.add(entries[2:], _rows(scores, slice(2, None)), _rows(labels, slice(2, None)), items[2:])  # item 15 twice
    merged = ViewAverager()
    for state in (first.state(), pickle.loads(pickle.dumps(second.state())), ViewAverager().state()):
        merged.merge(state)
    for got, expected in zip(merged.result(), whole.result(), strict=True):
        torch.testing.assert_close(got, expected)


def test_view_averager_heads():
    averager = ViewAverager()
    verb = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    noun = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    averager.add(torch.tensor([0, 0]), {"verb": verb, "noun": noun},
                 {"verb": torch.tensor([1, 1]), "noun": torch.tensor([2, 2])}, torch.tensor([0, 1]))
    videos, mean, video_labels, views = averager.result()
    assert videos.tolist() == [0] and views.tolist() == [2]
    torch.testing.assert_close(mean["verb"], torch.tensor([[0.4, 0.6]]))
    torch.testing.assert_close(mean["noun"], torch.tensor([[0.5, 0.0, 0.5]]))
    assert video_labels["noun"].tolist() == [2]
    with pytest.raises(ValueError, match="heads"):
        averager.add(torch.tensor([1]), {"verb": verb[:1]}, {"verb": torch.tensor([1])}, torch.tensor([2]))


def test_view_averager_errors():
    with pytest.raises(ValueError, match="empty"):
        ViewAverager().result()
    averager = ViewAverager()
    with pytest.raises(ValueError, match=r"\(2, classes\)"):
        averager.add(torch.tensor([0, 1]), {"": torch.rand(3, 2)}, {"": torch.tensor([0, 1])}, torch.tensor([0, 1]))
    averager.add(torch.tensor([4, 4]), {"": torch.rand(2, 2)}, {"": torch.tensor([0, 1])}, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="entry 4 have different labels"):
        averager.result()


# ---------------------------------------------------------------------- files


def _read_csv(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_write_predictions_single_head(tmp_path):
    path = write_predictions(tmp_path / "out" / "predictions.csv", torch.tensor([2, 0]), ["a.mp4", "b.mp4", "c.mp4"],
                             {"": SCORES[:2]}, {"": LABELS[:2]}, ["cat", "dog", "eel"], top_k=2)
    rows = _read_csv(path)
    assert list(rows[0]) == ["video", "label", "pred_1", "score_1", "pred_2", "score_2", "correct"]
    assert rows[0] == {"video": "c.mp4", "label": "cat", "pred_1": "cat", "score_1": "0.700000", "pred_2": "dog",
                       "score_2": "0.200000", "correct": "1"}
    assert (rows[1]["video"], rows[1]["label"], rows[1]["pred_1"], rows[1]["correct"]) == ("a.mp4", "dog", "eel", "0")
    assert [p.name for p in path.parent.iterdir()] == ["predictions.csv"]  # no temporary file left behind


def test_write_predictions_heads_without_names(tmp_path):
    scores, labels = _epic_case()
    path = write_predictions(tmp_path / "epic.csv", torch.tensor([0, 1, 2]), ["x", "y", "z"], scores, labels, None)
    rows = _read_csv(path)
    assert list(rows[0]) == ["video", "verb_label", "verb_pred_1", "verb_score_1", "verb_pred_2", "verb_score_2",
                             "verb_correct", "noun_label", "noun_pred_1", "noun_score_1", "noun_pred_2",
                             "noun_score_2", "noun_pred_3", "noun_score_3", "noun_correct", "action_correct"]
    assert [(r["verb_correct"], r["noun_correct"], r["action_correct"]) for r in rows] == [
        ("1", "0", "0"), ("0", "1", "0"), ("1", "1", "1")]
    assert rows[0]["noun_pred_1"] == "2"
    with pytest.raises(ValueError, match=r"class_names\['noun'\] has 2 names but the scores have 3"):
        write_predictions(tmp_path / "bad.csv", torch.tensor([0, 1, 2]), ["x", "y", "z"], scores, labels,
                          {"verb": ["take", "put"], "noun": ["cup", "pan"]})
    assert not (tmp_path / "bad.csv").exists()


@pytest.mark.parametrize("names", [None, ["cat", "dog", "a longer class name"]])
def test_confusion_picture(tmp_path, names):
    matrix = torch.tensor([[4, 0, 0], [1, 2, 1], [0, 0, 0]])  # row fractions: 1; 0.25, 0.5, 0.25; none
    path = save_confusion_picture(matrix, tmp_path / "confusion.png", class_names=names, max_side=400)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert 400 - 3 < max(image.size) <= 400  # cells as large as fit: at most one pixel per class short
        pixels = np.asarray(image.convert("RGB"))
    rows, columns = (pixels == (8, 48, 107)).all(axis=-1).nonzero()  # dark blue: the one cell with fraction 1
    top, left = rows.min(), columns.min()
    cell = rows.max() - top + 1
    assert cell > 50 and columns.max() - left + 1 == cell
    full = pixels[top:top + cell, left:left + cell]
    assert (full == (8, 48, 107)).all(axis=-1).mean() > 0.9 and (full.min(-1) > 200).any()  # its count, in white
    half = pixels[top + cell:top + 2 * cell, left + cell:left + 2 * cell]  # halfway between white and dark blue
    assert (half == (132, 152, 181)).all(axis=-1).mean() > 0.9 and (half.max(-1) < 60).any()  # its count, in black
    scale = pixels[top + 3 * cell:].astype(int)  # under the grid: the colour scale from white to dark blue
    assert (np.abs(scale - (8, 48, 107)).sum(-1) <= 6).any() and (np.abs(scale - (132, 152, 181)).sum(-1) <= 3).any()
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]


def test_confusion_picture_more_classes_than_pixels(tmp_path):
    path = save_confusion_picture(torch.eye(150, dtype=torch.long), tmp_path / "big.png",
                                  class_names=[f"c{i}" for i in range(150)], max_side=100)
    with Image.open(path) as image:
        assert image.size[1] >= 150  # one pixel per cell at least; names left out above 40 classes


def test_format_metrics_table():
    table = format_metrics_table({"top1": 71.256, "mean_class_accuracy": 5.0})
    assert table.splitlines() == ["metric               value",
                                  "--------------------------",
                                  "top1                 71.26",
                                  "mean_class_accuracy   5.00"]
    assert CONFUSION_TITLE.startswith("confusion matrix")
