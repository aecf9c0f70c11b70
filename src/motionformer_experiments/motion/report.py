"""The motion benchmark's reading of its jobs: a row per arm (mean and spread over seeds), and the markdown table."""

from __future__ import annotations

import math
import statistics
from typing import Any

from motionformer_experiments.motion.arms import NUM_CLASSES, Arm, Budget

__all__ = ["PLATEAU_MARGIN", "left_plateau", "markdown_table", "summarise"]

# A job has left the initial plateau (loss ln 10, uniform predictions) when its mean training loss over the last tenth
# of the steps is at least this far below ln 10.
PLATEAU_MARGIN = 0.1


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

