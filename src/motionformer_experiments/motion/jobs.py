"""``motionformer bench motion``: the paper's Tables 3, 4, 7 and Figure 3 in miniature, on synthetic motion clips.

Every arm trains a small Motionformer from scratch under one fixed budget (the same steps, batch, learning-rate
schedule, data stream and seeds for every arm) on clips from ``render_clip``: the plain variant (white object) over
the textured background dimmed to ``Budget.background_level``, so that a camera pan is visible. The class is the
object's motion; a single frame carries no information about it (see ``motionformer.data.synthetic``). Fresh clips are
rendered for every step (no epochs, no over-fitting to a fixed set); each condition has one fixed validation set,
rendered from seeds the training stream never uses.

Groups (each compares arms within itself; rows name the paper's figure for the matching SSv2 row):

* ``attention`` (Table 4 and 7): joint, divided and trajectory attention; trajectory with temporal averaging (Avg_T)
  and with space-time normalisation (Norm_ST); a single-frame model (one random frame of the clip).
* ``camera pan``: joint, divided and trajectory when the camera pans (the class is the motion relative to the scene).
* ``stride`` (Figure 3): joint, divided and trajectory at temporal strides 1, 4 and 8 (stride 2 is the ``attention``
  group's); a larger stride means more motion between the frames the model sees.
* ``orthoformer`` (Table 3): at 24 pixels with patch 2 (S = 144 tokens per frame and T x S = 576 in all, so that 128
  prototypes, shared or per frame, approximate), exact
  trajectory attention, Orthoformer with 16, 64 and 128 shared prototypes, random and segment-means selection, per-frame
  prototypes, Nystrom with 128 landmarks and Performer with 256 features.

Measured per arm: top-1 on the validation set (mean and standard deviation over seeds), the training loss every
``steps / 20`` steps (to see whether and when an arm left the initial plateau at ln 10), parameters, multiply-adds of
one clip (``count_flops``), training memory and the median time of one training step (forward, backward, AdamW;
rendering excluded). Memory on CPU, where torch has no peak counter: the bytes of the tensors autograd keeps for the
backward pass at the end of the forward pass (distinct storages, parameters excluded), plus parameters, gradients and
the two AdamW moments; on CUDA, ``max_memory_allocated`` over a training step. Jobs (one arm, one seed) run in
``workers`` processes of one thread each (``workers=1``: in this process, with its threads), so times are per thread
with the other workers busy beside it: compare them within one run only.

Each finished job is written at once to ``OUT/runs/`` (atomically); a rerun with the same budget skips those, so an
interrupted run resumes. At the end: ``results.json``, ``results.md`` and the charts ``attention.png``,
``stride.png``, ``orthoformer.png`` and ``loss.png`` (training loss against steps, per group).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from motionformer.analysis.memory import training_memory_bytes
from motionformer.data.synthetic import MOTION_CLASSES, render_clip
from motionformer.engine.train import lr_factor, parameter_groups
from motionformer.io import atomic_write
from motionformer.models.flops import count_flops
from motionformer.models.motionformer import Motionformer, count_parameters
from motionformer.models.registry import model_arguments

__all__ = ["ARMS", "Arm", "Budget", "run_benchmark", "train_arm"]

NUM_CLASSES = len(MOTION_CLASSES)
# A job has left the initial plateau (loss ln 10, uniform predictions) when its mean training loss over the last tenth
# of the steps is at least this far below ln 10.
PLATEAU_MARGIN = 0.1
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


# ---------------------------------------------------------------------- data


def _clips(arm: Arm, budget: Budget, labels: np.ndarray, seeds: np.ndarray, frame_rng: np.random.Generator) -> Tensor:
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


def _validation_set(arm: Arm, budget: Budget) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(_VAL_SEED)
    labels = np.arange(budget.val_clips) % NUM_CLASSES
    seeds = rng.integers(2**31, size=budget.val_clips)
    return _clips(arm, budget, labels, seeds, rng), torch.from_numpy(labels)


def _build(arm: Arm, budget: Budget) -> Motionformer:
    frames = 1 if arm.single_frame else budget.num_frames
    options = dict(img_size=arm.size, patch_size=arm.patch, num_frames=frames,
                   tubelet_size=1 if arm.single_frame else budget.tubelet, num_classes=NUM_CLASSES,
                   embed_dim=budget.width, depth=budget.depth, num_heads=budget.heads, attention="trajectory")
    return Motionformer(**model_arguments({**options, **arm.model}))


# ---------------------------------------------------------------------- measurements


def _training_memory(model: Motionformer, video: Tensor, labels: Tensor) -> int:
    """Bytes of one training step's memory on CPU (see the module docstring)."""
    return training_memory_bytes(model, lambda: F.cross_entropy(model(video), labels))


def _step(model: nn.Module, video: Tensor, labels: Tensor, optimizer: torch.optim.Optimizer, budget: Budget) -> float:
    loss = F.cross_entropy(model(video), labels, label_smoothing=budget.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), budget.clip_grad)
    optimizer.step()
    return loss.item()


@torch.no_grad()
def _accuracy(model: nn.Module, video: Tensor, labels: Tensor, device: torch.device) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(video), 50):
        logits = model(video[start:start + 50].to(device))
        correct += (logits.argmax(-1).cpu() == labels[start:start + 50]).sum().item()
    model.train()
    return correct / len(video)


def train_arm(arm: Arm, budget: Budget, seed: int, device: str = "cpu", threads: int = 1) -> dict[str, Any]:
    """Train one arm with one seed; returns its measurements (``top1`` in [0, 1])."""
    torch.set_num_threads(threads)
    device_ = torch.device(device)
    begin = time.perf_counter()
    torch.manual_seed(seed)
    model = _build(arm, budget).to(device_)
    optimizer = torch.optim.AdamW(parameter_groups(model, budget.weight_decay), lr=budget.lr)
    stream = np.random.default_rng([seed, 1])  # the same clips, in the same order, for every arm of this seed
    frame_rng = np.random.default_rng([seed, 2])

    def batch() -> tuple[Tensor, Tensor]:
        labels = stream.integers(NUM_CLASSES, size=budget.batch_size)
        video = _clips(arm, budget, labels, stream.integers(2**31, size=budget.batch_size), frame_rng)
        return video.to(device_), torch.from_numpy(labels).to(device_)

    video, labels = batch()
    if device_.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device_)
    else:
        memory = _training_memory(model, video, labels)
    schedule = dict(steps_per_epoch=budget.steps, epochs=1, schedule="cosine", lr_steps=[], gamma=0.1,
                    warmup_epochs=budget.warmup, min_ratio=0.0)
    step_times, losses = [], []
    for step in range(budget.steps):
        if step:
            video, labels = batch()
        for group in optimizer.param_groups:
            group["lr"] = budget.lr * lr_factor(step, **schedule)
        start = time.perf_counter()
        losses.append(_step(model, video, labels, optimizer, budget))
        if device_.type == "cuda":
            torch.cuda.synchronize(device_)
        step_times.append(time.perf_counter() - start)
        if step == 0 and device_.type == "cuda":
            memory = torch.cuda.max_memory_allocated(device_)
        if not math.isfinite(losses[-1]):
            raise RuntimeError(f"{arm.group}/{arm.name} seed {seed}: the loss is {losses[-1]} at step {step}")
    val_video, val_labels = _validation_set(arm, budget)
    tail = losses[-max(1, len(losses) // 10):]
    bins = np.array_split(np.array(losses), min(20, len(losses)))
    return {
        "group": arm.group, "name": arm.name, "seed": seed,
        "top1": _accuracy(model, val_video, val_labels, device_),
        "final_train_loss": sum(tail) / len(tail),
        "loss_curve": {"steps": np.cumsum([len(b) for b in bins]).tolist(),
                       "mean_loss": [round(float(b.mean()), 4) for b in bins]},
        "params": count_parameters(model), "macs": count_flops(model),
        "memory_bytes": memory, "step_seconds": statistics.median(step_times),
        "wall_seconds": time.perf_counter() - begin,
    }


# ---------------------------------------------------------------------- the run


def _fingerprint(arm: Arm, budget: Budget) -> str:
    text = json.dumps({"arm": asdict(arm), "budget": asdict(budget)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_done(path: Path, fingerprint: str) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent, or cut short by a crash before the rename: run it again
    return record if record.get("fingerprint") == fingerprint else None


def _write_json(path: Path, value: Any) -> None:
    atomic_write(path, lambda temp: Path(temp).write_text(json.dumps(value, indent=1) + "\n"))


def _check_arguments(budget: Budget, seeds: int, workers: int, arms: tuple[Arm, ...]) -> None:
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if budget.steps < 1 or budget.val_clips < NUM_CLASSES:
        raise ValueError(f"--steps must be at least 1 and --val-clips at least {NUM_CLASSES}, got "
                         f"{budget.steps} and {budget.val_clips}")
    if not arms:
        raise ValueError("no arm selected")
    if not 0.0 <= budget.background_level < 1.0:
        raise ValueError(f"--background-level must be in [0, 1), got {budget.background_level}")
    panning = sorted({arm.group for arm in arms if arm.pan})
    if panning and not budget.background_level:
        raise ValueError(f"--background-level 0 leaves a black background, on which a camera pan is invisible: "
                         f"leave out the group(s) {', '.join(map(repr, panning))} or give a level above 0")


def run_benchmark(out: str | os.PathLike, *, budget: Budget = FULL, seeds: int = 2, workers: int = 2,
                  device: str = "cpu", arms: tuple[Arm, ...] = ARMS, progress: bool = True) -> dict[str, Any]:
    """Train every arm with every seed (jobs in ``workers`` processes), write the reports into ``out``."""
    _check_arguments(budget, seeds, workers, arms)
    started = time.perf_counter()
    out = Path(out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    records: dict[tuple[str, int], dict[str, Any]] = {}
    pending = []
    for arm in arms:
        fingerprint = _fingerprint(arm, budget)
        for seed in range(seeds):
            done = _load_done(runs / f"{arm.slug}-seed{seed}.json", fingerprint)
            if done is not None:
                records[arm.slug, seed] = done
            else:
                pending.append((arm, seed, fingerprint))
    # the slowest jobs first, so that the pool does not end on one long job
    pending.sort(key=lambda job: (job[0].group != "orthoformer", job[0].group, job[1]))
    total, begin = len(pending), time.perf_counter()
    if progress and len(records):
        print(f"bench motion: {len(records)} finished jobs found in {runs}, {total} to run", file=sys.stderr)

    def finished(count: int, arm: Arm, seed: int, fingerprint: str, result: dict[str, Any]) -> None:
        record = {**result, "fingerprint": fingerprint}
        _write_json(runs / f"{arm.slug}-seed{seed}.json", record)
        records[arm.slug, seed] = record
        if progress:
            print(f"[{count}/{total}] {arm.group} / {arm.name}, seed {seed}: top-1 {100 * record['top1']:.1f}% "
                  f"({record['wall_seconds']:.0f} s; {time.perf_counter() - begin:.0f} s so far)",
                  file=sys.stderr, flush=True)

    if workers == 1 or total <= 1:  # in this process, with its threads
        for count, (arm, seed, fingerprint) in enumerate(pending, 1):
            finished(count, arm, seed, fingerprint, train_arm(arm, budget, seed, device, torch.get_num_threads()))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, total), mp_context=context) as pool:
            futures = {pool.submit(train_arm, arm, budget, seed, device, 1): (arm, seed, fingerprint)
                       for arm, seed, fingerprint in pending}
            for count, future in enumerate(as_completed(futures), 1):
                finished(count, *futures[future], future.result())
    summary = summarise(arms, records, seeds)
    history = _history(out / "results.json", budget)
    if total:
        history.append({"jobs_run": total, "run_seconds": round(time.perf_counter() - started, 1),
                        "workers": workers, "device": device, "cpu_count": os.cpu_count()})
    report = {"budget": asdict(budget), "seeds": seeds, "workers": workers, "device": device,
              "chance": 1 / NUM_CLASSES, "torch": torch.__version__, "history": history,
              "rows": summary, "runs": [records[arm.slug, seed] for arm in arms for seed in range(seeds)]}
    _write_json(out / "results.json", report)
    table = markdown_table(summary, budget, seeds, history)
    atomic_write(out / "results.md", lambda temp: Path(temp).write_text(table))
    write_charts(out, summary)
    return report


def _history(path: Path, budget: Budget) -> list[dict[str, Any]]:
    """The invocations that trained jobs into this folder under this budget, from its previous ``results.json``."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(previous, dict) or previous.get("budget") != asdict(budget):
        return []
    return list(previous.get("history", []))


def _mean_curve(runs: list[dict[str, Any]]) -> dict[str, list[float]] | None:
    """The runs' loss curves averaged point by point (None when a record predates them)."""
    curves = [run.get("loss_curve") for run in runs]
    if not all(curves):
        return None
    return {"steps": curves[0]["steps"],
            "mean_loss": [round(statistics.fmean(values), 4) for values in zip(*(c["mean_loss"] for c in curves),
                                                                                 strict=True)]}


def left_plateau(record: dict[str, Any]) -> bool:
    """Whether a job's final training loss is ``PLATEAU_MARGIN`` or more below ln 10 (it learnt something)."""
    return record["final_train_loss"] < math.log(NUM_CLASSES) - PLATEAU_MARGIN


def summarise(arms: tuple[Arm, ...], records: dict[tuple[str, int], dict[str, Any]], seeds: int
              ) -> list[dict[str, Any]]:
    rows = []
    for arm in arms:
        runs = [records[arm.slug, seed] for seed in range(seeds)]
        top1 = [100 * run["top1"] for run in runs]
        rows.append({
            "group": arm.group, "name": arm.name, "stride": arm.stride, "pan": arm.pan,
            "top1_mean": statistics.fmean(top1), "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
            "top1_runs": top1, "off_plateau": sum(left_plateau(run) for run in runs), "paper_ssv2": arm.paper,
            "params": runs[0]["params"], "macs": runs[0]["macs"],
            "memory_mb": runs[0]["memory_bytes"] / 2**20,
            "step_ms": 1e3 * statistics.median(run["step_seconds"] for run in runs),
            "loss_curve": _mean_curve(runs),
        })
    return rows


def markdown_table(rows: list[dict[str, Any]], budget: Budget, seeds: int,
                   history: list[dict[str, Any]] | None = None) -> str:
    """The report's table; ``history``: the invocations that trained its jobs (``run_benchmark`` keeps it)."""
    wall = ""
    if history:
        minutes = sum(entry["run_seconds"] for entry in history) / 60
        wall = (f" Wall time: {minutes:.1f} min for {sum(entry['jobs_run'] for entry in history)} jobs, "
                f"in {len(history)} invocation(s).")
    lines = [f"Top-1 (%) on {budget.val_clips} validation clips, mean ± std over {seeds} seed(s); chance "
             f"{100 / NUM_CLASSES:.0f}%. Budget: {budget.steps} steps of batch {budget.batch_size}, lr {budget.lr:g}, "
             f"width {budget.width}, depth {budget.depth}, {budget.heads} heads, {budget.num_frames} frames (tubelet "
             f"{budget.tubelet}), background level {budget.background_level:g}. MACs of one clip; memory of one "
             f"training step; time per step median, one thread. Off plateau: seeds whose final training loss "
             f"(last tenth of the steps) is at least {PLATEAU_MARGIN:g} below ln {NUM_CLASSES}.{wall}",
             "", "| group | arm | top-1 | off plateau | paper SSv2 | params | MMACs | memory MB | ms/step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        paper = f"{row['paper_ssv2']:.1f}" if row["paper_ssv2"] is not None else "-"
        lines.append(f"| {row['group']} | {row['name']} | {row['top1_mean']:.1f} ± {row['top1_std']:.1f} "
                     f"| {row['off_plateau']}/{len(row['top1_runs'])} | {paper} "
                     f"| {row['params'] / 1e3:.0f}k | {row['macs'] / 1e6:.1f} | {row['memory_mb']:.0f} "
                     f"| {row['step_ms']:.0f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- charts (PIL, no plotting library needed)


def _bar_chart(path: Path, title: str, rows: list[dict[str, Any]]) -> None:
    from PIL import Image, ImageDraw

    width, bar, left, top, bottom = 720, 22, 170, 36, 30
    height = top + bottom + len(rows) * (bar + 8)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), title, fill="black")
    scale = (width - left - 40) / 100.0
    for i, row in enumerate(rows):
        y = top + i * (bar + 8)
        draw.text((10, y + 5), row["name"], fill="black")
        mean, std = row["top1_mean"], row["top1_std"]
        draw.rectangle([left, y, left + mean * scale, y + bar], fill=(70, 120, 190))
        draw.line([left + (mean - std) * scale, y + bar / 2, left + (mean + std) * scale, y + bar / 2], fill="black",
                  width=2)
        draw.text((left + (mean + std) * scale + 6, y + 5), f"{mean:.1f} ± {std:.1f}", fill="black")
    chance = left + 100 / NUM_CLASSES * scale
    draw.line([chance, top - 4, chance, height - bottom + 4], fill=(200, 60, 60), width=1)
    draw.text((chance + 3, height - bottom + 6), "chance", fill=(200, 60, 60))
    for tick in range(0, 101, 20):
        draw.text((left + tick * scale - 6, height - 16), str(tick), fill="grey")
    image.save(path, format="PNG")


_PALETTE = ((200, 90, 40), (60, 150, 60), (60, 90, 200), (150, 60, 170), (20, 160, 170), (120, 120, 120),
            (210, 160, 20), (230, 80, 140), (90, 60, 30))


def _line_panel(image: Any, box: tuple[int, int, int, int], title: str, series: dict[str, list[tuple[float, float]]],
                y_range: tuple[float, float], x_at: Callable[[float], float], x_ticks: list[float],
                reference: float | None = None) -> None:
    """Draw one panel of lines into ``image``: box (left, top, right, bottom) of the plot area; ``x_at`` maps an x
    value to [0, 1] along the axis; y values outside ``y_range`` are drawn at its edge; a grey dashed line at
    ``reference`` (chance, or ln 10)."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    left, top, right, bottom = box
    low, high = y_range

    def y_at(y: float) -> float:
        return bottom - (min(max(y, low), high) - low) / (high - low) * (bottom - top)

    def point(x: float, y: float) -> tuple[float, float]:
        return left + x_at(x) * (right - left), y_at(y)

    draw.text((left, top - 30), title, fill="black")
    for i in range(6):
        value = low + (high - low) * i / 5
        y = y_at(value)
        draw.line([left, y, right, y], fill=(230, 230, 230))
        draw.text((left - 40, y - 6), f"{value:g}", fill="grey")
    for tick in x_ticks:
        draw.text((left + x_at(tick) * (right - left) - 8, bottom + 6), f"{tick:g}", fill="grey")
    if reference is not None:
        y = y_at(reference)
        for x in range(left, right, 8):
            draw.line([x, y, min(x + 4, right), y], fill=(150, 150, 150))
    for index, (name, points) in enumerate(series.items()):
        colour = _PALETTE[index % len(_PALETTE)]
        xy = [point(x, y) for x, y in sorted(points)]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.text((right + 10, top + 14 * index), name, fill=colour)


def _stride_chart(path: Path, rows: list[dict[str, Any]]) -> None:
    from PIL import Image

    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row["group"] in ("attention", "stride") and row["name"].split()[0] in ("joint", "divided", "trajectory") \
                and row["name"] not in ("trajectory Avg_T", "trajectory Norm_ST"):
            series.setdefault(row["name"].split()[0], []).append((row["stride"], row["top1_mean"]))
    strides = sorted({s for points in series.values() for s, _ in points})
    image = Image.new("RGB", (640, 400), "white")
    _line_panel(image, (50, 60, 520, 360), "Figure 3 in miniature: top-1 (%) against temporal stride",
                dict(sorted(series.items())), (0, 100), lambda s: strides.index(s) / max(len(strides) - 1, 1),
                strides, reference=100 / NUM_CLASSES)
    image.save(path, format="PNG")


def _loss_chart(path: Path, rows: list[dict[str, Any]]) -> None:
    """Training loss (mean over seeds) against steps, one panel per group; ln 10 marks the initial plateau."""
    from PIL import Image

    groups = list(dict.fromkeys(row["group"] for row in rows if row.get("loss_curve")))
    panel = 260
    image = Image.new("RGB", (760, 20 + panel * len(groups)), "white")
    last = max(row["loss_curve"]["steps"][-1] for row in rows if row.get("loss_curve"))
    ticks = [round(last * i / 4) for i in range(5)]
    for index, group in enumerate(groups):
        series = {row["name"]: list(zip(row["loss_curve"]["steps"], row["loss_curve"]["mean_loss"], strict=True))
                  for row in rows if row["group"] == group and row.get("loss_curve")}
        top = 50 + panel * index
        _line_panel(image, (60, top, 560, top + panel - 70), f"{group}: training loss (mean over seeds) by step; "
                    f"dashed: ln {NUM_CLASSES}, the plateau", series, (0.5, 2.5), lambda s: s / last, ticks,
                    reference=math.log(NUM_CLASSES))
    image.save(path, format="PNG")


def write_charts(out: Path, rows: list[dict[str, Any]]) -> None:
    chance = f"chance {100 / NUM_CLASSES:.0f}%"
    main = [r for r in rows if r["group"] == "attention"]
    main += [{**r, "name": f"{r['name']} (pan)"} for r in rows if r["group"] == "camera pan"]
    charts = [("attention.png", f"Tables 4 and 7 in miniature: top-1 (%), {chance}", main),
              ("orthoformer.png", f"Table 3 in miniature: top-1 (%), {chance}",
               [r for r in rows if r["group"] == "orthoformer"])]
    for name, title, selected in charts:
        if selected:
            atomic_write(out / name, lambda temp, t=title, s=selected: _bar_chart(Path(temp), t, s))
    if any(r["group"] == "stride" for r in rows):
        atomic_write(out / "stride.png", lambda temp: _stride_chart(Path(temp), rows))
    if any(r.get("loss_curve") for r in rows):
        atomic_write(out / "loss.png", lambda temp: _loss_chart(Path(temp), rows))

