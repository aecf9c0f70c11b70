"""Synthetic motion videos whose class only the motion between frames reveals.

``generate`` writes real H.264 mp4 files and Kinetics-style ``train.csv``/``val.csv`` (``path label`` per line, as
PySlowFast reads them), so the whole pipeline runs without a download. Each clip shows one textured object over a
textured background, moving in one of the ways named in ``MOTION_CLASSES``. Shape, colours, texture, size, position,
orientation, speed, spin and zoom rate, and the background are drawn from the same distributions for every class.
With ``camera_pan`` the camera also pans at a random velocity, and the class is the object's motion relative to the
scene, not on the screen. With ``plain`` the object is white on a black background (same shapes, sizes and motions):
an easier variant, learnt from scratch in minutes on a CPU (the ``motionformer demo`` data). ``render_clip``'s
``background_level`` keeps the textured background behind the white object, dimmed to at most that brightness, so that
a camera pan stays visible in the plain variant (``motionformer bench motion`` uses it).

Why a classifier that sees a single frame is at chance. The scene lives on a torus: the frame wraps around (an object
leaving on the right re-enters on the left) and the background is periodic. Then, class by class:

* position: the object's centre in frame t is a uniform random point of the frame plus an offset that depends on the
  class, t, its speed and the camera; a uniform point plus an independent offset is uniform, so in every frame the
  position is uniform and independent of the class;
* orientation: the same argument on the circle, from a uniform random angle;
* background: a random-phase Fourier series, whose distribution does not change when it is shifted, so a panned
  background looks, frame by frame, like a still one;
* size cannot wrap (an approaching object is smaller in its first frame than in its last). Every class draws the same
  mid-clip log radius and zoom rate r; approaching and receding add +r(t - c) and -r(t - c) in frame t (c the middle
  frame), every other class adds a constant r(u - c) with u a frame index drawn uniformly per clip. At a frame
  position drawn uniformly, the log radius therefore has the same distribution in every class.

So a frame taken at a random position in a clip has exactly the same distribution whatever the class, and no function
of one such frame predicts the class better than chance. Only a classifier told which frame it sees (say, always the
first) can gain, and only on approaching/receding through the size: for the other classes even a fixed frame's
distribution is the same in every class. The files keep this: every frame is an independently coded I-frame at a
fixed quantiser, so a decoded frame depends on its own content only.

Pairs. Played backwards, a clip is exactly the clip of ``TIME_REVERSED[class]`` for the same random draws (left and
right, up and down, clockwise and anticlockwise, approaching and receding; the two "then" classes are their own
reverse; with panning, the camera pans the other way, which is as likely), so a model blind to frame order (averaging
per-frame predictions, a bag of frames) cannot tell a pair apart. Flipped left to right, a clip is distributed as
``MIRRORED[class]``: as in SSv2, a horizontal flip changes the label, so flip augmentation must stay off or relabel
through ``MIRRORED``. "moving left then right" and "moving right then left" contain the same displacements between
consecutive frames, only in another order: telling them apart needs more than two frames.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, overload

import av
import numpy as np

__all__ = [
    "MIRRORED",
    "MOTION_CLASSES",
    "TIME_REVERSED",
    "SyntheticSummary",
    "Trajectory",
    "generate",
    "render_clip",
]

logger = logging.getLogger(__name__)

MOTION_CLASSES: tuple[str, ...] = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating anticlockwise",
    "approaching",
    "receding",
    "moving left then right",
    "moving right then left",
)

TIME_REVERSED: dict[str, str] = {
    "moving left": "moving right",
    "moving right": "moving left",
    "moving up": "moving down",
    "moving down": "moving up",
    "rotating clockwise": "rotating anticlockwise",
    "rotating anticlockwise": "rotating clockwise",
    "approaching": "receding",
    "receding": "approaching",
    "moving left then right": "moving left then right",
    "moving right then left": "moving right then left",
}

MIRRORED: dict[str, str] = {
    "moving left": "moving right",
    "moving right": "moving left",
    "moving up": "moving up",
    "moving down": "moving down",
    "rotating clockwise": "rotating anticlockwise",
    "rotating anticlockwise": "rotating clockwise",
    "approaching": "approaching",
    "receding": "receding",
    "moving left then right": "moving right then left",
    "moving right then left": "moving left then right",
}


@dataclass(frozen=True)
class _Motion:
    """Signs of a class's motion on screen axes (x right, y down, angle anticlockwise, log radius)."""

    dx: int = 0
    dy: int = 0
    spin: int = 0
    zoom: int = 0
    out_and_back: bool = False  # goes one way for the first half of the clip and back for the second


_MOTIONS: dict[str, _Motion] = {
    "moving left": _Motion(dx=-1),
    "moving right": _Motion(dx=1),
    "moving up": _Motion(dy=-1),
    "moving down": _Motion(dy=1),
    "rotating clockwise": _Motion(spin=-1),
    "rotating anticlockwise": _Motion(spin=1),
    "approaching": _Motion(zoom=1),
    "receding": _Motion(zoom=-1),
    "moving left then right": _Motion(dx=-1, out_and_back=True),
    "moving right then left": _Motion(dx=1, out_and_back=True),
}

# Ranges of the random draws, the same for every class. Lengths are fractions of the frame size.
_SPEED = (0.02, 0.05)  # object speed relative to the scene, per frame (1.3 to 3.2 px at 64 px)
_PAN_SPEED = (0.01, 0.05)  # camera speed per frame, in a uniformly random direction
_SPIN = (np.radians(3.0), np.radians(8.0))  # per frame
_RADIUS = (0.12, 0.2)  # mid-clip circumradius, log-uniform; below half the frame even after zooming, so no self-wrap
_ZOOM = (0.4, 0.8)  # change of the log radius over the whole clip (factor 1.5 to 2.2)
_TEXTURE_FREQUENCY = (0.6, 1.6)  # object texture, cycles per radius

_SHAPES = ("disc", "ellipse", "triangle", "square", "star", "cross")
_TEXTURES = ("stripes", "checker", "blobs")

_FORMAT_VERSION = 1  # bump when the rendering or the layout changes: older folders are then regenerated
_VIDEO_NAME = re.compile(r"\d{6}\.mp4(\.part)?")
# Every frame an I-frame at a fixed quantiser: a decoded frame depends on its own content only (see the module
# docstring), and one thread keeps the bytes reproducible.
_ENCODER_OPTIONS = {"qp": "18", "g": "1", "threads": "1"}


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Where the object of a rendered clip is in each frame. Pixels, x to the right and y down."""

    position: np.ndarray  # (F, 2) centre on screen, unwrapped: it is drawn at position % size
    camera: np.ndarray  # (F, 2) camera offset: the object's position in the scene is position + camera
    angle: np.ndarray  # (F,) radians, anticlockwise as seen on screen
    radius: np.ndarray  # (F,) circumradius in pixels
    mask: np.ndarray  # (F, H, W) float32 coverage of each pixel by the object, in [0, 1]


@dataclass(frozen=True)
class SyntheticSummary:
    """What ``generate`` left in ``root``."""

    root: Path
    classes: tuple[str, ...]
    num_train: int
    num_val: int
    num_written: int  # videos encoded by this call; 0 when the folder was already complete
    seconds: float


def _label_index(label: int | str) -> int:
    if isinstance(label, str):
        if label not in MOTION_CLASSES:
            raise ValueError(f"unknown motion class {label!r}; expected one of {', '.join(MOTION_CLASSES)}")
        return MOTION_CLASSES.index(label)
    if not 0 <= label < len(MOTION_CLASSES):
        raise ValueError(f"label {label} out of range; expected 0 to {len(MOTION_CLASSES) - 1}")
    return int(label)


def _check_geometry(num_frames: int, size: int) -> None:
    if num_frames < 2:
        raise ValueError(f"num_frames={num_frames}: a motion needs at least 2 frames")
    if size < 16 or size % 2:
        raise ValueError(f"size={size}: expected an even number of pixels, at least 16 (H.264 4:2:0 needs even sizes)")


def _check_plain(plain: bool, camera_pan: bool, background_level: float = 0.0) -> None:
    if not 0.0 <= background_level < 1.0:
        raise ValueError(f"background_level={background_level} must be in [0, 1): the brightness of the dimmed "
                         f"background behind the white object")
    if background_level and not plain:
        raise ValueError(f"background_level={background_level} applies to the plain variant only (plain=True)")
    if plain and camera_pan and not background_level:
        raise ValueError("camera_pan needs a visible background: on plain black the pan is invisible, so the "
                         "motion relative to the scene (the class) could not be seen; use the textured variant "
                         "or plain with background_level > 0")


def _check_frame_indices(frame_indices: Sequence[int], num_frames: int) -> np.ndarray:
    chosen = np.asarray(frame_indices)
    if chosen.ndim != 1 or not len(chosen) or not np.issubdtype(chosen.dtype, np.integer):
        raise ValueError(f"frame_indices={list(frame_indices)!r}: expected a non-empty list of frame numbers")
    if chosen.min() < 0 or chosen.max() >= num_frames:
        raise ValueError(f"frame_indices={chosen.tolist()} reach outside the clip's frames 0 to {num_frames - 1}")
    return chosen


def _shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance, in units of the circumradius, from object coordinates (u, v) to a shape of circumradius 1.

    Close to the true distance near the edge, which is all the anti-aliasing needs.
    """
    r = np.hypot(u, v)
    if shape == "disc":
        return r - 1.0
    if shape == "ellipse":
        return (np.hypot(u, v / 0.55) - 1.0) * 0.55
    if shape in ("triangle", "square"):
        sides = 3 if shape == "triangle" else 4
        sector = 2 * np.pi / sides
        to_edge = np.mod(np.arctan2(v, u), sector) - sector / 2
        return r * np.cos(to_edge) - np.cos(np.pi / sides)
    if shape == "star":
        return r - (0.55 + 0.45 * (0.5 + 0.5 * np.cos(5 * np.arctan2(v, u))))
    if shape == "cross":
        arm_length, arm_width = 0.95, 0.3
        horizontal = np.maximum(np.abs(u) - arm_length, np.abs(v) - arm_width)
        vertical = np.maximum(np.abs(u) - arm_width, np.abs(v) - arm_length)
        return np.minimum(horizontal, vertical)
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(_SHAPES)}")


def _draw_object(rng: np.random.Generator) -> tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray], float]:
    """Random object appearance: shape, and a function (u, v) -> (..., 3) colours in object coordinates."""
    shape = _SHAPES[rng.integers(len(_SHAPES))]
    texture = _TEXTURES[rng.integers(len(_TEXTURES))]
    frequency = 2 * np.pi * rng.uniform(*_TEXTURE_FREQUENCY)
    directions = rng.uniform(0, 2 * np.pi, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    sharpness = rng.uniform(1.0, 4.0)
    light = rng.uniform(0.0, 1.0, 3)
    light = light / light.max() * rng.uniform(0.75, 1.0)
    dark = rng.uniform(0.0, 1.0, 3) * rng.uniform(0.0, 0.3)
    outline = rng.uniform(0.0, 0.15) if rng.random() < 0.5 else rng.uniform(0.85, 1.0)

    def waves(u: np.ndarray, v: np.ndarray, k: int) -> np.ndarray:
        return np.sin(frequency * (u * np.cos(directions[k]) + v * np.sin(directions[k])) + phases[k])

    def colour(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if texture == "stripes":
            pattern = waves(u, v, 0)
        elif texture == "checker":
            turn = directions[0]
            rotated_u, rotated_v = u * np.cos(turn) + v * np.sin(turn), v * np.cos(turn) - u * np.sin(turn)
            pattern = np.sin(frequency * rotated_u + phases[0]) * np.sin(frequency * rotated_v + phases[1])
        else:
            pattern = (waves(u, v, 0) + waves(u, v, 1) + waves(u, v, 2)) / np.sqrt(1.5)
        mix = (0.5 + 0.5 * np.tanh(sharpness * pattern))[..., None]
        return dark + (light - dark) * mix

    return shape, colour, outline


def _draw_background(size: int, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """Random periodic background: a function of the camera offsets (F, 2) -> (F, size, size, 3) colours.

    A random-phase Fourier series with a power-law spectrum and one stronger grating. The Nyquist row and column are
    left empty, so a shift by any real offset (a phase ramp) is exact.
    """
    k_y = np.fft.fftfreq(size, 1.0 / size)[:, None]  # integer cycles per frame
    k_x = np.fft.rfftfreq(size, 1.0 / size)[None, :]
    amplitude = np.hypot(k_x, k_y).clip(min=1.0) ** -rng.uniform(1.0, 2.0)
    amplitude[0, 0] = 0.0
    amplitude[size // 2, :] = 0.0
    amplitude[:, size // 2] = 0.0
    coefficients = amplitude * (rng.standard_normal(amplitude.shape) + 1j * rng.standard_normal(amplitude.shape))
    grating_x, grating_y = rng.integers(1, 7), rng.integers(-6, 7)
    grating = rng.uniform(0.0, 2.0) * np.sqrt(np.sum(amplitude**2))
    coefficients[grating_y % size, grating_x] += grating * np.exp(1j * rng.uniform(0, 2 * np.pi))
    scale = np.fft.irfft2(coefficients, s=(size, size)).std()
    sharpness = rng.uniform(0.5, 2.5)
    first, second = rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3)

    def render(camera: np.ndarray) -> np.ndarray:
        # the scene point at camera + x is seen at screen x: shift the pattern by -camera
        phase = np.exp(2j * np.pi * (k_x * camera[:, 0, None, None] + k_y * camera[:, 1, None, None]) / size)
        field = np.fft.irfft2(coefficients * phase, s=(size, size)) / scale  # (F, size, size)
        mix = (0.5 + 0.5 * np.tanh(sharpness * field))[..., None]
        return first + (second - first) * mix

    return render


@overload
def render_clip(label: int | str, *, num_frames: int = ..., size: int = ..., rng: np.random.Generator | int,
                camera_pan: bool = ..., plain: bool = ..., background_level: float = ...,
                frame_indices: Sequence[int] | None = ..., return_trajectory: Literal[False] = ...) -> np.ndarray: ...
@overload
def render_clip(label: int | str, *, num_frames: int = ..., size: int = ..., rng: np.random.Generator | int,
                camera_pan: bool = ..., plain: bool = ..., background_level: float = ...,
                frame_indices: Sequence[int] | None = ...,
                return_trajectory: Literal[True]) -> tuple[np.ndarray, Trajectory]: ...
def render_clip(label: int | str, *, num_frames: int = 16, size: int = 64, rng: np.random.Generator | int,
                camera_pan: bool = False, plain: bool = False, background_level: float = 0.0,
                frame_indices: Sequence[int] | None = None,
                return_trajectory: bool = False) -> np.ndarray | tuple[np.ndarray, Trajectory]:
    """Render one clip of a motion class (an index into ``MOTION_CLASSES`` or its name) as (F, H, W, 3) uint8 RGB.

    ``rng`` (a generator or a seed) is drawn from in the same order whatever the class, so the same seed gives the same
    object, background and speeds for every class. ``background_level`` (plain only): the textured background dimmed
    into [0, background_level] instead of black. ``frame_indices``: draw only these frames of the ``num_frames``-frame
    clip, in this order (the same pixels as indexing the whole clip, for less work); the trajectory then has one row
    per drawn frame. With ``return_trajectory`` the object's per-frame position, angle, size and coverage mask come
    back too.
    """
    motion = _MOTIONS[MOTION_CLASSES[_label_index(label)]]
    _check_geometry(num_frames, size)
    _check_plain(plain, camera_pan, background_level)
    rng = np.random.default_rng(rng)

    middle = rng.uniform(0.0, size, 2)  # (x, y) scene position at the middle frame (at both ends for out-and-back)
    speed = rng.uniform(*_SPEED) * size
    angle_middle = rng.uniform(0.0, 2 * np.pi)
    spin = rng.uniform(*_SPIN)
    log_radius_middle = rng.uniform(*np.log(_RADIUS)) + np.log(size)
    zoom = rng.uniform(*_ZOOM) / (num_frames - 1)
    zoom_frame = rng.integers(num_frames)  # the frame index u of the module docstring, used by non-zooming classes
    pan_direction = rng.uniform(0.0, 2 * np.pi)
    pan_speed = rng.uniform(*_PAN_SPEED) * size
    shape, object_colour, outline = _draw_object(rng)
    background = _draw_background(size, rng)
    if plain:  # the same draws as above, then white on black (or on the dimmed background)
        object_colour, outline, background = _plain_look(background, size, background_level)

    time_from_middle = np.arange(num_frames) - (num_frames - 1) / 2  # (F,), t - c in the module docstring
    travel = (num_frames - 1) / 2 - np.abs(time_from_middle) if motion.out_and_back else time_from_middle
    scene = middle + speed * travel[:, None] * np.array([motion.dx, motion.dy])  # (F, 2)
    pan = np.array([np.cos(pan_direction), np.sin(pan_direction)]) * (pan_speed if camera_pan else 0.0)
    camera = time_from_middle[:, None] * pan  # (F, 2)
    position = scene - camera
    angle = angle_middle + motion.spin * spin * time_from_middle
    if motion.zoom:
        log_radius = log_radius_middle + motion.zoom * zoom * time_from_middle
    else:
        log_radius = np.full(num_frames, log_radius_middle + zoom * (zoom_frame - (num_frames - 1) / 2))
    radius = np.exp(log_radius)
    if frame_indices is not None:
        chosen = _check_frame_indices(frame_indices, num_frames)
        position, camera, angle, radius = position[chosen], camera[chosen], angle[chosen], radius[chosen]

    # without panning the background is one picture
    backdrop = background(camera) if camera_pan else np.repeat(background(camera[:1]), len(camera), axis=0)
    frames, coverage = _draw_frames(size, position, angle, radius, shape, object_colour, outline, backdrop)
    if not return_trajectory:
        return frames
    return frames, Trajectory(position=position, camera=camera, angle=angle, radius=radius,
                              mask=coverage.astype(np.float32))


Colouring = Callable[[np.ndarray, np.ndarray], np.ndarray]
Backdrop = Callable[[np.ndarray], np.ndarray]


def _plain_look(textured_background: Backdrop, size: int, background_level: float
                ) -> tuple[Colouring, np.ndarray, Backdrop]:
    """The plain variant's object colour, outline and background: white on black, or on the textured background
    dimmed into [0, background_level]."""
    def object_colour(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.ones((*u.shape, 3))

    def background(camera: np.ndarray) -> np.ndarray:
        if background_level:
            return textured_background(camera) * background_level
        return np.zeros((len(camera), size, size, 3))

    return object_colour, np.ones(3), background


def _draw_frames(size: int, position: np.ndarray, angle: np.ndarray, radius: np.ndarray, shape: str,
                 object_colour: Callable[[np.ndarray, np.ndarray], np.ndarray], outline: float | np.ndarray,
                 frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object drawn over the background ``frames`` (F, H, W, 3) in [0, 1] at each frame's position (F, 2),
    angle and radius: (uint8 frames, coverage (F, H, W))."""
    # offsets from the centre on the torus, (F, 1, W) and (F, H, 1), turned into object coordinates (y up)
    pixels = np.arange(size, dtype=np.float64)
    centre = position % size
    dx = (pixels[None, None, :] - centre[:, 0, None, None] + size / 2) % size - size / 2
    dy = (pixels[None, :, None] - centre[:, 1, None, None] + size / 2) % size - size / 2
    cos, sin, scale = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None], radius[:, None, None]
    u = (cos * dx - sin * dy) / scale  # (F, H, W)
    v = (-sin * dx - cos * dy) / scale
    distance = _shape_distance(shape, u, v) * scale  # pixels, negative inside
    coverage = np.clip(0.5 - distance, 0.0, 1.0)  # (F, H, W)
    covered = coverage > 0.0
    fill = np.clip(-distance[covered] - size / 64 + 0.5, 0.0, 1.0)[:, None]  # inside the outline, (N, 1)
    colour = outline + (object_colour(u[covered], v[covered]) - outline) * fill  # (N, 3)
    alpha = coverage[covered][:, None]
    frames[covered] = frames[covered] * (1.0 - alpha) + colour * alpha
    return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8), coverage


def _slug(name: str) -> str:
    return name.replace(" ", "_")


def _video_path(label: int, index: int) -> str:
    """Path of a video relative to the dataset root, with forward slashes as in the csv files."""
    return f"videos/{_slug(MOTION_CLASSES[label])}/{index:06d}.mp4"


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode (F, H, W, 3) uint8 RGB frames as H.264 in mp4, through a temporary file renamed at the end."""
    partial_path = path.with_name(path.name + ".part")
    try:
        with av.open(str(partial_path), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps, options=_ENCODER_OPTIONS)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            for image in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise
    os.replace(partial_path, path)


def _make_video(job: tuple[int, int], *, root: Path, seed: int, num_frames: int, size: int, fps: int,
                camera_pan: bool, plain: bool) -> None:
    label, index = job
    rng = np.random.default_rng([seed, label, index])
    frames = render_clip(label, num_frames=num_frames, size=size, rng=rng, camera_pan=camera_pan, plain=plain)
    _write_mp4(root / _video_path(label, index), frames, fps)


def _write_text(path: Path, text: str) -> None:
    """Write a text file atomically: a temporary file in the same folder, then a rename."""
    partial_path = path.with_name(path.name + ".part")
    partial_path.write_text(text, encoding="utf-8", newline="\n")
    os.replace(partial_path, path)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove_stale_videos(root: Path, keep: Iterable[str]) -> None:
    """Delete videos (and unfinished ``.part`` files) that an earlier run left and this one does not list."""
    keep = set(keep)
    for name in MOTION_CLASSES:
        folder = root / "videos" / _slug(name)
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _VIDEO_NAME.fullmatch(path.name) and f"videos/{folder.name}/{path.name}" not in keep:
                path.unlink()


def _videos_per_class(num_videos: int, val_fraction: float) -> tuple[int, int]:
    """(training videos, all videos) per class; ValueError naming the argument that does not fit."""
    num_classes = len(MOTION_CLASSES)
    if num_videos <= 0 or num_videos % num_classes:
        lower = max(num_classes, num_videos // num_classes * num_classes)
        raise ValueError(f"num_videos={num_videos} must be a positive multiple of the {num_classes} classes, "
                         f"e.g. {lower} or {lower + num_classes}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    per_class = num_videos // num_classes
    num_train = per_class - round(per_class * val_fraction)
    if num_train == 0:
        raise ValueError(f"val_fraction={val_fraction} leaves no training video out of {per_class} per class")
    return num_train, per_class


def _run_jobs(make: Callable[[tuple[int, int]], None], jobs: list[tuple[int, int]], workers: int) -> None:
    """``make`` every job, in ``workers`` processes when there are several."""
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(make, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers)))):
                pass
    else:
        for job in jobs:
            make(job)


def generate(root: str | os.PathLike, *, num_videos: int = 1000, size: int = 64, frames: int = 16, seed: int = 0,
             fps: int = 30, camera_pan: bool = False, plain: bool = False, val_fraction: float = 0.2,
             workers: int | None = None) -> SyntheticSummary:
    """Write a synthetic motion dataset under ``root``: videos, ``train.csv``, ``val.csv``, ``classes.txt``.

    Layout: ``videos/<class_name_with_underscores>/<index>.mp4`` (H.264, yuv420p, ``size`` x ``size``, ``frames``
    frames at ``fps``); ``train.csv`` and ``val.csv`` list ``path label`` per line (path relative to ``root``,
    integer label into ``classes.txt``, no header), PySlowFast's Kinetics format. ``num_videos`` must be a multiple
    of the number of classes; each class gets the same number of videos in each split (``val_fraction`` of them,
    rounded, in val). Video ``index`` of class ``label`` is
    ``render_clip(label, rng=np.random.default_rng([seed, label, index]), ...)``, so the output depends on the
    arguments only (not on ``workers``, which defaults to min(2, CPU count)).

    Safe to interrupt and re-run: videos are renamed into place when complete, the csv files are written last (also
    through a rename) so they never list a missing file, and ``meta.json`` records the arguments. A re-run with the
    same arguments over a complete folder returns at once; over an interrupted one it encodes only the missing videos.
    """
    num_classes = len(MOTION_CLASSES)
    _check_geometry(frames, size)
    _check_plain(plain, camera_pan)
    if fps <= 0:
        raise ValueError(f"fps={fps} must be positive")
    num_train, per_class = _videos_per_class(num_videos, val_fraction)
    num_val = per_class - num_train
    workers = min(2, os.cpu_count() or 1) if workers is None else workers

    start = time.perf_counter()
    root = Path(root)
    splits = {
        "train": [(label, index) for label in range(num_classes) for index in range(num_train)],
        "val": [(label, index) for label in range(num_classes) for index in range(num_train, per_class)],
    }
    listed = [_video_path(label, index) for jobs in splits.values() for label, index in jobs]
    meta = {"generator": __name__, "format_version": _FORMAT_VERSION, "classes": list(MOTION_CLASSES),
            "num_videos": num_videos, "size": size, "frames": frames, "seed": seed, "fps": fps,
            "camera_pan": camera_pan, "plain": plain, "val_fraction": val_fraction}
    csv_paths = [root / "val.csv", root / "train.csv"]
    same_run = _read_json(root / "meta.json") == meta
    expected = [root / "classes.txt", *csv_paths, *(root / path for path in listed)]
    summary = partial(SyntheticSummary, root=root, classes=MOTION_CLASSES, num_train=num_train * num_classes,
                      num_val=num_val * num_classes)
    if same_run and all(path.is_file() for path in expected):
        logger.info("%s already holds this synthetic dataset; nothing to do", root)
        return summary(num_written=0, seconds=time.perf_counter() - start)

    # The csv files go first, so that until they are rewritten none lists a video that is missing or being replaced.
    for path in csv_paths:
        path.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    if not same_run:
        _write_text(root / "meta.json", json.dumps(meta, indent=2) + "\n")
    _remove_stale_videos(root, listed if same_run else ())
    for name in MOTION_CLASSES:
        (root / "videos" / _slug(name)).mkdir(parents=True, exist_ok=True)
    jobs = [(label, index) for split in splits.values() for label, index in split
            if not (root / _video_path(label, index)).is_file()]
    make = partial(_make_video, root=root, seed=seed, num_frames=frames, size=size, fps=fps, camera_pan=camera_pan,
                   plain=plain)
    logger.info("rendering %d synthetic videos into %s with %d worker(s)", len(jobs), root, workers)
    _run_jobs(make, jobs, workers)

    _write_text(root / "classes.txt", "".join(f"{name}\n" for name in MOTION_CLASSES))
    for path in csv_paths:
        _write_text(path, "".join(f"{_video_path(label, index)} {label}\n" for label, index in splits[path.stem]))
    seconds = time.perf_counter() - start
    logger.info("wrote %d videos in %.1f s: %s", len(jobs), seconds, root)
    return summary(num_written=len(jobs), seconds=seconds)
