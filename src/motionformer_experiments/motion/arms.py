"""What the motion benchmark trains: the budget every arm shares, the arms (one per row of the paper's tables), and
their clips and models."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from motionformer.data.synthetic import MOTION_CLASSES, render_clip
from motionformer.models.motionformer import Motionformer
from motionformer.models.registry import model_arguments

__all__ = ["ARMS", "FULL", "NUM_CLASSES", "QUICK", "Arm", "Budget", "build_model", "make_budget", "render_batch",
           "select_arms", "validation_set"]

NUM_CLASSES = len(MOTION_CLASSES)
_VAL_SEED = 1_000_003  # validation clips come from this seed's stream; training streams are seeded [seed, 1]


@dataclass(frozen=True)
class Budget:
    """What every arm gets: the same for all of them (the data's ``background_level`` included)."""

    steps: int = 800
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the steps
    label_smoothing: float = 0.1
    clip_grad: float = 1.0
    val_clips: int = 500
    width: int = 64
    depth: int = 2
    heads: int = 2
    num_frames: int = 8
    tubelet: int = 2
    background_level: float = 0.3  # brightness of the dimmed textured background behind the white object


QUICK = Budget(steps=200, val_clips=200)
FULL = Budget()


@dataclass(frozen=True)
class Arm:
    """One trained configuration: ``model`` is passed to ``Motionformer`` over the budget's defaults."""

    group: str
    name: str
    model: dict[str, Any] = field(default_factory=dict)
    pan: bool = False
    stride: int = 2
    size: int = 32
    patch: int = 4
    single_frame: bool = False
    paper: float | None = None  # the paper's SSv2 top-1 for the matching row

    @property
    def slug(self) -> str:
        text = f"{self.group}-{self.name}".lower()
        return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def _group(group: str, rows: list[tuple[str, dict[str, Any], float | None]], **common: Any) -> list[Arm]:
    return [Arm(group, name, model, paper=paper, **common) for name, model, paper in rows]


_MAIN = [("joint", {"attention": "joint"}, 64.0), ("divided", {"attention": "divided"}, 64.2),
         ("trajectory", {"attention": "trajectory"}, 66.5)]
_ORTHO = {"attention": "trajectory", "approx": "orthoformer"}
ARMS: tuple[Arm, ...] = (
    *_group("attention", [
        *_MAIN,
        ("trajectory Avg_T", {"temporal_pooling": "average"}, 60.0),
        ("trajectory Norm_ST", {"normalization": "space_time"}, 60.9),
    ]),
    Arm("attention", "single frame", {"attention": "trajectory"}, single_frame=True, paper=27.1),
    *_group("camera pan", [(name, model, None) for name, model, _ in _MAIN], pan=True),
    *(arm for stride in (1, 4, 8) for arm in _group("stride", [(f"{name} s{stride}", model, None)
                                                                for name, model, _ in _MAIN], stride=stride)),
    *_group("orthoformer", [
        ("exact", {"attention": "trajectory"}, 66.5),
        ("orthoformer 16", {**_ORTHO, "num_prototypes": 16}, 59.2),
        ("orthoformer 64", {**_ORTHO, "num_prototypes": 64}, 63.0),
        ("orthoformer 128", {**_ORTHO, "num_prototypes": 128}, 63.8),
        ("random 128", {**_ORTHO, "prototype_selection": "random"}, 62.5),
        ("segment means 128", {**_ORTHO, "prototype_selection": "segment_means"}, 60.3),
        ("per-frame 128", {**_ORTHO, "shared_prototypes": False}, 61.5),
        ("nystrom 128", {"approx": "nystrom", "num_prototypes": 128}, 64.0),
        ("performer 256", {"approx": "performer"}, 52.7),
    ], size=24, patch=2),
)



def make_budget(quick: bool = False, **changes: Any) -> Budget:
    """``QUICK`` or ``FULL`` with the ``changes`` that are not None."""
    return dataclasses.replace(QUICK if quick else FULL,
                               **{key: value for key, value in changes.items() if value is not None})


def select_arms(groups: str | None) -> tuple[Arm, ...]:
    """The arms of the comma-separated ``groups`` (None: all); raises ValueError naming an unknown group."""
    if not groups:
        return ARMS
    names = [name.strip() for name in groups.split(",")]
    known = sorted({arm.group for arm in ARMS})
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"--groups: unknown group(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return tuple(arm for arm in ARMS if arm.group in names)


def render_batch(arm: Arm, budget: Budget, labels: np.ndarray, seeds: np.ndarray,
                 frame_rng: np.random.Generator | None) -> Tensor:
    """Render clips, sample every ``stride``-th frame (or one random frame), -> (B, 3, F, H, W) in [-1, 1].

    Only the sampled frames of each ``num_frames * stride``-frame clip are drawn.
    """
    span = budget.num_frames * arm.stride
    if arm.single_frame:
        chosen = [[int(frame)] for frame in frame_rng.integers(span, size=len(labels))]
    else:
        chosen = [list(range(0, span, arm.stride))] * len(labels)
    batch = np.stack([render_clip(int(label), num_frames=span, size=arm.size, rng=int(seed), camera_pan=arm.pan,
                                  plain=True, background_level=budget.background_level,
                                  frame_indices=frames)
                      for label, seed, frames in zip(labels, seeds, chosen, strict=True)])  # (B, F, H, W, 3)
    video = torch.from_numpy(batch).permute(0, 4, 1, 2, 3).float()
    return video.div_(127.5).sub_(1.0)


def validation_set(arm: Arm, budget: Budget) -> tuple[Tensor, Tensor]:
    """The arm's fixed validation clips (B, 3, F, H, W), every class equally often, and their labels (B,)."""
    rng = np.random.default_rng(_VAL_SEED)
    labels = np.arange(budget.val_clips) % NUM_CLASSES
    seeds = rng.integers(2**31, size=budget.val_clips)
    return render_batch(arm, budget, labels, seeds, rng), torch.from_numpy(labels)


def build_model(arm: Arm, budget: Budget) -> Motionformer:
    """The arm's Motionformer: the budget's width, depth, heads and frames, then the arm's own arguments."""
    frames = 1 if arm.single_frame else budget.num_frames
    options = dict(img_size=arm.size, patch_size=arm.patch, num_frames=frames,
                   tubelet_size=1 if arm.single_frame else budget.tubelet, num_classes=NUM_CLASSES,
                   embed_dim=budget.width, depth=budget.depth, num_heads=budget.heads, attention="trajectory")
    return Motionformer(**model_arguments({**options, **arm.model}))

