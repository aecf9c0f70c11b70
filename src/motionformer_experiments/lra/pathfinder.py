"""Pathfinder-32 (Linsley et al., 2018) as Long Range Arena defines it, generated here from the task's definition.

An image is 32x32 greyscale: curved dashed contours ("snakes") on black and two white disc markers. A contour is a
chain of straight strokes ("paddles") ``paddle_length`` px long, each separated from the next by a gap of
``paddle_margin`` px. The label is 1 when the two markers sit at the two ends of the same contour, 0 when they sit at
ends of two different contours. This is an independent implementation of that definition, not a port of the original
generator: the defaults are the published settings of the 32-pixel task, but the pixel statistics (stroke rendering,
curvature, density, where contours go) will not match the released dataset, and a model trained on one will not
score the same on the other.

Geometry, in pixel coordinates (x right, y down, the frame is [0, 32] x [0, 32]):

* paddle k of a contour runs from its start n_k in direction a_k for ``paddle_length``; the next paddle starts
  ``paddle_margin`` further on in the same direction, then turns: a_{k+1} = a_k + d_k. ``continuity`` is read as the
  largest turn in radians: d_k is uniform in [-continuity, continuity] (57 degrees for the published 1.0). The first
  direction is uniform on the circle and the start uniform in the frame. (Half that turn was tried first: a contour
  of 14 paddles is 41 px long, and contours that gentle fit two to a 32 px frame in well under 1% of draws.)
* every image has two target contours of ``contour_length`` paddles (14, 9 or 6 for the hard, intermediate and easy
  sets), then ``distractor_count`` distractors of ``paddles_per_distractor`` paddles (by default
  ``contour_length // 3`` paddles, ``20 //`` that many distractors, as in LRA);
* strokes keep ``margin`` px of black between them (centre lines at least ``margin + paddle_thickness`` apart): between
  contours and between non-consecutive paddles of one contour. A marker keeps ``margin`` px of black from every stroke
  but those of the two paddles at its end. Everything drawn stays ``padding`` px inside the frame;
* a contour grows paddle by paddle; a paddle that does not fit (frame, clearances) is drawn again with another turn, a
  few times, and when none fits the search goes back and redraws the previous paddle (depth first, within a budget
  of draws). A target contour that does not reach its full length is started again elsewhere a few times, then the
  whole image; a distractor that does not fit after a few starts is dropped (crowded images have fewer: about 4 of the
  5 fit in the hard set). The search favours contours that fit the frame, for both labels alike;
* the markers (radius ``marker_radius``) are centred on contour end points, at least ``seed_distance`` px apart for
  both labels: label 1 marks both ends of one target contour, label 0 one end of each target.

The layout is drawn before the label is used and only images that can take either label are kept (one target's ends
at least ``seed_distance`` apart, and an end of each target at least that far apart), so for a given generator the
contours are the same for label 0 and label 1: only the marker positions differ. Marker distance is no cue at the
minimum; beyond it the labels differ (the two ends of one contour are at most its length apart, ends of two contours
can be further), as in the original task.

Clearances to finished contours are checked on an occupancy grid of 1/8 px cells, conservatively: a paddle that fits
is at least the clearance away, and at most about 1/3 px more is refused than needed. A contour's own paddles are
checked exactly.

Rendering: strokes of intensity ``paddle_contrast`` (0.75 of white: 191) and white markers are drawn with PIL at
``antialias_scale`` times the size (strokes ``paddle_thickness * antialias_scale`` px wide, at least 1) and reduced
with a box filter.

Files (``generate_pathfinder``): ``images/NN/IIIIII.png`` (image ``IIIIII`` in shard folder ``NN`` = index // 10000),
``train.txt`` / ``val.txt`` / ``test.txt`` with ``images/NN/IIIIII.png label`` per line, and ``settings.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, TextIO, overload

import numpy as np
from PIL import Image, ImageDraw

from motionformer.io import atomic_write

__all__ = ["DIFFICULTIES", "PathfinderGeometry", "PathfinderSettings", "generate_pathfinder", "render_pathfinder"]

DIFFICULTIES: dict[str, int] = {"easy": 6, "intermediate": 9, "hard": 14}  # contour_length of LRA's three sets
SPLITS = ("train", "val", "test")
SHARD_SIZE = 10_000  # images per folder under images/

_FORMAT_VERSION = 1
_GRID_RESOLUTION = 8  # occupancy cells per pixel
_SAMPLE_SPACING = 0.25  # px between the points of a paddle checked against the grid
_ANGLE_BINS = 256  # directions of the precomputed paddle stamps
_STEP_TRIES = 4  # turns tried for a paddle before the search goes back to its predecessor
_SEARCH_BUDGET = 8  # paddles drawn per paddle of a contour before a start is abandoned
_CONTOUR_TRIES = 5  # starts of a target contour before the image is started again
_DISTRACTOR_TRIES = 5  # starts of a distractor before it is dropped
_IMAGE_TRIES = 500
_IMAGE_STREAM, _LABEL_STREAM = 0, 1  # SeedSequence tags: images from (seed, 0, index), labels from (seed, 1)
_IMAGE_NAME = re.compile(r"\d{6,}\.png")
_TEMP_NAME = re.compile(r"\..*\.tmp")


@dataclass(frozen=True)
class PathfinderSettings:
    """How Pathfinder images are drawn; the defaults are LRA's published 32-pixel "hard" set. Lengths are in px.

    ``paddle_margin`` is the gap between consecutive paddles of a contour and ``margin`` the black kept between any
    other strokes (LRA's single ``paddle_margin`` of 1 sets both). ``distractor_length`` / ``num_distractors`` of
    None follow LRA's rule (``contour_length // 3`` paddles, ``20 //`` that many distractors); read the resolved
    values from ``paddles_per_distractor`` / ``distractor_count``. Invalid values raise ValueError.
    """

    image_size: int = 32
    padding: float = 1.0
    paddle_length: float = 2.0
    paddle_margin: float = 1.0
    margin: float = 1.0
    paddle_thickness: float = 0.5
    paddle_contrast: float = 0.75  # stroke intensity, a fraction of white
    marker_radius: float = 1.5
    antialias_scale: int = 2
    seed_distance: float = 7.0
    continuity: float = 1.0  # the largest turn between consecutive paddles, in radians
    contour_length: int = 14  # paddles per target contour
    distractor_length: int | None = None
    num_distractors: int | None = None

    def __post_init__(self) -> None:
        positive = {"image_size": self.image_size, "paddle_length": self.paddle_length,
                    "paddle_thickness": self.paddle_thickness, "marker_radius": self.marker_radius,
                    "antialias_scale": self.antialias_scale, "contour_length": self.contour_length}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name}={value!r} must be positive")
        for name in ("image_size", "antialias_scale", "contour_length"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"{name}={getattr(self, name)!r} must be an integer")
        non_negative = {"padding": self.padding, "paddle_margin": self.paddle_margin, "margin": self.margin,
                        "seed_distance": self.seed_distance, "continuity": self.continuity}
        for name, value in non_negative.items():
            if not value >= 0:
                raise ValueError(f"{name}={value!r} must be >= 0")
        if not 0 < self.paddle_contrast <= 1:
            raise ValueError(f"paddle_contrast={self.paddle_contrast!r} must be in (0, 1]")
        if not self.continuity <= math.pi:
            raise ValueError(f"continuity={self.continuity!r} must be at most pi (it is the largest turn, in radians)")
        if self.distractor_length is not None and not (isinstance(self.distractor_length, int)
                                                       and self.distractor_length > 0):
            raise ValueError(f"distractor_length={self.distractor_length!r} must be a positive integer or None")
        if self.num_distractors is not None and not (isinstance(self.num_distractors, int)
                                                     and self.num_distractors >= 0):
            raise ValueError(f"num_distractors={self.num_distractors!r} must be an integer >= 0 or None")
        room = self.image_size - 2 * (self.padding + self.marker_radius)
        if room <= 0:
            raise ValueError(f"image_size={self.image_size} leaves no room inside padding={self.padding} for "
                             f"markers of radius {self.marker_radius}")

    @classmethod
    def preset(cls, difficulty: str = "hard", **overrides: object) -> PathfinderSettings:
        """LRA's set ``difficulty`` ("easy", "intermediate", "hard": contours of 6, 9, 14 paddles), with overrides."""
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty={difficulty!r} must be one of {', '.join(DIFFICULTIES)}")
        return cls(**{"contour_length": DIFFICULTIES[difficulty], **overrides})

    @property
    def paddles_per_distractor(self) -> int:
        """Paddles of each distractor contour (``distractor_length``, by default ``contour_length // 3``)."""
        return self.contour_length // 3 if self.distractor_length is None else self.distractor_length

    @property
    def distractor_count(self) -> int:
        """Distractors tried per image (``num_distractors``, by default ``20 // paddles_per_distractor``; 0 when
        contours are too short for distractors of a paddle or more)."""
        if not self.paddles_per_distractor:
            return 0
        return 20 // self.paddles_per_distractor if self.num_distractors is None else self.num_distractors

    def to_json(self) -> dict[str, object]:
        """The fields, with the distractor numbers resolved (settings that draw the same images compare equal)."""
        return {**asdict(self), "distractor_length": self.paddles_per_distractor,
                "num_distractors": self.distractor_count}


@dataclass(frozen=True, eq=False)
class PathfinderGeometry:
    """What an image shows, in pixel coordinates (x, y), as ``render_pathfinder(..., return_geometry=True)`` drew it.

    ``contours[i]`` is a (num_paddles, 2, 2) array: paddle, (start, end), (x, y). Contours 0 and 1 are the targets,
    the others distractors. ``markers`` is (2, 2): the marker centres, each on an end of contour ``marked[0]`` and
    ``marked[1]`` respectively (the same contour for label 1).
    """

    label: int
    contours: tuple[np.ndarray, ...]
    markers: np.ndarray
    marked: tuple[int, int]
    settings: PathfinderSettings = field(repr=False)


Paddle = tuple[float, float, float, float]  # x0, y0, x1, y1


class _Layout:
    """Everything derived once per settings: clearances, the occupancy grid's shape and the precomputed stamps.

    The grid has ``resolution`` cells per pixel and a border of ``border`` cells around the frame, so that stamps of
    shapes inside the frame never leave it. A paddle (or marker) is recorded by setting every cell whose centre lies
    within a stamp radius of it; a new paddle fits when the cells under points along it, ``spacing`` apart at most,
    are all clear. Stamps are precomputed for a start snapped to its cell's centre and a direction snapped to one of
    ``_ANGLE_BINS``; the stamp radii add every error of that scheme to the clearance wanted, so that a paddle that
    fits is always at least the clearance away (by up to ~1/3 px more).
    """

    def __init__(self, settings: PathfinderSettings):
        self.settings = settings
        self.resolution = resolution = _GRID_RESOLUTION
        cell = 1 / resolution
        self.length = settings.paddle_length
        self.max_turn = settings.continuity
        self.samples = max(2, math.ceil(self.length / _SAMPLE_SPACING) + 1)
        spacing = self.length / (self.samples - 1)
        self.sample_step = spacing * resolution  # in grid cells
        # Centre-line clearances: between strokes, and from a marker centre to a stroke's centre line.
        self.stroke_clearance = settings.margin + settings.paddle_thickness
        self.marker_clearance = settings.marker_radius + settings.margin + settings.paddle_thickness / 2
        slack = spacing / 2 + cell / math.sqrt(2)  # a checked point to the farthest point of its cell's centre
        paddle_radius = self.stroke_clearance + slack + cell / math.sqrt(2) + self.length * math.pi / _ANGLE_BINS
        disc_radius = self.marker_clearance + slack + cell / math.sqrt(2)
        self.border = math.ceil(max(paddle_radius + self.length, disc_radius) * resolution) + 2
        self.width = settings.image_size * resolution + 2 * self.border  # grid cells per row (and rows)
        self.empty = bytes(self.width * self.width)
        # Bounds of centre lines (strokes stay padding inside) and of target ends (so do markers).
        self.low = settings.padding + settings.paddle_thickness / 2
        self.high = settings.image_size - self.low
        self.end_low = settings.padding + settings.marker_radius
        self.end_high = settings.image_size - self.end_low
        self.paddle_stamps = [self._stamp(paddle_radius, 2 * math.pi * b / _ANGLE_BINS) for b in range(_ANGLE_BINS)]
        self.disc_stamp = self._stamp(disc_radius, None)

    def _stamp(self, radius: float, angle: float | None) -> np.ndarray:
        """Flat grid offsets, from the start's cell, of the cells within ``radius`` of a paddle (a point if None)."""
        reach = math.ceil((radius + (0 if angle is None else self.length)) * self.resolution) + 1
        steps = np.arange(-reach, reach + 1)
        dx, dy = np.meshgrid(steps, steps)  # (rows, columns) of cell offsets
        x, y = dx / self.resolution, dy / self.resolution
        if angle is None:
            distance_sq = x**2 + y**2
        else:
            ux, uy = self.length * math.cos(angle), self.length * math.sin(angle)
            along = np.clip((x * ux + y * uy) / self.length**2, 0.0, 1.0)
            distance_sq = (x - along * ux) ** 2 + (y - along * uy) ** 2
        inside = distance_sq <= radius**2
        return (dy[inside] * self.width + dx[inside]).astype(np.int64)


@lru_cache(maxsize=8)
def _layout(settings: PathfinderSettings) -> _Layout:
    return _Layout(settings)


def _point_segment_distance(px: float, py: float, paddle: Paddle) -> float:
    x0, y0, x1, y1 = paddle
    dx, dy = x1 - x0, y1 - y0
    along = min(1.0, max(0.0, ((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - x0 - along * dx, py - y0 - along * dy)


def _segment_distance(first: Paddle, second: Paddle) -> float:
    """Shortest distance between two segments: 0 if they cross, else that of an end point to the other segment."""
    ax, ay, bx, by = first
    cx, cy, dx, dy = second
    turns = ((bx - ax) * (cy - ay) - (by - ay) * (cx - ax), (bx - ax) * (dy - ay) - (by - ay) * (dx - ax),
             (dx - cx) * (ay - cy) - (dy - cy) * (ax - cx), (dx - cx) * (by - cy) - (dy - cy) * (bx - cx))
    if turns[0] * turns[1] < 0 and turns[2] * turns[3] < 0:
        return 0.0
    return min(_point_segment_distance(ax, ay, second), _point_segment_distance(bx, by, second),
               _point_segment_distance(cx, cy, first), _point_segment_distance(dx, dy, first))


class _Canvas:
    """The contours of one image as they are placed, and the occupancy grid of the finished ones (see ``_Layout``).

    The grid holds 1 near the strokes of finished contours and around the ends of targets. The contour being grown
    is checked against its own paddles exactly (it is on the grid only once finished).
    """

    def __init__(self, layout: _Layout, rnd: random.Random):
        self.layout, self.rnd = layout, rnd
        self.cells = bytearray(layout.empty)
        self.grid = np.frombuffer(self.cells, dtype=np.uint8)  # a writable view: numpy stamps, Python reads
        self.contours: list[list[Paddle]] = []

    def clear(self) -> None:
        self.cells[:] = self.layout.empty
        self.contours = []

    def _cell(self, x: float, y: float) -> int:
        layout = self.layout
        return int(y * layout.resolution + layout.border) * layout.width + int(x * layout.resolution + layout.border)

    def _fits(self, x: float, y: float, ux: float, uy: float, own: list[Paddle]) -> bool:
        """Whether the paddle from (x, y) along the unit vector (ux, uy) keeps clear of the grid and of ``own``."""
        layout, cells = self.layout, self.cells
        scale, border, width = layout.resolution, layout.border, layout.width
        gx, gy = x * scale + border, y * scale + border  # in grid cells
        sx, sy = ux * layout.sample_step, uy * layout.sample_step
        for i in range(layout.samples - 1, -1, -1):  # the far end first: it is the likeliest to collide
            if cells[int(gy + i * sy) * width + int(gx + i * sx)]:
                return False
        if len(own) < 2:
            return True
        length, clearance = layout.length, layout.stroke_clearance
        reach = 2 * (clearance + length)  # twice the midpoint offset (on an axis) beyond which paddles are clear
        mx, my = 2 * x + ux * length, 2 * y + uy * length  # twice the midpoint
        paddle = (x, y, x + ux * length, y + uy * length)
        for other in own[:-1]:  # all but the predecessor
            if (-reach < other[0] + other[2] - mx < reach and -reach < other[1] + other[3] - my < reach
                    and _segment_distance(paddle, other) < clearance):
                return False
        return True

    def _ends_clear(self, paddles: list[Paddle]) -> bool:
        """Whether a marker at either end of a new target keeps clear of the strokes it does not end."""
        clearance = self.layout.marker_clearance
        others = [paddle for contour in self.contours for paddle in contour]
        ends = ((paddles[0][0], paddles[0][1], paddles[2:]), (paddles[-1][2], paddles[-1][3], paddles[:-2]))
        return all(_point_segment_distance(x, y, paddle) >= clearance
                   for x, y, own in ends for paddle in others + own)

    def add_contour(self, num_paddles: int, *, target: bool) -> bool:
        """Try to place a contour of ``num_paddles`` from one random start; on success it is kept and stamped.

        The contour grows one paddle at a time, each turning from the last by a uniform random angle. A paddle that
        does not fit is drawn again, up to ``_STEP_TRIES`` times, then the search goes back to redraw its predecessor
        (depth first), within ``_SEARCH_BUDGET`` draws per paddle of the contour. Paddle k is checked against all
        but paddle k - 1.
        """
        layout, rnd = self.layout, self.rnd
        low, high = layout.low, layout.high
        start_low, start_high = (layout.end_low, layout.end_high) if target else (low, high)
        origin = (rnd.uniform(start_low, start_high), rnd.uniform(start_low, start_high))
        if self.cells[self._cell(*origin)]:
            return False
        paddles: list[Paddle] = []
        angles: list[float] = []
        tries = [_STEP_TRIES]  # draws left at each depth
        starts: list[tuple[float, float]] = []  # start of each placed paddle, to go back to
        bounds = (low, high)
        budget = _SEARCH_BUDGET * num_paddles
        length, gap, max_turn, random_ = layout.length, layout.settings.paddle_margin, layout.max_turn, rnd.random
        x, y = origin
        while len(paddles) < num_paddles:
            index = len(paddles)
            if not budget or not tries[-1]:
                if not budget or not index:
                    return False
                paddles.pop()
                angles.pop()
                tries.pop()
                x, y = starts.pop()
                continue
            tries[-1] -= 1
            budget -= 1
            angle = angles[-1] + (2 * random_() - 1) * max_turn if index else 2 * math.pi * random_()
            ux, uy = math.cos(angle), math.sin(angle)
            x1, y1 = x + length * ux, y + length * uy
            final = index == num_paddles - 1
            end_low, end_high = (layout.end_low, layout.end_high) if target and final else bounds
            next_inside = final or (low <= x1 + gap * ux <= high and low <= y1 + gap * uy <= high)
            if (end_low <= x1 <= end_high and end_low <= y1 <= end_high and next_inside
                    and self._fits(x, y, ux, uy, paddles)):
                paddles.append((x, y, x1, y1))
                angles.append(angle)
                tries.append(_STEP_TRIES)
                starts.append((x, y))
                x, y = x1 + gap * ux, y1 + gap * uy  # the next paddle's start
        if target and not self._ends_clear(paddles):
            return False
        bins = (round(angle * _ANGLE_BINS / (2 * math.pi)) % _ANGLE_BINS for angle in angles)
        cells = [self._cell(x, y) + layout.paddle_stamps[b] for (x, y, _, _), b in zip(paddles, bins, strict=True)]
        if target:
            cells += [self._cell(x, y) + layout.disc_stamp for x, y in _ends(paddles)]
        self.grid[np.concatenate(cells)] = 1
        self.contours.append(paddles)
        return True


def _ends(paddles: list[Paddle]) -> tuple[tuple[float, float], tuple[float, float]]:
    return (paddles[0][0], paddles[0][1]), (paddles[-1][2], paddles[-1][3])


def _layout_image(settings: PathfinderSettings, rnd: random.Random
                  ) -> tuple[list[list[Paddle]], list[tuple[int, int, int, int]], list[tuple[int, int, int, int]]]:
    """Contours of an image (targets first) that can take either label, and the marker choices for each label.

    Returns the contours, the targets (0 or 1) whose ends are ``seed_distance`` apart, and the (end of target 0,
    end of target 1) pairs that are: as (contour, end, contour, end) tuples.
    """
    layout = _layout(settings)
    canvas = _Canvas(layout, rnd)
    for _ in range(_IMAGE_TRIES):
        canvas.clear()
        if not all(any(canvas.add_contour(settings.contour_length, target=True) for _ in range(_CONTOUR_TRIES))
                   for _ in range(2)):
            continue
        ends = [_ends(contour) for contour in canvas.contours]
        same = [(c, 0, c, 1) for c in (0, 1) if math.dist(*ends[c]) >= settings.seed_distance]
        different = [(0, i, 1, j) for i in (0, 1) for j in (0, 1)
                     if math.dist(ends[0][i], ends[1][j]) >= settings.seed_distance]
        if not same or not different:
            continue
        for _ in range(settings.distractor_count):
            any(canvas.add_contour(settings.paddles_per_distractor, target=False) for _ in range(_DISTRACTOR_TRIES))
        return canvas.contours, same, different
    raise RuntimeError(f"could not fit two contours of {settings.contour_length} paddles in {settings.image_size} px "
                       f"with markers {settings.seed_distance} px apart in {_IMAGE_TRIES} tries: shorten "
                       f"contour_length or paddle_length, or lower margin or seed_distance")


def _draw(settings: PathfinderSettings, contours: list[list[Paddle]], markers: list[tuple[float, float]]
          ) -> Image.Image:
    """The image (mode "L", image_size square): drawn at antialias_scale times the size, then box-reduced."""
    scale = settings.antialias_scale
    canvas = Image.new("L", (settings.image_size * scale, settings.image_size * scale), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = round(255 * settings.paddle_contrast)
    width = max(1, round(settings.paddle_thickness * scale))
    # Coordinates as PIL reads them here: pixel i spans [i, i + 1) (it floors), and a box's right/bottom is inclusive.
    for contour in contours:
        for x0, y0, x1, y1 in contour:
            draw.line([(x0 * scale, y0 * scale), (x1 * scale, y1 * scale)], fill=stroke, width=width)
    radius = settings.marker_radius * scale
    for x, y in markers:
        cx, cy = x * scale, y * scale
        draw.ellipse([cx - radius, cy - radius, max(cx - radius, cx + radius - 1), max(cy - radius, cy + radius - 1)],
                     fill=255)
    return canvas.reduce(scale) if scale > 1 else canvas


def _render(label: int, rng: np.random.Generator | int, settings: PathfinderSettings
            ) -> tuple[Image.Image, PathfinderGeometry]:
    if label not in (0, 1) or isinstance(label, bool):
        raise ValueError(f"label={label!r} must be 0 or 1")
    if not isinstance(settings, PathfinderSettings):
        raise ValueError(f"settings={settings!r} must be a PathfinderSettings")
    if not isinstance(rng, np.random.Generator):
        if not isinstance(rng, int | np.integer) or isinstance(rng, bool) or rng < 0:
            raise ValueError(f"rng={rng!r} must be a numpy Generator or a seed (an integer >= 0)")
        rng = np.random.default_rng(int(rng))
    rnd = random.Random(int(rng.integers(2**63)))  # scalar draws from Python's generator are ~10x faster
    contours, same, different = _layout_image(settings, rnd)
    first, first_end, second, second_end = rnd.choice(same if label == 1 else different)
    markers = [_ends(contours[first])[first_end], _ends(contours[second])[second_end]]
    geometry = PathfinderGeometry(label=int(label), contours=tuple(np.array(c).reshape(-1, 2, 2) for c in contours),
                                  markers=np.array(markers), marked=(first, second), settings=settings)
    return _draw(settings, contours, markers), geometry


@overload
def render_pathfinder(label: int, rng: np.random.Generator | int, settings: PathfinderSettings = ..., *,
                      return_geometry: Literal[False] = False) -> np.ndarray: ...


@overload
def render_pathfinder(label: int, rng: np.random.Generator | int, settings: PathfinderSettings = ..., *,
                      return_geometry: Literal[True]) -> tuple[np.ndarray, PathfinderGeometry]: ...


def render_pathfinder(label: int, rng: np.random.Generator | int, settings: PathfinderSettings = PathfinderSettings(),
                      *, return_geometry: bool = False) -> np.ndarray | tuple[np.ndarray, PathfinderGeometry]:
    """One (image_size, image_size) uint8 image of class ``label`` (1: markers on the same contour).

    ``rng`` is a numpy Generator or a seed; the image depends on it and ``settings`` only. One 63-bit integer is
    drawn from a Generator (to seed the scalar generator the drawing uses). The contours do not depend on
    ``label``: the same generator state gives the same contours for both labels, with markers moved.
    ``return_geometry`` also returns a ``PathfinderGeometry``. RuntimeError if the settings leave no room for two
    target contours (after a few hundred tries).
    """
    image, geometry = _render(label, rng, settings)
    pixels = np.asarray(image, dtype=np.uint8)
    return (pixels, geometry) if return_geometry else pixels


def _image_path(index: int) -> str:
    """Path of image ``index`` relative to the dataset root, with forward slashes as in the label files."""
    return f"images/{index // SHARD_SIZE:02d}/{index:06d}.png"


def _split_sizes(size: int) -> dict[str, int]:
    """80 / 10 / 10, with val and test rounded down to even counts so that every split is half 0, half 1."""
    held_out = 2 * (size // 20)
    return {"train": size - 2 * held_out, "val": held_out, "test": held_out}


def _labels(size: int, seed: int) -> np.ndarray:
    """Labels of images 0..size-1: split by split (train, val, test), half 0 and half 1 in a seeded random order."""
    rng = np.random.default_rng([seed, _LABEL_STREAM])
    parts = [rng.permutation(np.arange(count) % 2) for count in _split_sizes(size).values()]
    return np.concatenate(parts).astype(np.int64)


def _write_image(image: Image.Image, path: Path) -> None:
    """Save a PNG through a temporary file in the same folder, renamed over ``path`` once complete.

    Not flushed to disk (``fsync``) as ``atomic_write`` does: that would cost more than drawing the image. A killed
    process never leaves a partial file under the final name; a power cut may (a rerun of a complete folder does
    not check the images).
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        image.save(temp, format="PNG")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _write_chunk(job: tuple[str, int, PathfinderSettings, int, list[int]]) -> int:
    """Draw and write images ``start..start+len(labels)-1`` that are not already there; returns how many it wrote."""
    root, seed, settings, start, labels = job
    written = 0
    for index, label in enumerate(labels, start=start):
        path = Path(root, _image_path(index))
        if path.exists():
            continue
        image, _ = _render(label, np.random.default_rng([seed, _IMAGE_STREAM, index]), settings)
        _write_image(image, path)
        written += 1
    return written


def _remove_images(root: Path, *, keep_complete: bool) -> None:
    """Delete unfinished temporary files under ``root/images``, and (unless ``keep_complete``) the images too."""
    folder = root / "images"
    if not folder.is_dir():
        return
    for shard in folder.iterdir():
        if not shard.is_dir() or not shard.name.isdigit():
            continue
        with os.scandir(shard) as entries:
            for entry in entries:
                if _TEMP_NAME.fullmatch(entry.name) or (not keep_complete and _IMAGE_NAME.fullmatch(entry.name)):
                    os.unlink(entry.path)


class _Progress:
    """``pathfinder: 12000/200000 images  950 images/s  0:03:17 left`` on stderr, rewritten in place on a terminal."""

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None):
        self.total, self.count = total, 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled and total > 0
        self.interactive = self.stream.isatty()
        self.interval = 0.5 if self.interactive else 15.0  # seconds between lines
        self.start = self.last = time.monotonic()

    def advance(self, count: int) -> None:
        self.count += count
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.interval or self.count >= self.total):
            self.last = now
            rate = self.count / max(now - self.start, 1e-9)
            left = round((self.total - self.count) / rate) if rate > 0 else 0
            line = (f"pathfinder: {self.count}/{self.total} images  {rate:.0f} images/s  "
                    f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left")
            self.stream.write(f"\r{line}" if self.interactive else f"{line}\n")
            if self.interactive and self.count >= self.total:
                self.stream.write("\n")
            self.stream.flush()


def _check_arguments(size: int, seed: int, workers: int | None, settings: PathfinderSettings) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or size % 2:
        raise ValueError(f"size={size!r} must be a positive even number of images (half of each label)")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers={workers!r} must be a positive integer or None (one per CPU)")
    if not isinstance(settings, PathfinderSettings):
        raise ValueError(f"settings={settings!r} must be a PathfinderSettings")


def _prepare_folder(root: Path, info: dict[str, object], same_run: bool, label_files: dict[str, Path]) -> None:
    """Remove the label files and the images another run drew (or, for the same run, partial ones); write
    ``settings.json`` and the image folders."""
    # Label files first: until they are written again, none lists an image that is missing or being replaced.
    for path in label_files.values():
        path.unlink(missing_ok=True)
    if not same_run:
        (root / "settings.json").unlink(missing_ok=True)
    _remove_images(root, keep_complete=same_run)
    root.mkdir(parents=True, exist_ok=True)
    if not same_run:  # from here on, every image under root was drawn with these arguments
        atomic_write(root / "settings.json",
                     lambda temp: Path(temp).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8"))
    for shard in range((int(info["size"]) - 1) // SHARD_SIZE + 1):
        (root / _image_path(shard * SHARD_SIZE)).parent.mkdir(parents=True, exist_ok=True)


def _draw_images(root: Path, seed: int, settings: PathfinderSettings, labels: list[int], workers: int,
                 progress: bool) -> int:
    """Draw the images not yet under ``root`` in ``workers`` processes; returns how many were written."""
    size = len(labels)
    chunk = max(1, min(1000, math.ceil(size / (4 * workers))))
    jobs = [(str(root), seed, settings, start, labels[start:start + chunk]) for start in range(0, size, chunk)]
    meter = _Progress(size, enabled=progress)
    written = 0
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            written += _write_chunk(job)
            meter.advance(len(job[4]))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = {pool.submit(_write_chunk, job): len(job[4]) for job in jobs}
            for future in as_completed(futures):
                written += future.result()
                meter.advance(futures[future])
    return written


def generate_pathfinder(root: str | os.PathLike, *, size: int = 200_000, seed: int = 0,
                        settings: PathfinderSettings = PathfinderSettings(), workers: int | None = None,
                        progress: bool = True) -> dict[str, object]:
    """Write a Pathfinder dataset under ``root``; returns a summary (``settings.json``'s record plus ``root``,
    ``generated``, ``written`` and ``seconds``).

    Layout: ``images/NN/IIIIII.png`` (image_size square, 8-bit greyscale; ``NN`` = index // 10000),
    ``train.txt``, ``val.txt``, ``test.txt`` (``images/NN/IIIIII.png label`` per line; val and test are 10% each,
    rounded down to an even count, train the rest: images 0.. are train, then val, then test) and ``settings.json``.
    Every split is exactly half label 0 and half label 1, in an order drawn from ``seed``. Image ``i`` is
    ``render_pathfinder(label_i, np.random.default_rng([seed, 0, i]), settings)``, so the output depends on the
    arguments only, not on ``workers`` (worker processes; default: the CPU count). ``progress`` writes a progress
    line to stderr.

    Safe to interrupt and rerun: images are renamed into place when complete and the label files are written last,
    so their presence marks a complete dataset. A rerun with the same size, seed and settings over a complete folder
    returns at once; over an interrupted one it draws only the missing images. Other arguments first delete the
    images found there.
    """
    _check_arguments(size, seed, workers, settings)
    begin = time.perf_counter()
    root = Path(root)
    splits = _split_sizes(size)
    info = {"task": "pathfinder", "format_version": _FORMAT_VERSION, "size": size, "seed": seed,
            "settings": settings.to_json(), "splits": splits}
    label_files = {split: root / f"{split}.txt" for split in SPLITS}
    try:
        same_run = json.loads((root / "settings.json").read_text(encoding="utf-8")) == info
    except (OSError, ValueError):
        same_run = False
    if same_run and all(path.is_file() for path in label_files.values()):
        return {**info, "root": str(root), "generated": False, "written": 0, "seconds": time.perf_counter() - begin}
    _prepare_folder(root, info, same_run, label_files)
    labels = _labels(size, seed).tolist()
    written = _draw_images(root, seed, settings, labels, workers or os.cpu_count() or 1, progress)
    start = 0
    for split, count in splits.items():
        text = "".join(f"{_image_path(index)} {labels[index]}\n" for index in range(start, start + count))
        atomic_write(label_files[split], lambda temp, t=text: Path(temp).write_text(t, encoding="utf-8"))
        start += count
    return {**info, "root": str(root), "generated": True, "written": written, "seconds": time.perf_counter() - begin}
