"""``motionformer demo``: the whole job on the synthetic motion videos, small enough for a laptop CPU."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from motionformer.data.datasets.annotations import read_annotations
from motionformer.data.synthetic import MOTION_CLASSES
from motionformer.engine.build import annotation_path
from motionformer.engine.config import load_config
from motionformer.engine.evaluate import predict
from motionformer.engine.train import train

PRESET = "synthetic-tiny"


@dataclasses.dataclass
class DemoResult:
    """What the demo did: the run's summary, one held-out video with its true class and the top predictions."""

    summary: dict[str, Any]
    video: Path
    true_class: str
    predictions: list[tuple[str, float]]
    chance: float
    seconds: float
    output_dir: Path


def run_demo(folder: str | Path = "motionformer-demo", *, epochs: int | None = None,
             overrides: Sequence[str] = ()) -> DemoResult:
    """Generate the data in ``folder/data`` (if absent), train ``synthetic-tiny`` in ``folder/run`` (resuming if it
    was interrupted), test it, and predict the first held-out video."""
    started = time.monotonic()
    folder = Path(folder)
    items = [f"data.root={folder / 'data'}", f"output_dir={folder / 'run'}"]
    if epochs is not None:
        items.append(f"train.epochs={epochs}")
    config = load_config(PRESET, [*items, *overrides])
    summary = train(config)
    held_out = read_annotations(annotation_path(config, "val"), config.data.root, config.data.format)
    entry = held_out.entries[0]
    names = held_out.class_names or list(MOTION_CLASSES)
    answer = predict([entry.path], Path(config.output_dir) / "model.safetensors", top_k=3, device=config.train.device)
    return DemoResult(summary=summary, video=entry.path, true_class=names[entry.label], predictions=answer[0][""],
                      chance=100.0 / len(names), seconds=time.monotonic() - started,
                      output_dir=Path(config.output_dir))
