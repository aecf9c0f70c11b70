"""Running the motion benchmark: jobs (one arm, one seed) in worker processes, each written to ``OUT/runs/`` as it
finishes so that a rerun with the same budget resumes, then the reports."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from motionformer.io import atomic_write
from motionformer_experiments.motion.arms import ARMS, FULL, NUM_CLASSES, Arm, Budget
from motionformer_experiments.motion.charts import write_charts
from motionformer_experiments.motion.report import markdown_table, summarise
from motionformer_experiments.motion.train import train_arm

__all__ = ["run_benchmark"]

Job = tuple[Arm, int, str]  # arm, seed, fingerprint of (arm, budget)


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

def _find_jobs(runs: Path, arms: tuple[Arm, ...], budget: Budget, seeds: int
               ) -> tuple[dict[tuple[str, int], dict[str, Any]], list[Job]]:
    """(the records of finished jobs by (arm slug, seed), the jobs still to run, slowest first so that the pool does
    not end on one long job)."""
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
    pending.sort(key=lambda job: (job[0].group != "orthoformer", job[0].group, job[1]))
    return records, pending


def _run_jobs(pending: list[Job], budget: Budget, workers: int, device: str,
              finished: Callable[[int, Arm, int, str, dict[str, Any]], None]) -> None:
    """Train the jobs (``workers=1``: in this process, with its threads; else one thread per worker process), calling
    ``finished(count, arm, seed, fingerprint, result)`` as each ends."""
    if workers == 1 or len(pending) <= 1:
        for count, (arm, seed, fingerprint) in enumerate(pending, 1):
            finished(count, arm, seed, fingerprint, train_arm(arm, budget, seed, device, torch.get_num_threads()))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=context) as pool:
        futures = {pool.submit(train_arm, arm, budget, seed, device, 1): (arm, seed, fingerprint)
                   for arm, seed, fingerprint in pending}
        for count, future in enumerate(as_completed(futures), 1):
            finished(count, *futures[future], future.result())


def run_benchmark(out: str | os.PathLike, *, budget: Budget = FULL, seeds: int = 2, workers: int = 2,
                  device: str = "cpu", arms: tuple[Arm, ...] = ARMS, progress: bool = True) -> dict[str, Any]:
    """Train every arm with every seed (jobs in ``workers`` processes), write the reports into ``out``."""
    _check_arguments(budget, seeds, workers, arms)
    started = time.perf_counter()
    out = Path(out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    records, pending = _find_jobs(runs, arms, budget, seeds)
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

    _run_jobs(pending, budget, workers, device, finished)
    history = _history(out / "results.json", budget)
    if total:
        history.append({"jobs_run": total, "run_seconds": round(time.perf_counter() - started, 1),
                        "workers": workers, "device": device, "cpu_count": os.cpu_count()})
    return _write_reports(out, arms, records, budget, seeds, history, {"workers": workers, "device": device})


def _write_reports(out: Path, arms: tuple[Arm, ...], records: dict[tuple[str, int], dict[str, Any]], budget: Budget,
                   seeds: int, history: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any]:
    """``results.json`` (returned), ``results.md`` and the charts."""
    summary = summarise(arms, records, seeds)
    report = {"budget": asdict(budget), "seeds": seeds, **run, "chance": 1 / NUM_CLASSES, "torch": torch.__version__,
              "history": history, "rows": summary,
              "runs": [records[arm.slug, seed] for arm in arms for seed in range(seeds)]}
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

