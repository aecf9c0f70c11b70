"""The paper's Table 5 from our runs (``motionformer lra report``) and the costs at the ListOps setting
(``motionformer lra cost``)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from motionformer_experiments.lra.listops import VOCABULARY
from motionformer_experiments.lra.model import LRAModel
from motionformer_experiments.lra.train import measure_cost

__all__ = ["PAPER_TABLE5", "measure_costs", "read_results", "table5"]

log = logging.getLogger(__name__)

# the paper's Table 5 (accuracy %; GFLOPs and CUDA memory MB for ListOps)
PAPER_TABLE5 = {
    "exact": {"listops": 36.69, "pathfinder": 66.35, "gflops": 1.21, "memory_mb": 4579},
    "performer-256": {"listops": 36.69, "pathfinder": 66.55, "gflops": 0.49, "memory_mb": 885},
    "nystrom-128": {"listops": 36.90, "pathfinder": 52.32, "gflops": 0.62, "memory_mb": 745},
    "orthoformer-64": {"listops": 33.87, "pathfinder": 66.41, "gflops": 0.24, "memory_mb": 344},
}


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


def read_results(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """The records of ``result.json`` files, given as files or folders searched recursively."""
    results = []
    for name in paths:
        path = Path(name)
        for file in sorted(path.rglob("result.json")) if path.is_dir() else [path]:
            try:
                results.append(json.loads(file.read_text()))
            except ValueError as error:
                raise ValueError(f"{file}: not a result file ({error})") from error
    return results


def measure_costs(attentions: Sequence[str], *, seq_len: int = 2000, batch_size: int = 32, device: str = "cpu"
                  ) -> dict[str, dict[str, Any]]:
    """For each attention, the LRA Transformer's multiply-adds of one ListOps sequence of ``seq_len`` tokens and the
    memory of one training step at ``batch_size`` (``measure_cost``): attention -> record."""
    costs = {}
    for attention in attentions:
        model = LRAModel(vocab_size=len(VOCABULARY), num_classes=10, max_length=seq_len, attention=attention)
        macs, memory = measure_cost(model.to(device), seq_len, batch_size, len(VOCABULARY), torch.device(device))
        costs[attention] = {"attention": attention, "macs": macs, "memory_bytes": memory, "seq_len": seq_len,
                            "batch_size": batch_size, "device": device}
        log.info("%s: %.3f GMACs per sequence, %.0f MB per training step", attention, macs / 1e9, memory / 2**20)
    return costs
