"""A tiny synthetic dataset and config shared by the engine tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from motionformer.data.synthetic import generate

# a 2-block, 32-wide trajectory model on 32-pixel, 4-frame clips: a training step takes milliseconds
TINY_MODEL = "{img_size: 32, patch_size: 8, num_frames: 4, embed_dim: 32, depth: 2, num_heads: 2}"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """30 synthetic videos (20 train, 10 val) of 32x32 pixels and 8 frames, with train.csv, val.csv, classes.txt."""
    root = tmp_path_factory.mktemp("tiny-data")
    generate(root, num_videos=30, size=32, frames=8, seed=0, workers=1)
    return root


def tiny_overrides(data: Path, output: Path, *extra: str) -> list[str]:
    """Overrides of the synthetic-tiny preset for a run of seconds on ``tiny_data``."""
    return [
        f"data.root={data}", f"output_dir={output}", f"model.options={TINY_MODEL}",
        "data.sampling_rate=2", "data.scale_range=[32, 36]", "data.batch_size=4", "data.workers=0",
        "train.epochs=2", "train.warmup_epochs=0", "train.log_every=1", "eval.num_clips=2", "eval.num_crops=1",
        *extra,
    ]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m motionformer ARGS`` in a subprocess with 1 torch thread; output captured."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "motionformer", *args], capture_output=True, text=True,
                          env=environment, timeout=timeout)


def popen_cli(*args: str, new_session: bool = False) -> subprocess.Popen:
    """``python -m motionformer ARGS`` started in the background; ``new_session`` makes it the leader of its own
    process group (so a signal can go to it and its data-loading workers at once, as SLURM sends it)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "motionformer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment, start_new_session=new_session)
