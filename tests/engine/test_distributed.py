"""A 2-process DDP run on the CPU (gloo) through torchrun, as a user would launch it."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from motionformer.engine.checkpoint import load_checkpoint

from .conftest import tiny_overrides

pytestmark = pytest.mark.slow


def test_two_process_gloo_run_trains_tests_and_writes_once(tiny_data, tmp_path):
    output = tmp_path / "ddp"
    # 9 test videos x 1 clip: the two shards are padded to 5 items each, and the repeat must count once
    lines = (tiny_data / "val.csv").read_text().splitlines()[:9]
    (tmp_path / "test.csv").write_text("".join(f"{tiny_data / line.split()[0]} {line.split()[1]}\n" for line in lines))
    shutil.copy(tiny_data / "classes.txt", tmp_path / "classes.txt")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "motionformer", "train", "synthetic-tiny",
               *tiny_overrides(tiny_data, output, "data.batch_size=2", "train.effective_batch=8",
                              f"data.test={tmp_path / 'test.csv'}", "eval.num_clips=1", "train.checkpoint_minutes=0")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    assert "effective batch 8 = 2 processes x 2 clips x 2 accumulated" in done.stderr
    last = load_checkpoint(output / "checkpoints" / "last.pt")
    assert len(last["rng"]) == 2  # every process's generators
    assert (last["epoch"], last["step"]) == (2, 4)  # 20 clips / 8 per step = 2 steps per epoch
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records].count("epoch") == 2  # written by one process only
    with open(output / "predictions.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 9 and len({row["video"] for row in rows}) == 9  # every test video once, both shards
    metrics = json.loads((output / "test_metrics.json").read_text())
    assert metrics["videos"] == 9 and metrics["videos_missing"] == 0
