"""Training checkpoints: everything needed to continue a run exactly, written so a crash never damages them.

A checkpoint is a ``torch.save`` dict: ``model``, ``optimizer``, ``scheduler``, ``scaler`` (state dicts),
``epoch`` and ``batch`` (the data order's position: the next micro-batch of that epoch), ``step`` (optimizer
steps done), ``rng`` (Python, NumPy, torch CPU and CUDA generator states), ``best`` (the best validation top-1
so far), ``config`` (the resolved config as a dict), ``class_names`` and ``format``. Files are written through
a temporary file in the same folder (flushed, fsynced, renamed over the old one), so an interrupted or failed
write (a kill, a full disk) leaves the previous checkpoint as it was.

Layout of ``output_dir/checkpoints/``: ``last.pt`` (the latest), ``best.pt`` (the best validation top-1),
``epoch-NNNN.pt`` (the last ``keep_last`` epoch ends).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motionformer.io import atomic_write, reading

log = logging.getLogger(__name__)

FORMAT = "motionformer-train/1"
_EPOCH_FILE = re.compile(r"epoch-(\d+)\.pt")


def capture_rng() -> dict[str, Any]:
    """The state of every random generator this process draws from (plain tensors and ints only)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put every generator back as ``capture_rng`` found it."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["numpy"]
    np.random.set_state((saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["position"],
                         saved["has_gauss"], saved["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            log.warning("the checkpoint has %d CUDA generator states for %d devices: CUDA generators not restored",
                        len(cuda_states), torch.cuda.device_count())


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` (see the module docstring) atomically to ``path``."""
    path = Path(path)
    record = {"format": FORMAT, **state}
    atomic_write(path, lambda temp: torch.save(record, temp))
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint as saved; ValueError naming the file when it is not one."""
    path = Path(path)
    with reading(path, "a training checkpoint (.pt)"):
        record = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{path}: not a motionformer training checkpoint (format {found!r}, expected {FORMAT!r})")
    return record


def is_training_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` looks like one of this module's files (by its suffix; ``load_checkpoint`` checks)."""
    return Path(path).suffix == ".pt"


def prune_epoch_checkpoints(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` ``epoch-NNNN.pt`` files; returns the deleted paths."""
    found = sorted((int(m.group(1)), p) for p in folder.glob("epoch-*.pt") if (m := _EPOCH_FILE.fullmatch(p.name)))
    doomed = [path for _, path in found[:max(len(found) - keep, 0)]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed
