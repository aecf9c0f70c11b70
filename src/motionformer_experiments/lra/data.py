"""The ListOps and Pathfinder-32 splits as tensors, and writing them (``motionformer lra generate``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from motionformer_experiments.lra.listops import VOCABULARY, ListOpsSettings, generate_listops, read_listops
from motionformer_experiments.lra.pathfinder import PathfinderSettings, generate_pathfinder

__all__ = ["REDUCED_LISTOPS_LENGTHS", "TASKS", "TaskData", "generate_task", "load_task", "trim_padding"]

TASKS = ("listops", "pathfinder")
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


def trim_padding(tokens: Tensor) -> Tensor:
    """A padded batch (B, L) (0 = padding) cut to its longest sequence."""
    return tokens[:, :int((tokens != 0).sum(1).max())]


def generate_task(task: str, folder: str | os.PathLike, *, size: int | None = None, seed: int = 0,
                  workers: int | None = None, reduced: bool = False, difficulty: str = "hard") -> dict[str, Any]:
    """Write ``task``'s splits into ``folder`` (default sizes 100,000 / 200,000); ``reduced``: ListOps expressions of
    the reduced preset's lengths; ``difficulty``: Pathfinder's preset. Returns the generator's summary."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if task == "listops":
        settings = ListOpsSettings()
        if reduced:
            settings = ListOpsSettings(min_length=REDUCED_LISTOPS_LENGTHS[0], max_length=REDUCED_LISTOPS_LENGTHS[1])
        return generate_listops(folder, size=size or 100_000, seed=seed, settings=settings, workers=workers)
    return generate_pathfinder(folder, size=size or 200_000, seed=seed,
                               settings=PathfinderSettings.preset(difficulty), workers=workers)
