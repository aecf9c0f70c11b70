"""Faults: a run killed with SIGKILL at any moment, or stopped with Ctrl-C, resumes to bit-identical weights."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from motionformer.engine.checkpoint import load_checkpoint

from .conftest import popen_cli, run_cli, tiny_overrides

pytestmark = pytest.mark.slow

# drop path and mixup draw from the global generators, so their restored state matters
RUN = ("train.epochs=2", "train.checkpoint_every=1", "train.test_at_end=false", "data.workers=1",
       "model.drop_path_rate=0.1", "train.mixup=0.8", "train.cutmix=1.0")


def _args(data: Path, output: Path) -> list[str]:
    return ["train", "synthetic-tiny", *tiny_overrides(data, output, *RUN)]


def _wait_for_step(process, last: Path, step: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {process.communicate()[1][-2000:]}")
        if last.exists():
            try:
                if load_checkpoint(last)["step"] >= step:
                    return
            except ValueError:
                pass  # mid-rename on some file systems; try again
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of step {step} within {timeout} s")


def _assert_same_weights(first: Path, second: Path) -> None:
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"weights differ: {different[:5]}"
    opt_a = load_checkpoint(first / "checkpoints" / "last.pt")["optimizer"]["state"]
    opt_b = load_checkpoint(second / "checkpoints" / "last.pt")["optimizer"]["state"]
    assert all(torch.equal(opt_a[k]["exp_avg_sq"], opt_b[k]["exp_avg_sq"]) for k in opt_a)


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("uninterrupted")
    done = run_cli(*_args(tiny_data, output))
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def test_sigkill_after_a_checkpoint_then_resume_is_bit_identical(uninterrupted, tiny_data, tmp_path):
    output = tmp_path / "killed"
    process = popen_cli(*_args(tiny_data, output))
    _wait_for_step(process, output / "checkpoints" / "last.pt", 3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert load_checkpoint(output / "checkpoints" / "last.pt")["step"] < 10
    resumed = run_cli(*_args(tiny_data, output))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    _assert_same_weights(uninterrupted, output)


def test_sigkill_at_a_random_moment_then_resume_is_bit_identical(uninterrupted, tiny_data, tmp_path):
    delay = random.Random().uniform(2.0, 9.0)  # import, set-up, training, validation or a checkpoint write
    output = tmp_path / "killed"
    process = popen_cli(*_args(tiny_data, output))
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = run_cli(*_args(tiny_data, output))
    assert resumed.returncode == 0, f"killed after {delay:.2f} s: {resumed.stderr[-3000:]}"
    _assert_same_weights(uninterrupted, output)


def test_ctrl_c_writes_a_checkpoint_and_exits_cleanly(uninterrupted, tiny_data, tmp_path):
    output = tmp_path / "stopped"
    process = popen_cli(*_args(tiny_data, output))
    _wait_for_step(process, output / "checkpoints" / "last.pt", 2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    resumed = run_cli(*_args(tiny_data, output))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_weights(uninterrupted, output)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_to_the_process_group_checkpoints_and_exits_130(uninterrupted, tiny_data, tmp_path, workers):
    output = tmp_path / "preempted"
    args = [*_args(tiny_data, output), f"data.workers={workers}"]
    process = popen_cli(*args, new_session=True)
    _wait_for_step(process, output / "checkpoints" / "last.pt", 2)
    os.killpg(process.pid, signal.SIGTERM)  # the main process and its workers, as SLURM and torchrun do
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    assert load_checkpoint(output / "checkpoints" / "last.pt")["step"] >= 2
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    if workers == 1:  # the uninterrupted run's loader
        _assert_same_weights(uninterrupted, output)


def test_sigterm_to_a_torchrun_group_checkpoints_and_the_rerun_resumes(tiny_data, tmp_path):
    import subprocess
    import sys

    output = tmp_path / "ddp"
    args = tiny_overrides(tiny_data, output, "train.epochs=3", "train.checkpoint_every=1", "train.test_at_end=false",
                          "train.eval_every=0", "data.batch_size=2", "train.effective_batch=4", "data.workers=1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "motionformer", "train", "synthetic-tiny", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    _wait_for_step(process, output / "checkpoints" / "last.pt", 2, timeout=300)
    os.killpg(process.pid, signal.SIGTERM)  # the launcher, both ranks and their workers
    _, stderr = process.communicate(timeout=180)
    assert process.returncode != 0  # torchrun reports a stop by signal as its own failure (with its own traceback)
    assert stderr.count("run the same command again to resume") == 2, stderr[-3000:]  # one line from each rank
    stopped_at = load_checkpoint(output / "checkpoints" / "last.pt")["step"]
    assert stopped_at >= 2
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"step {stopped_at}" in rerun.stderr and load_checkpoint(output / "checkpoints" / "last.pt")["step"] == 15
