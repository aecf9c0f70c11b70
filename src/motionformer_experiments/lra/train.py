"""Train and measure the LRA Transformer on ListOps or Pathfinder (``motionformer lra train``).

Presets. ``full``: the setup for a GPU, ListOps at 2000 tokens (batch 32, 5,000 steps, 1,000 warm-up steps) and
Pathfinder-32 at 1,024 pixels (batch 128, 62,400 steps, 312 warm-up steps). ``reduced``: what 2 CPU cores finish in
minutes, fewer steps and, for ListOps, shorter expressions (a set generated with 50 < length < 250, read at up to 250
tokens); Pathfinder keeps its 1,024 pixels, with few steps. Both use AdamW at 1e-4 without weight decay, linear
warm-up then linear decay to 0, dropout 0.1. Accuracy is measured once, after the last step, on the test split.

Measured per run: test accuracy, multiply-adds of one sequence at the preset's length (PyTorch's FLOP counter / 2),
the memory of one training step at the preset's batch and length (``step_memory_bytes``), and the median time of a
training step. ``result.json`` is written atomically. The loop is the engine's: ``build_optimizer``,
``build_scheduler`` (``linear``), ``TrainStep`` and ``model_accuracy``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from motionformer.engine.memory import step_memory_bytes
from motionformer.engine.metrics import model_accuracy
from motionformer.engine.optim import build_optimizer, build_scheduler
from motionformer.engine.step import TrainStep
from motionformer.io import atomic_write
from motionformer.models.flops import CUSTOM_FLOP_FORMULAS
from motionformer_experiments.lra.data import TaskData, trim_padding
from motionformer_experiments.lra.model import LRAModel, parse_attention

__all__ = ["PRESETS", "Preset", "measure_cost", "preset_for", "train_lra"]


@dataclass(frozen=True)
class Preset:
    seq_len: int
    batch_size: int
    steps: int
    warmup: int
    lr: float = 1e-4
    weight_decay: float = 0.0
    dropout: float = 0.1
    test_size: int | None = None  # examples of the test split used (None: all)


PRESETS: dict[tuple[str, str], Preset] = {
    ("listops", "full"): Preset(seq_len=2000, batch_size=32, steps=5000, warmup=1000),
    ("listops", "reduced"): Preset(seq_len=250, batch_size=32, steps=800, warmup=80, test_size=1000),
    ("pathfinder", "full"): Preset(seq_len=1024, batch_size=128, steps=62_400, warmup=312),
    ("pathfinder", "reduced"): Preset(seq_len=1024, batch_size=32, steps=150, warmup=15, test_size=1000),
}


def preset_for(task: str, name: str, **changes: Any) -> Preset:
    """The preset ``name`` (reduced or full) of ``task`` with the ``changes`` that are not None."""
    if (task, name) not in PRESETS:
        raise ValueError(f"unknown preset {name!r} for {task}: expected reduced or full")
    return replace(PRESETS[task, name], **{key: value for key, value in changes.items() if value is not None})


def _build(data: TaskData, attention: str, preset: Preset) -> LRAModel:
    return LRAModel(vocab_size=data.vocab_size, num_classes=data.num_classes, max_length=preset.seq_len,
                    attention=attention, dropout=preset.dropout, padding=data.padding)


def measure_cost(model: LRAModel, seq_len: int, batch_size: int, vocab_size: int, device: torch.device
                 ) -> tuple[int, int]:
    """(multiply-adds of one sequence of ``seq_len`` real tokens, bytes of one training step at ``batch_size``)."""
    generator = torch.Generator().manual_seed(0)
    one = torch.randint(1, vocab_size, (1, seq_len), generator=generator).to(device)
    training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOP_FORMULAS) as counter:
        model(one)
    model.train(training)
    batch = torch.randint(1, vocab_size, (batch_size, seq_len), generator=generator).to(device)
    labels = torch.zeros(batch_size, dtype=torch.long, device=device)
    memory = step_memory_bytes(model, lambda: F.cross_entropy(model(batch), labels), device)
    return counter.get_total_flops() // 2, memory


def _train_steps(model: LRAModel, data: TaskData, preset: Preset, device: torch.device, seed: int, name: str,
                 progress: bool) -> tuple[list[float], list[float]]:
    """``preset.steps`` steps on batches drawn with replacement; returns (losses, seconds per step). ``progress``: a
    line on stderr every tenth of the steps, starting with ``name``."""
    optimizer = build_optimizer(model, preset.lr, preset.weight_decay)
    scheduler = build_scheduler(optimizer, total_steps=preset.steps, warmup_steps=preset.warmup, schedule="linear")
    step = TrainStep(model, optimizer, scheduler, device=device)
    train_tokens, train_labels = data.splits["train"]
    order = np.random.default_rng(seed)
    step_times, losses, begin = [], [], time.perf_counter()
    for index in range(preset.steps):
        rows = torch.from_numpy(order.integers(len(train_tokens), size=preset.batch_size))
        tokens, labels = train_tokens[rows], train_labels[rows]
        if data.padding:
            tokens = trim_padding(tokens)
        tokens, labels = tokens.to(device), labels.to(device)
        start = time.perf_counter()
        loss = F.cross_entropy(model(tokens), labels)
        step.backward(loss)
        step.step()
        losses.append(loss.item())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        step_times.append(time.perf_counter() - start)
        if not math.isfinite(losses[-1]):
            raise RuntimeError(f"{name}: the loss is {losses[-1]} at step {index}")
        if progress and (index + 1) % max(1, preset.steps // 10) == 0:
            recent = losses[-max(1, preset.steps // 10):]
            print(f"{name}: step {index + 1}/{preset.steps}, loss {sum(recent) / len(recent):.3f} "
                  f"({time.perf_counter() - begin:.0f} s)", file=sys.stderr, flush=True)
    return losses, step_times


def train_lra(data: TaskData, attention: str, preset: Preset, *, device: str = "cpu", seed: int = 0,
              out: str | os.PathLike | None = None, measure: bool = True, progress: bool = True,
              label: str = "") -> dict[str, Any]:
    """Train one attention on one task; returns (and writes to ``out/result.json``) the measurements."""
    parse_attention(attention)
    device_ = torch.device(device)
    torch.manual_seed(seed)
    model = _build(data, attention, preset).to(device_)
    macs = memory = None
    if measure:
        macs, memory = measure_cost(model, preset.seq_len, preset.batch_size, data.vocab_size, device_)
    begin = time.perf_counter()
    losses, step_times = _train_steps(model, data, preset, device_, seed, f"{label}{data.task} / {attention}",
                                      progress)
    test_tokens, test_labels = data.splits["test"]
    if preset.test_size is not None:
        test_tokens, test_labels = test_tokens[:preset.test_size], test_labels[:preset.test_size]
    accuracy = model_accuracy(model, test_tokens, test_labels, batch_size=preset.batch_size, device=device_,
                              prepare=trim_padding if model.padding else None)
    result = {
        "task": data.task, "attention": attention, "preset": asdict(preset), "seed": seed, "device": device,
        "test_accuracy": accuracy, "test_examples": len(test_tokens), "skipped_longer_than_seq_len": data.skipped,
        "majority_class_accuracy": float(test_labels.bincount().max()) / len(test_labels),
        "final_train_loss": statistics.fmean(losses[-max(1, len(losses) // 10):]),
        "macs": macs, "memory_bytes": memory, "step_seconds": statistics.median(step_times),
        "wall_seconds": time.perf_counter() - begin, "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    if out is not None:
        path = Path(out) / "result.json"
        atomic_write(path, lambda temp: Path(temp).write_text(json.dumps(result, indent=1) + "\n"))
    return result
