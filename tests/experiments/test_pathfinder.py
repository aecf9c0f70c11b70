"""Pathfinder-32: images are deterministic, their geometry keeps the task's rules, and datasets are written soundly."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from motionformer_experiments.lra.pathfinder import (
    DIFFICULTIES,
    PathfinderGeometry,
    PathfinderSettings,
    generate_pathfinder,
    render_pathfinder,
)

SETTINGS = PathfinderSettings()
SEEDS = range(24)


def _segment_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Exact distances between every segment of ``first`` (N, 2, 2) and of ``second`` (M, 2, 2): (N, M)."""
    a, b = first[:, None, 0], first[:, None, 1]  # (N, 1, 2)
    c, d = second[None, :, 0], second[None, :, 1]  # (1, M, 2)

    def to_segment(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        direction = end - start
        along = np.clip(((point - start) * direction).sum(-1) / (direction**2).sum(-1), 0, 1)
        return np.linalg.norm(point - start - along[..., None] * direction, axis=-1)

    def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

    crossing = ((cross(b - a, c - a) * cross(b - a, d - a) < 0) & (cross(d - c, a - c) * cross(d - c, b - c) < 0))
    ends = np.minimum.reduce([to_segment(a, c, d), to_segment(b, c, d), to_segment(c, a, b), to_segment(d, a, b)])
    return np.where(crossing, 0.0, ends)


def _point_distances(point: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Distances from a point (2,) to each segment of (N, 2, 2)."""
    start, direction = segments[:, 0], segments[:, 1] - segments[:, 0]
    along = np.clip(((point - start) * direction).sum(-1) / (direction**2).sum(-1), 0, 1)
    return np.linalg.norm(point - start - along[:, None] * direction, axis=-1)


def _geometries(label: int, settings: PathfinderSettings = SETTINGS) -> list[PathfinderGeometry]:
    return [render_pathfinder(label, seed, settings, return_geometry=True)[1] for seed in SEEDS]


def test_render_is_deterministic_for_a_seed():
    first = render_pathfinder(1, 123)
    assert np.array_equal(first, render_pathfinder(1, 123))
    assert np.array_equal(first, render_pathfinder(1, np.random.default_rng(123)))
    assert not np.array_equal(first, render_pathfinder(1, 124))


def test_image_shape_dtype_and_values():
    image = render_pathfinder(0, 7)
    assert image.shape == (32, 32) and image.dtype == np.uint8
    assert image.max() == 255  # the markers are white
    strokes = image[(image > 0) & (image < 255)]
    assert strokes.size > 50 and strokes.max() <= round(255 * SETTINGS.paddle_contrast)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    assert not border.any()  # everything stays padding (1 px) inside the frame


def test_labels_share_the_contours_and_move_the_markers():
    _, positive = render_pathfinder(1, 5, return_geometry=True)
    _, negative = render_pathfinder(0, 5, return_geometry=True)
    assert len(positive.contours) == len(negative.contours)
    assert all(np.array_equal(p, n) for p, n in zip(positive.contours, negative.contours, strict=True))
    assert not np.array_equal(positive.markers, negative.markers)


@pytest.mark.parametrize("label", [0, 1])
def test_markers_sit_on_ends_of_the_targets(label: int):
    for geometry in _geometries(label):
        first, second = geometry.marked
        assert (first == second) if label == 1 else {first, second} == {0, 1}
        assert first in (0, 1) and second in (0, 1)
        for marker, contour in zip(geometry.markers, geometry.marked, strict=True):
            ends = geometry.contours[contour][[0, -1], [0, 1]]  # start of the first paddle, end of the last
            assert np.isclose(np.linalg.norm(ends - marker, axis=1), 0).any()
        if label == 1:
            ends = geometry.contours[first][[0, -1], [0, 1]]
            assert {tuple(point) for point in ends} == {tuple(point) for point in geometry.markers}
        distance = np.linalg.norm(geometry.markers[0] - geometry.markers[1])
        assert distance >= SETTINGS.seed_distance


@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_contours_have_their_lengths_and_stay_inside(difficulty: str):
    settings = PathfinderSettings.preset(difficulty)
    low = settings.padding
    for geometry in _geometries(0, settings) + _geometries(1, settings):
        targets, distractors = geometry.contours[:2], geometry.contours[2:]
        assert all(len(contour) == settings.contour_length for contour in targets)
        assert all(len(contour) == settings.paddles_per_distractor for contour in distractors)
        assert len(distractors) <= settings.distractor_count
        points = np.concatenate([contour.reshape(-1, 2) for contour in geometry.contours])
        assert points.min() >= low and points.max() <= settings.image_size - low
        for contour in geometry.contours:
            lengths = np.linalg.norm(contour[:, 1] - contour[:, 0], axis=1)
            assert np.allclose(lengths, settings.paddle_length)
            gaps = np.linalg.norm(contour[1:, 0] - contour[:-1, 1], axis=1)
            assert np.allclose(gaps, settings.paddle_margin)
            directions = contour[:, 1] - contour[:, 0]
            before, after = directions[:-1], directions[1:]
            sines = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
            turns = np.arctan2(sines, (before * after).sum(1))
            assert np.abs(turns).max(initial=0) <= settings.continuity + 1e-9


def test_contours_and_markers_keep_their_margins():
    stroke_clearance = SETTINGS.margin + SETTINGS.paddle_thickness
    marker_clearance = SETTINGS.marker_radius + SETTINGS.margin + SETTINGS.paddle_thickness / 2
    for geometry in _geometries(0) + _geometries(1):
        contours = geometry.contours
        for first, second in itertools.combinations(range(len(contours)), 2):
            assert _segment_distances(contours[first], contours[second]).min() >= stroke_clearance
        for contour in contours:
            within = _segment_distances(contour, contour)
            apart = np.abs(np.subtract.outer(np.arange(len(contour)), np.arange(len(contour)))) >= 2
            assert within[apart].min(initial=math.inf) >= stroke_clearance
        for marker, owner in zip(geometry.markers, geometry.marked, strict=True):
            for index, contour in enumerate(contours):
                distances = _point_distances(marker, contour)
                if index == owner:  # all but the two paddles at the marked end
                    at_start = np.linalg.norm(contour[0, 0] - marker) < 1e-9
                    distances = distances[2:] if at_start else distances[:-2]
                assert distances.min(initial=math.inf) >= marker_clearance


def test_presets_follow_lra():
    assert [PathfinderSettings.preset(name).contour_length for name in ("easy", "intermediate", "hard")] == [6, 9, 14]
    hard = PathfinderSettings.preset("hard")
    assert hard == PathfinderSettings()
    assert (hard.paddles_per_distractor, hard.distractor_count) == (4, 5)
    easy = PathfinderSettings.preset("easy")
    assert (easy.paddles_per_distractor, easy.distractor_count) == (2, 10)
    assert PathfinderSettings.preset("easy", num_distractors=0).distractor_count == 0


def _read_split(root: Path, split: str) -> list[tuple[str, int]]:
    lines = (root / f"{split}.txt").read_text().splitlines()
    return [(path, int(label)) for path, label in (line.split() for line in lines)]


def test_generate_writes_balanced_splits_of_images(tmp_path: Path):
    summary = generate_pathfinder(tmp_path, size=40, seed=3, workers=1, progress=False)
    assert summary["generated"] and summary["written"] == 40
    splits = {split: _read_split(tmp_path, split) for split in ("train", "val", "test")}
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 32, "val": 4, "test": 4}
    for rows in splits.values():
        assert sum(label for _, label in rows) * 2 == len(rows)
    rows = [row for split in ("train", "val", "test") for row in splits[split]]
    assert [path for path, _ in rows] == [f"images/00/{index:06d}.png" for index in range(40)]
    for index, (path, label) in enumerate(rows):
        with Image.open(tmp_path / path) as image:
            assert image.format == "PNG" and image.mode == "L" and image.size == (32, 32)
            pixels = np.asarray(image)
        if index < 3:  # image i is drawn from (seed, 0, i), as documented
            assert np.array_equal(pixels, render_pathfinder(label, np.random.default_rng([3, 0, index])))
    record = json.loads((tmp_path / "settings.json").read_text())
    assert record["size"] == 40 and record["seed"] == 3 and record["settings"]["contour_length"] == 14
    assert not list(tmp_path.rglob("*.tmp"))


def test_generate_does_not_depend_on_workers(tmp_path: Path):
    generate_pathfinder(tmp_path / "one", size=24, workers=1, progress=False)
    generate_pathfinder(tmp_path / "two", size=24, workers=2, progress=False)
    files = sorted(path.relative_to(tmp_path / "one") for path in (tmp_path / "one").rglob("*") if path.is_file())
    assert len(files) == 24 + 4
    for path in files:
        assert (tmp_path / "one" / path).read_bytes() == (tmp_path / "two" / path).read_bytes()


def test_rerun_leaves_a_complete_folder_alone_and_finishes_an_interrupted_one(tmp_path: Path):
    generate_pathfinder(tmp_path, size=20, workers=1, progress=False)
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    stamps = {path: path.stat().st_mtime_ns for path in files}
    summary = generate_pathfinder(tmp_path, size=20, workers=1, progress=False)
    assert not summary["generated"] and summary["written"] == 0
    assert {path: path.stat().st_mtime_ns for path in files} == stamps

    # As a killed run leaves it: label files not yet written, an image missing, a temporary file.
    (tmp_path / "test.txt").unlink()
    missing = tmp_path / "images/00/000005.png"
    expected = missing.read_bytes()
    missing.unlink()
    (tmp_path / "images/00/.000006.png.123.tmp").write_bytes(b"partial")
    summary = generate_pathfinder(tmp_path, size=20, workers=1, progress=False)
    assert summary["generated"] and summary["written"] == 1
    assert missing.read_bytes() == expected
    assert (tmp_path / "test.txt").is_file() and not list(tmp_path.rglob("*.tmp"))
    kept = tmp_path / "images/00/000004.png"
    assert kept.stat().st_mtime_ns == stamps[kept]


def test_other_arguments_redraw_the_folder(tmp_path: Path):
    generate_pathfinder(tmp_path, size=20, seed=0, workers=1, progress=False)
    summary = generate_pathfinder(tmp_path, size=4, seed=1, workers=1, progress=False)
    assert summary["written"] == 4
    assert sorted(path.name for path in (tmp_path / "images/00").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    labels = [label for path, label in _read_split(tmp_path, "train")]
    for index, label in enumerate(labels):
        pixels = np.asarray(Image.open(tmp_path / f"images/00/{index:06d}.png"))
        assert np.array_equal(pixels, render_pathfinder(label, np.random.default_rng([1, 0, index])))


@pytest.mark.parametrize(("arguments", "named"), [
    ({"size": 0}, "size=0"), ({"size": 7}, "size=7"), ({"size": -2}, "size=-2"), ({"size": 10.0}, "size=10.0"),
    ({"seed": -1}, "seed=-1"), ({"workers": 0}, "workers=0"), ({"settings": "hard"}, "settings='hard'"),
])
def test_generate_rejects_invalid_arguments(tmp_path: Path, arguments: dict, named: str):
    with pytest.raises(ValueError, match=named):
        generate_pathfinder(tmp_path, **{"size": 20, "progress": False, **arguments})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("label", "rng", "named"), [(2, 0, "label=2"), (-1, 0, "label=-1"), (1, -3, "rng=-3"),
                                                     (1, "seed", "rng='seed'")])
def test_render_rejects_invalid_arguments(label: object, rng: object, named: str):
    with pytest.raises(ValueError, match=named):
        render_pathfinder(label, rng)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "named"), [
    ({"contour_length": 0}, "contour_length=0"), ({"paddle_contrast": 1.5}, "paddle_contrast=1.5"),
    ({"margin": -1.0}, "margin=-1.0"), ({"antialias_scale": 1.5}, "antialias_scale=1.5"),
    ({"distractor_length": 0}, "distractor_length=0"), ({"image_size": 4}, "image_size=4"),
])
def test_settings_reject_invalid_values(fields: dict, named: str):
    with pytest.raises(ValueError, match=named):
        PathfinderSettings(**fields)
    with pytest.raises(ValueError, match="difficulty='medium'"):
        PathfinderSettings.preset("medium")


def test_settings_without_room_raise():
    with pytest.raises(RuntimeError, match="could not fit two contours"):
        render_pathfinder(1, 0, PathfinderSettings(image_size=10))
