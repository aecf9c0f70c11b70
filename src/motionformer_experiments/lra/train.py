"""Train and measure the LRA Transformer on ListOps or Pathfinder (``motionformer lra train``).

Presets. ``full``: the setup for a GPU, ListOps at 2000 tokens (batch 32, 5,000 steps, 1,000 warm-up steps) and
Pathfinder-32 at 1,024 pixels (batch 128, 62,400 steps, 312 warm-up steps). ``reduced``: what 2 CPU cores finish in
minutes, fewer steps and, for ListOps, shorter expressions (a set generated with 50 < length < 250, read at up to 250
tokens); Pathfinder keeps its 1,024 pixels, with few steps. Both use AdamW at 1e-4 without weight decay, linear
warm-up then linear decay to 0, dropout 0.1. Accuracy is measured once, after the last step, on the test split.

Measured per run: test accuracy, multiply-adds of one sequence at the preset's length (PyTorch's FLOP counter / 2),
the memory of one training step at the preset's batch and length (on CUDA ``max_memory_allocated``; on CPU
``training_memory_bytes``), and the median time of a training step. ``result.json`` is written atomically.
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
from torch import Tensor
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from motionformer.analysis.memory import training_memory_bytes
from motionformer.io import atomic_write
from motionformer.lra.listops import VOCABULARY, read_listops
from motionformer.lra.model import LRAModel, parse_attention
from motionformer.models.flops import CUSTOM_FLOP_FORMULAS

__all__ = ["PAPER_TABLE5", "PRESETS", "Preset", "TaskData", "load_task", "measure_cost", "preset_for", "table5",
           "train_lra"]

TASKS = ("listops", "pathfinder")

# the paper's Table 5 (accuracy %; GFLOPs and CUDA memory MB for ListOps)
PAPER_TABLE5 = {
    "exact": {"listops": 36.69, "pathfinder": 66.35, "gflops": 1.21, "memory_mb": 4579},
    "performer-256": {"listops": 36.69, "pathfinder": 66.55, "gflops": 0.49, "memory_mb": 885},
    "nystrom-128": {"listops": 36.90, "pathfinder": 52.32, "gflops": 0.62, "memory_mb": 745},
    "orthoformer-64": {"listops": 33.87, "pathfinder": 66.41, "gflops": 0.24, "memory_mb": 344},
}


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
REDUCED_LISTOPS_LENGTHS = (50, 250)  # what `motionformer lra generate listops --reduced` writes


@dataclass
class TaskData:
    """Token ids (N, L) (0 = padding for ListOps) and labels (N,) per split."""

    task: str
    splits: dict[str, tuple[Tensor, Tensor]]
    vocab_size: int
    num_classes: int
    padding: bool
    skipped: dict[str, int]  # ListOps examples longer than the sequence length, per split


def _pad(sequences: list[list[int]], length: int) -> Tensor:
    out = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        out[row, :len(sequence)] = torch.as_tensor(sequence)
    return out


def _listops(root: Path, seq_len: int) -> TaskData:
    splits, skipped = {}, {}
    for split in ("train", "val", "test"):
        path = root / f"basic_{split}.tsv"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: write the data with 'motionformer lra generate listops {root}' "
                                    f"(with --reduced for the reduced preset)")
        sequences, targets = read_listops(path)
        keep = [i for i, sequence in enumerate(sequences) if len(sequence) <= seq_len]
        skipped[split] = len(sequences) - len(keep)
        if not keep:
            raise ValueError(f"{path}: no expression fits in --seq-len {seq_len} (the shortest has "
                             f"{min(map(len, sequences))} tokens)")
        splits[split] = (_pad([sequences[i] for i in keep], seq_len), torch.as_tensor([targets[i] for i in keep]))
    return TaskData("listops", splits, len(VOCABULARY), 10, True, skipped)


def _pathfinder(root: Path, seq_len: int) -> TaskData:
    from PIL import Image

    splits = {}
    for split in ("train", "val", "test"):
        path = root / f"{split}.txt"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: write the data with "
                                    f"'motionformer lra generate pathfinder {root}'")
        pixels, labels = [], []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if len(fields) != 2 or fields[1] not in ("0", "1"):
                raise ValueError(f"{path}:{number}: expected 'image.png 0|1', got {line[:80]!r}")
            try:
                with Image.open(root / fields[0]) as image:
                    array = np.asarray(image.convert("L"))
            except OSError as error:
                raise ValueError(f"{path}:{number}: cannot read {root / fields[0]}: {error}") from error
            if array.size != seq_len:
                raise ValueError(f"{root / fields[0]}: {array.shape[0]}x{array.shape[1]} pixels, but --seq-len is "
                                 f"{seq_len}")
            pixels.append(array.reshape(-1))
            labels.append(int(fields[1]))
        splits[split] = (torch.from_numpy(np.stack(pixels).astype(np.int64)), torch.as_tensor(labels))
    return TaskData("pathfinder", splits, 256, 2, False, {})


def load_task(task: str, root: str | os.PathLike, seq_len: int) -> TaskData:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    return (_listops if task == "listops" else _pathfinder)(Path(root), seq_len)


def _build(data: TaskData, attention: str, preset: Preset) -> LRAModel:
    return LRAModel(vocab_size=data.vocab_size, num_classes=data.num_classes, max_length=preset.seq_len,
                    attention=attention, dropout=preset.dropout, padding=data.padding)


def _lr_factor(step: int, preset: Preset) -> float:
    if step < preset.warmup:
        return (step + 1) / preset.warmup
    return max(0.0, (preset.steps - step) / max(preset.steps - preset.warmup, 1))


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
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        F.cross_entropy(model(batch), labels).backward()
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        memory = torch.cuda.max_memory_allocated(device)
    else:
        memory = training_memory_bytes(model, lambda: F.cross_entropy(model(batch), labels))
    return counter.get_total_flops() // 2, memory


@torch.no_grad()
def _accuracy(model: LRAModel, tokens: Tensor, labels: Tensor, device: torch.device, batch_size: int) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start:start + batch_size]
        if model.padding:  # trim the batch to its longest sequence
            chunk = chunk[:, :int((chunk != 0).sum(1).max())]
        logits = model(chunk.to(device))
        correct += (logits.argmax(-1).cpu() == labels[start:start + batch_size]).sum().item()
    model.train()
    return correct / len(tokens)


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
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    train_tokens, train_labels = data.splits["train"]
    order = np.random.default_rng(seed)
    step_times, losses, begin = [], [], time.perf_counter()
    for step in range(preset.steps):
        index = torch.from_numpy(order.integers(len(train_tokens), size=preset.batch_size))
        tokens, labels = train_tokens[index], train_labels[index]
        if data.padding:
            tokens = tokens[:, :int((tokens != 0).sum(1).max())]
        tokens, labels = tokens.to(device_), labels.to(device_)
        for group in optimizer.param_groups:
            group["lr"] = preset.lr * _lr_factor(step, preset)
        start = time.perf_counter()
        loss = F.cross_entropy(model(tokens), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if device_.type == "cuda":
            torch.cuda.synchronize(device_)
        step_times.append(time.perf_counter() - start)
        if not math.isfinite(losses[-1]):
            raise RuntimeError(f"{data.task} / {attention}: the loss is {losses[-1]} at step {step}")
        if progress and (step + 1) % max(1, preset.steps // 10) == 0:
            recent = losses[-max(1, preset.steps // 10):]
            print(f"{label}{data.task} / {attention}: step {step + 1}/{preset.steps}, loss "
                  f"{sum(recent) / len(recent):.3f} ({time.perf_counter() - begin:.0f} s)", file=sys.stderr, flush=True)
    test_tokens, test_labels = data.splits["test"]
    if preset.test_size is not None:
        test_tokens, test_labels = test_tokens[:preset.test_size], test_labels[:preset.test_size]
    result = {
        "task": data.task, "attention": attention, "preset": asdict(preset), "seed": seed, "device": device,
        "test_accuracy": _accuracy(model, test_tokens, test_labels, device_, preset.batch_size),
        "test_examples": len(test_tokens), "skipped_longer_than_seq_len": data.skipped,
        "majority_class_accuracy": float(test_labels.bincount().max()) / len(test_labels),
        "final_train_loss": statistics.fmean(losses[-max(1, len(losses) // 10):]),
        "macs": macs, "memory_bytes": memory, "step_seconds": statistics.median(step_times),
        "wall_seconds": time.perf_counter() - begin, "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    if out is not None:
        path = Path(out) / "result.json"
        atomic_write(path, lambda temp: Path(temp).write_text(json.dumps(result, indent=1) + "\n"))
    return result


def _cell(run: dict[str, Any] | None, key: str, scale: float, spec: str) -> str:
    return format(run[key] / scale, spec) if run and run.get(key) is not None else "-"


def table5(results: list[dict[str, Any]], costs: dict[str, dict[str, Any]] | None = None) -> str:
    """The paper's Table 5 layout: test accuracy per task (ours next to the paper's); multiply-adds and training
    memory of the ListOps setting (``costs``: attention -> ``measure_cost`` record, else the ListOps runs' own)."""
    by = {(r["attention"], r["task"]): r for r in results}
    attentions = list(dict.fromkeys([*(r["attention"] for r in results), *(costs or {})]))
    lines = ["| attention | ListOps | paper | Pathfinder | paper | ListOps GMACs | paper GFLOPs | ListOps memory MB | "
             "paper MB | ms/step ListOps | ms/step Pathfinder |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for attention in attentions:
        paper = PAPER_TABLE5.get(attention, {})
        listops, pathfinder = by.get((attention, "listops")), by.get((attention, "pathfinder"))
        cost = (costs or {}).get(attention, listops)
        cells = [_cell(listops, "test_accuracy", 0.01, ".1f"), _cell(paper, "listops", 1, ".2f"),
                 _cell(pathfinder, "test_accuracy", 0.01, ".1f"), _cell(paper, "pathfinder", 1, ".2f"),
                 _cell(cost, "macs", 1e9, ".3f"), _cell(paper, "gflops", 1, ".2f"),
                 _cell(cost, "memory_bytes", 2**20, ".0f"), _cell(paper, "memory_mb", 1, ".0f"),
                 _cell(listops, "step_seconds", 1e-3, ".0f"), _cell(pathfinder, "step_seconds", 1e-3, ".0f")]
        lines.append(f"| {attention} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def preset_for(task: str, name: str, **changes: Any) -> Preset:
    if (task, name) not in PRESETS:
        raise ValueError(f"unknown preset {name!r} for {task}: expected reduced or full")
    return replace(PRESETS[task, name], **{key: value for key, value in changes.items() if value is not None})
