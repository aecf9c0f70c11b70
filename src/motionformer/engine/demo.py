"""``motionformer demo``: the whole job on the synthetic motion videos, small enough for a laptop CPU.

The demo's data (``DemoData``) is generated here, never by the general training code: ``run_demo`` writes it into
its own folder, and ``prepare_preset_data`` into the ``synthetic-tiny`` preset's default ``data.root`` for
``motionformer train synthetic-tiny`` (a ``data.root`` given on the command line must already hold the videos).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from motionformer.data.datasets.annotations import read_annotations
from motionformer.data.synthetic import MOTION_CLASSES, generate
from motionformer.engine.build import annotation_path
from motionformer.engine.config import Config, load_config
from motionformer.engine.train import train
from motionformer.inference import predict

log = logging.getLogger(__name__)

PRESET = "synthetic-tiny"


@dataclasses.dataclass(frozen=True)
class DemoData:
    """The synthetic motion videos the demo trains on: the plain variant (white objects on black), which a small
    model learns from scratch in minutes."""

    num_videos: int = 2000
    size: int = 32
    frames: int = 16
    plain: bool = True


def generate_demo_data(root: str | Path, data: DemoData = DemoData(), *, seed: int = 0) -> None:
    """Write ``data``'s videos and annotations to ``root`` unless they are there already."""
    summary = generate(root, num_videos=data.num_videos, size=data.size, frames=data.frames, plain=data.plain,
                       seed=seed)
    if summary.num_written:
        log.info("generated %d synthetic videos in %s (%.1f s)", summary.num_written, summary.root, summary.seconds)


def prepare_preset_data(config: Config, overrides: Sequence[str]) -> None:
    """For ``motionformer train synthetic-tiny``: generate the demo's videos in the preset's own ``data.root``.

    Nothing is written when ``overrides`` set ``data.root`` (the user's folder), nor under torchrun (every process
    would write; generate the data first with ``motionformer data synthetic``).
    """
    if any(item.split("=", 1)[0].strip() == "data.root" for item in overrides):
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return
    generate_demo_data(config.data.root, seed=config.seed)


def logged_training_seconds(output_dir: str | Path) -> float:
    """The training time of a run over all its invocations: the sum of the ``seconds`` of every epoch record in
    ``output_dir/metrics.jsonl`` (a resumed epoch counts from where it resumed)."""
    path = Path(output_dir) / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return sum(float(record.get("seconds", 0.0)) for record in records if record.get("kind") == "epoch")


@dataclasses.dataclass
class DemoResult:
    """What the demo did: the run's summary, one held-out video with its true class and the top predictions.

    ``seconds`` is this invocation's wall time; ``training_seconds`` the run's training time over every invocation
    (``logged_training_seconds``).
    """

    summary: dict[str, Any]
    video: Path
    true_class: str
    predictions: list[tuple[str, float]]
    chance: float
    seconds: float
    training_seconds: float
    output_dir: Path

    def report(self) -> str:
        """The lines ``motionformer demo`` prints."""
        summary = self.summary
        lines = [f"motionformer demo: {summary['epochs']} epochs, {summary['steps']} steps; run folder "
                 f"{self.output_dir}"]
        if summary.get("test_top1") is not None:
            lines.append(f"test top-1 {summary['test_top1']:.1f}% (top-5 {summary['test_top5']:.1f}%, chance "
                         f"{self.chance:.0f}%) on {int(summary['test_videos'])} held-out videos")
        lines.append(f"held-out video {self.video} (true class: {self.true_class}):")
        lines += [f"  {rank}. {name}  {score:.3f}" for rank, (name, score) in enumerate(self.predictions, start=1)]
        lines.append(f"training: {self.training_seconds / 60:.1f} min for {summary['epochs']} epochs "
                     "(metrics.jsonl, every invocation of this run)")
        lines.append(f"this invocation: {self.seconds / 60:.1f} min (data, training, test and prediction)")
        return "\n".join(lines)


def run_demo(folder: str | Path = "motionformer-demo", *, epochs: int | None = None, overrides: Sequence[str] = (),
             data: DemoData = DemoData()) -> DemoResult:
    """Generate ``data`` in ``folder/data`` (if absent), train ``synthetic-tiny`` in ``folder/run`` (resuming if it
    was interrupted), test it, and predict the first held-out video."""
    started = time.monotonic()
    folder = Path(folder)
    items = [f"data.root={folder / 'data'}", f"output_dir={folder / 'run'}"]
    if epochs is not None:
        items.append(f"train.epochs={epochs}")
    config = load_config(PRESET, [*items, *overrides])
    generate_demo_data(config.data.root, data, seed=config.seed)
    summary = train(config)
    held_out = read_annotations(annotation_path(config, "val"), config.data.root, config.data.format)
    entry = held_out.entries[0]
    names = held_out.class_names or list(MOTION_CLASSES)
    answer = predict([entry.path], Path(config.output_dir) / "model.safetensors", top_k=3, device=config.train.device)
    return DemoResult(summary=summary, video=entry.path, true_class=names[entry.label], predictions=answer[0].top[""],
                      chance=100.0 / len(names), seconds=time.monotonic() - started,
                      training_seconds=logged_training_seconds(config.output_dir),
                      output_dir=Path(config.output_dir))
