"""The synthetic motion dataset: each class's motion is in the pixels, single frames are at chance, files are sound."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from motionformer.data.synthetic import MIRRORED, MOTION_CLASSES, TIME_REVERSED, generate, render_clip

SIZE, FRAMES = 48, 8
LINE = re.compile(r"videos/(?P<folder>[a-z_]+)/\d{6}\.mp4 (?P<label>\d+)")


def _wrap(offset: np.ndarray | float, size: int) -> np.ndarray:
    """Offsets on the torus, in [-size / 2, size / 2)."""
    return (np.asarray(offset) + size / 2) % size - size / 2


def _centroid(mask: np.ndarray) -> np.ndarray:
    """(x, y) centre of an (H, W) coverage mask on the torus (circular means, so a wrapped object is one object)."""
    size = mask.shape[0]
    turns = 2 * np.pi * np.arange(size) / size
    columns, rows = mask.sum(0), mask.sum(1)
    x = np.arctan2(columns @ np.sin(turns), columns @ np.cos(turns))
    y = np.arctan2(rows @ np.sin(turns), rows @ np.cos(turns))
    return np.array([x, y]) * size / (2 * np.pi) % size


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(H, W, C) image sampled at real pixel coordinates, wrapping around the edges."""
    size = image.shape[0]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = (1 - fx) * image[y0 % size, x0 % size] + fx * image[y0 % size, (x0 + 1) % size]
    bottom = (1 - fx) * image[(y0 + 1) % size, x0 % size] + fx * image[(y0 + 1) % size, (x0 + 1) % size]
    return (1 - fy) * top + fy * bottom


def _spin_evidence(clip: np.ndarray, mask: np.ndarray, t: int, degrees: float = 4.0) -> float:
    """From pixels: > 0 if frame t + 1 matches frame t turned anticlockwise (on screen) better than clockwise."""
    size = clip.shape[1]
    shift = np.round(size / 2 - _centroid(mask[t])).astype(int)  # bring the object to the middle, (x, y)
    before, after, inside = (np.roll(image, (shift[1], shift[0]), axis=(0, 1)).astype(np.float64)
                             for image in (clip[t], clip[t + 1], mask[t + 1]))
    middle = _centroid(np.roll(mask[t], (shift[1], shift[0]), axis=(0, 1)))
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = x - middle[0], y - middle[1]
    errors = []
    for sign in (1, -1):
        # the pixel of `after` at (x, y) came from `before` turned back by sign * degrees (y is down on screen)
        turn = np.radians(sign * degrees)
        turned = _bilinear(before, middle[0] + np.cos(turn) * dx - np.sin(turn) * dy,
                           middle[1] + np.sin(turn) * dx + np.cos(turn) * dy)
        errors.append(np.sum((turned - after) ** 2 * (inside[..., None] > 0.99)))
    return float(errors[1] - errors[0])


def test_class_lists_and_partners():
    assert len(MOTION_CLASSES) == len(set(MOTION_CLASSES)) == 10
    for partners in (TIME_REVERSED, MIRRORED):
        assert set(partners) == set(MOTION_CLASSES)
        assert all(partners[partners[name]] == name for name in MOTION_CLASSES)


def test_render_shape_and_errors():
    clip = render_clip("moving up", num_frames=5, size=32, rng=0, camera_pan=True)
    assert clip.shape == (5, 32, 32, 3) and clip.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown motion class"):
        render_clip("jumping", rng=0)
    with pytest.raises(ValueError, match="out of range"):
        render_clip(len(MOTION_CLASSES), rng=0)
    with pytest.raises(ValueError, match="even"):
        render_clip(0, size=33, rng=0)


@pytest.mark.parametrize("name", MOTION_CLASSES)
def test_played_backwards_is_the_reversed_class(name):
    """The docstring's pairing, draw for draw: same seed, reversed frames, partner class."""
    clip = render_clip(name, num_frames=FRAMES, size=SIZE, rng=7)
    partner = render_clip(TIME_REVERSED[name], num_frames=FRAMES, size=SIZE, rng=7)
    np.testing.assert_array_equal(clip[::-1], partner)


@pytest.mark.parametrize("name", MOTION_CLASSES)
def test_motion_is_in_the_pixels(name):
    """Measured from the rendered masks and frames, not from the drawn parameters."""
    for seed in range(3):
        clip, trajectory = render_clip(name, num_frames=FRAMES, size=SIZE, rng=seed, return_trajectory=True)
        mask = trajectory.mask
        # without panning only the object changes: pixels it never covers stay as they are
        background = (mask.max(0) == 0)[..., None]
        assert np.all((clip == clip[:1]) | ~background)
        steps = np.stack([_wrap(_centroid(b) - _centroid(a), SIZE) for a, b in itertools.pairwise(mask)])
        areas = mask.sum((1, 2))
        spins = np.array([_spin_evidence(clip, mask, t) for t in range(FRAMES - 1)])
        half = FRAMES // 2
        if name.startswith("moving"):
            axis = 1 if name in ("moving up", "moving down") else 0
            sign = -1 if name in ("moving left", "moving up", "moving left then right") else 1
            assert np.all(np.abs(steps[:, 1 - axis]) < 0.1)
            if name.endswith("then right") or name.endswith("then left"):
                # out for the first half, a pause at the turn when the frame count is even, then back
                assert np.all(sign * steps[:half - 1, 0] > 0.5) and np.all(sign * steps[half:, 0] < -0.5)
            else:
                assert np.all(sign * steps[:, axis] > 0.5)
        elif name.startswith("rotating"):
            assert np.all(np.abs(steps) < 0.1)
            sign = 1 if name == "rotating anticlockwise" else -1
            assert np.all(sign * spins > 0)
        else:
            sign = 1 if name == "approaching" else -1
            assert np.all(np.abs(steps) < 0.1)
            assert np.all(sign * np.diff(areas) > 0)


@pytest.mark.parametrize("name", ["moving right", "moving up", "rotating clockwise", "approaching"])
def test_camera_pan_moves_the_scene_and_keeps_the_relative_motion(name):
    clip, panned = render_clip(name, num_frames=FRAMES, size=SIZE, rng=3, camera_pan=True, return_trajectory=True)
    _, still = render_clip(name, num_frames=FRAMES, size=SIZE, rng=3, return_trajectory=True)
    # the object moves in the scene as without panning; on screen the camera's motion is taken away
    np.testing.assert_allclose(panned.position + panned.camera, still.position)
    np.testing.assert_allclose(panned.angle, still.angle)
    np.testing.assert_allclose(panned.radius, still.radius)
    assert np.ptp(panned.camera[:, 0]) + np.ptp(panned.camera[:, 1]) > 3
    # in the pixels the background follows the camera: the last frame is the first shifted by the camera's travel
    background = (panned.mask[0] == 0) & (panned.mask[-1] == 0)
    travel = np.round(panned.camera[-1] - panned.camera[0]).astype(int)
    shifted = np.roll(clip[0].astype(int), (-travel[1], -travel[0]), axis=(0, 1))
    moved = np.abs(shifted - clip[-1])[background].mean()
    assert moved < 0.5 * np.abs(clip[0].astype(int) - clip[-1])[background].mean()


def _fit_softmax(features: np.ndarray, labels: np.ndarray, num_classes: int, steps: int = 300) -> np.ndarray:
    """Multinomial logistic regression by gradient descent; features already standardised, with a bias column."""
    weights = np.zeros((features.shape[1], num_classes))
    targets = np.eye(num_classes)[labels]
    for _ in range(steps):
        logits = features @ weights
        probabilities = np.exp(logits - logits.max(1, keepdims=True))
        probabilities /= probabilities.sum(1, keepdims=True)
        weights -= 0.5 * (features.T @ (probabilities - targets) / len(labels) + 1e-3 * weights)
    return weights


def _frame_features(frame: np.ndarray, mask: np.ndarray) -> list[float]:
    """What one frame shows: where the object is, its size and elongation, colours, a thumbnail."""
    size = mask.shape[0]
    x, y = _centroid(mask) * 2 * np.pi / size
    area = mask.sum()
    shift = np.round(size / 2 - _centroid(mask)).astype(int)
    centred = np.roll(mask, (shift[1], shift[0]), axis=(0, 1))
    rows, cols = np.mgrid[0:size, 0:size] - size / 2
    moments = [np.sum(centred * rows**2), np.sum(centred * cols**2), np.sum(centred * rows * cols)]
    inside = mask > 0.5
    thumbnail = frame.reshape(4, size // 4, 4, size // 4, 3).mean((1, 3)).ravel() / 255
    return [np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.log(area), *(np.array(moments) / area**2),
            *(frame[inside].mean(0) / 255), *(frame[~inside].mean(0) / 255), *thumbnail]


def test_single_frames_are_at_chance_and_frame_pairs_are_not():
    """The module docstring's argument, measured: a classifier on one random frame of a clip is at chance."""
    num_classes, per_class, size, num_frames = len(MOTION_CLASSES), 60, 32, 6
    rng = np.random.default_rng(0)
    single, pair, labels = [], [], []
    for label in range(num_classes):
        for _ in range(per_class):
            clip, trajectory = render_clip(label, num_frames=num_frames, size=size, rng=rng, return_trajectory=True)
            mask = trajectory.mask
            alone = rng.integers(num_frames)  # a frame drawn uniformly from the clip, as in the docstring's argument
            single.append(_frame_features(clip[alone], mask[alone]))
            # what changes from frame t to t + 1: the object's displacement, growth and turn
            t = rng.integers(num_frames - 1)
            step = _wrap(_centroid(mask[t + 1]) - _centroid(mask[t]), size)
            growth = np.log(mask[t + 1].sum() / mask[t].sum())
            pair.append([*step, growth, np.arcsinh(_spin_evidence(clip, mask, t) / 1000)])
            labels.append(label)
    labels = np.array(labels)
    test = np.arange(len(labels)) % 3 == 0  # a third of each class held out
    accuracies = []
    for features in (np.array(single), np.array(pair)):
        mean, std = features[~test].mean(0), features[~test].std(0) + 1e-9
        features = np.hstack([(features - mean) / std, np.ones((len(features), 1))])
        weights = _fit_softmax(features[~test], labels[~test], num_classes)
        accuracies.append(np.mean((features[test] @ weights).argmax(1) == labels[test]))
    single_accuracy, pair_accuracy = accuracies
    # chance is 0.1 and 200 held-out clips put the standard error near 0.02; pairs cannot tell the "then" classes from
    # the plain moves, nor the pause at their turn from other classes, which caps them near 0.8
    assert single_accuracy < 0.2, f"single frames predict the class: accuracy {single_accuracy:.2f}"
    assert pair_accuracy > 0.5, f"frame pairs should reveal most classes: accuracy {pair_accuracy:.2f}"


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])


def _read_csv(path: Path) -> list[tuple[str, int]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = LINE.fullmatch(line)
        assert match, f"{path.name}: {line!r} is not 'videos/<class>/<id>.mp4 <label>'"
        label = int(match["label"])
        assert match["folder"] == MOTION_CLASSES[label].replace(" ", "_")
        rows.append((line.split(" ")[0], label))
    return rows


DATASET = {"num_videos": 30, "size": 32, "frames": 6, "seed": 3}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    summary = generate(root, **DATASET, workers=1)
    assert (summary.num_train, summary.num_val, summary.num_written) == (20, 10, 30)
    return root


def test_layout_and_balance(dataset):
    assert (dataset / "classes.txt").read_text(encoding="utf-8").splitlines() == list(MOTION_CLASSES)
    train, val = _read_csv(dataset / "train.csv"), _read_csv(dataset / "val.csv")
    for rows, per_class in ((train, 2), (val, 1)):
        assert Counter(label for _, label in rows) == dict.fromkeys(range(len(MOTION_CLASSES)), per_class)
    assert not {path for path, _ in train} & {path for path, _ in val}
    assert not list(dataset.rglob("*.part"))


def test_files_decode_to_the_rendered_clips(dataset):
    for path, label in _read_csv(dataset / "train.csv")[::7] + _read_csv(dataset / "val.csv")[::7]:
        frames = _decode(dataset / path)
        assert frames.shape == (DATASET["frames"], DATASET["size"], DATASET["size"], 3)
        index = int(Path(path).stem)
        rendered = render_clip(label, num_frames=DATASET["frames"], size=DATASET["size"],
                               rng=np.random.default_rng([DATASET["seed"], label, index]))
        # the same pictures: 4:2:0 halves the colour resolution, so compare brightness (BT.601 luma)
        luma = np.array([0.299, 0.587, 0.114])
        assert np.abs(frames @ luma - rendered @ luma).mean() < 4


def test_deterministic_for_a_seed(dataset, tmp_path):
    again = tmp_path / "again"
    generate(again, **DATASET, workers=2)
    for name in ("train.csv", "val.csv", "classes.txt", "meta.json"):
        assert (again / name).read_bytes() == (dataset / name).read_bytes()
    paths = [path for path, _ in _read_csv(dataset / "train.csv")]
    for path in paths[:5]:
        assert (again / path).read_bytes() == (dataset / path).read_bytes()
        np.testing.assert_array_equal(_decode(again / path), _decode(dataset / path))
    other = tmp_path / "other"
    generate(other, **{**DATASET, "seed": 4}, workers=1)
    assert (other / "train.csv").read_bytes() == (dataset / "train.csv").read_bytes()  # same layout and labels
    assert all(np.any(_decode(other / path) != _decode(dataset / path)) for path in paths[:5])


def test_rerun_skips_resumes_and_regenerates(tmp_path):
    arguments = {"num_videos": 10, "size": 16, "frames": 3, "seed": 0, "workers": 1}
    assert generate(tmp_path, **arguments).num_written == 10
    train = _read_csv(tmp_path / "train.csv")
    assert len(train) == 10 and (tmp_path / "val.csv").read_text() == ""  # 1 video per class: none left for val
    first = tmp_path / train[0][0]
    content, stamp = first.read_bytes(), first.stat().st_mtime_ns
    assert generate(tmp_path, **arguments).num_written == 0
    assert first.stat().st_mtime_ns == stamp
    # an interrupted run: a video missing, an unfinished file, no csv files yet
    first.unlink()
    (first.parent / "000009.mp4.part").write_bytes(b"unfinished")
    for name in ("train.csv", "val.csv"):
        (tmp_path / name).unlink()
    assert generate(tmp_path, **arguments).num_written == 1
    assert first.read_bytes() == content and not list(tmp_path.rglob("*.part"))
    assert _read_csv(tmp_path / "train.csv") == train
    # other arguments: everything again
    assert generate(tmp_path, **{**arguments, "seed": 1}).num_written == 10


def test_generate_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"multiple of the 10 classes, e\.g\. 20 or 30"):
        generate(tmp_path, num_videos=25)
    with pytest.raises(ValueError, match="val_fraction"):
        generate(tmp_path, num_videos=10, val_fraction=1.0)
    with pytest.raises(ValueError, match="even"):
        generate(tmp_path, num_videos=10, size=31)
    assert not list(tmp_path.iterdir())


def test_data_synthetic_command(tmp_path, capsys):
    from motionformer.cli import main

    assert main(["data", "synthetic", str(tmp_path / "d"), "--num-videos", "50", "--size", "32", "--frames", "4",
                 "--workers", "1"]) == 0
    assert "40 train + 10 val videos" in capsys.readouterr().out
    assert len((tmp_path / "d" / "train.csv").read_text().splitlines()) == 40
    assert main(["data", "synthetic", str(tmp_path / "e"), "--num-videos", "7"]) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["moving right", "approaching"])
def test_plain_clips_are_white_on_black_with_the_same_motion(name):
    plain, plain_path = render_clip(name, num_frames=FRAMES, size=SIZE, rng=3, plain=True, return_trajectory=True)
    _, textured_path = render_clip(name, num_frames=FRAMES, size=SIZE, rng=3, return_trajectory=True)
    np.testing.assert_array_equal(plain_path.mask, textured_path.mask)
    np.testing.assert_array_equal(plain_path.position, textured_path.position)
    assert np.all(plain[..., 0] == plain[..., 1]) and np.all(plain[..., 1] == plain[..., 2])  # grey
    assert np.all(plain[plain_path.mask == 0] == 0)  # black wherever the object is not
    assert np.all(plain[plain_path.mask == 1] == 255)  # white where it fully covers a pixel


def test_plain_with_camera_pan_on_black_is_refused(tmp_path):
    with pytest.raises(ValueError, match="camera_pan needs a visible background"):
        render_clip("moving left", rng=0, plain=True, camera_pan=True)
    with pytest.raises(ValueError, match="camera_pan needs a visible background"):
        generate(tmp_path, num_videos=10, size=32, frames=8, plain=True, camera_pan=True)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"background_level=1\.5 must be in"):
        render_clip("moving left", rng=0, plain=True, background_level=1.5)
    with pytest.raises(ValueError, match="plain variant only"):
        render_clip("moving left", rng=0, background_level=0.3)


def test_dim_background_pans_behind_the_white_object():
    level = 0.3
    clip, path = render_clip("moving left", num_frames=FRAMES, size=SIZE, rng=3, plain=True, camera_pan=True,
                             background_level=level, return_trajectory=True)
    _, textured_path = render_clip("moving left", num_frames=FRAMES, size=SIZE, rng=3, camera_pan=True,
                                   return_trajectory=True)
    np.testing.assert_array_equal(path.position, textured_path.position)  # the same draws and motion
    background = clip[path.mask == 0]
    assert background.max() <= round(level * 255) and background.max() > 0
    assert np.all(clip[path.mask == 1] == 255)
    # the background moves with the camera: consecutive frames differ away from the object
    away = (path.mask[0] == 0) & (path.mask[1] == 0)
    assert np.abs(clip[0][away].astype(int) - clip[1][away].astype(int)).mean() > 1.0
    still, still_path = render_clip("moving left", num_frames=FRAMES, size=SIZE, rng=3, plain=True,
                                    background_level=level, return_trajectory=True)
    away = (still_path.mask[0] == 0) & (still_path.mask[1] == 0)
    assert np.array_equal(still[0][away], still[1][away])  # without the pan it stands still


@pytest.mark.parametrize("camera_pan", [False, True])
@pytest.mark.parametrize("name", ["approaching", "moving left then right", "rotating clockwise"])
def test_frame_indices_draw_the_same_pixels_as_indexing_the_whole_clip(name, camera_pan):
    chosen = [0, 3, FRAMES - 1, 3]
    whole, path = render_clip(name, num_frames=FRAMES, size=SIZE, rng=5, camera_pan=camera_pan, return_trajectory=True)
    part, part_path = render_clip(name, num_frames=FRAMES, size=SIZE, rng=5, camera_pan=camera_pan,
                                  frame_indices=chosen, return_trajectory=True)
    np.testing.assert_array_equal(part, whole[chosen])
    np.testing.assert_array_equal(part_path.mask, path.mask[chosen])
    np.testing.assert_array_equal(part_path.radius, path.radius[chosen])


@pytest.mark.parametrize("chosen", [[], [0, FRAMES], [-1], [[0, 1]], [0.5]])
def test_bad_frame_indices_are_refused_naming_them(chosen):
    with pytest.raises(ValueError, match=r"frame_indices="):
        render_clip("moving left", num_frames=FRAMES, size=SIZE, rng=0, frame_indices=chosen)
