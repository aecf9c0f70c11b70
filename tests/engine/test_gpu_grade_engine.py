"""The trainer around the GPU-grade step, on the CPU: ``train.compile``, step statuses read one step late, gathering
unequal shards to the main process, and resuming when only the main process can see the checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from motionformer.data.datasets.annotations import read_annotations
from motionformer.data.loader import build_loader
from motionformer.engine import distributed
from motionformer.engine import train as train_module
from motionformer.engine.build import annotation_path, build_model, build_split, input_spec
from motionformer.engine.checkpoint import load_checkpoint
from motionformer.engine.config import load_config
from motionformer.engine.evaluate import evaluate
from motionformer.engine.train import NonFiniteLossError, Trainer, train

from .conftest import tiny_overrides

SHORT = ("train.eval_every=0", "train.test_at_end=false")


def _config(data: Path, output: Path, *extra: str):
    return load_config("synthetic-tiny", tiny_overrides(data, output, *SHORT, *extra))


def _train_records(output: Path) -> list[dict[str, Any]]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["kind"] == "train"]


# ---------------------------------------------------------------------- train.compile


def test_a_compiled_run_logs_the_eager_losses_and_checkpoints(tiny_data, tmp_path):
    # about 50 s on 2 cores with a cold inductor cache, 15 s with a warm one
    runs = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        output = tmp_path / f"compile-{compiled}"
        train(_config(tiny_data, output, "train.epochs=1", "train.max_steps=3", f"train.compile={compiled}"))
        runs[compiled] = output
        assert bool(torch._dynamo.utils.counters["frames"]["ok"]) == compiled  # dynamo compiled the model's frames
        assert not torch._dynamo.utils.counters["graph_break"]  # no graph break anywhere in the model
    eager, compiled = _train_records(runs[False]), _train_records(runs[True])
    assert [r["step"] for r in eager] == [r["step"] for r in compiled] == [1, 2, 3]
    # inductor fuses and reorders float32 reductions: a few ulp per operation, 1e-5 (~100 ulp) after three steps
    assert [r["loss"] for r in compiled] == pytest.approx([r["loss"] for r in eager], rel=1e-5)
    for output in runs.values():
        last = load_checkpoint(output / "checkpoints" / "last.pt")
        assert last["step"] == 3 and all(torch.isfinite(v).all() for v in last["model"].values())
    eager_keys = load_checkpoint(runs[False] / "checkpoints" / "last.pt")["model"].keys()
    assert load_checkpoint(runs[True] / "checkpoints" / "last.pt")["model"].keys() == eager_keys  # no _orig_mod.
    assert (runs[True] / "model.safetensors").exists()


# ---------------------------------------------------------------------- statuses read one step late


def test_logged_losses_are_the_step_losses_in_order(tiny_data, tmp_path):
    every_step = _train_records(_logged_run(tiny_data, tmp_path, 1))
    assert [r["step"] for r in every_step] == [1, 2, 3, 4, 5]
    losses = [r["loss"] for r in every_step]
    assert len(set(losses)) == 5  # distinct: a loss put on the wrong step shows
    # the runs do the same float32 arithmetic: their step losses are identical, and the logged means are float64
    for log_every, expected in ((2, {2: losses[0:2], 4: losses[2:4]}), (4, {4: losses[0:4]})):
        records = _train_records(_logged_run(tiny_data, tmp_path, log_every))
        assert [r["step"] for r in records] == list(expected)
        means = [sum(values) / len(values) for values in expected.values()]
        assert [r["loss"] for r in records] == pytest.approx(means, rel=1e-12, abs=0)


def _logged_run(data: Path, folder: Path, log_every: int) -> Path:
    """One epoch (5 steps) logging every ``log_every`` steps; the default checkpoint_minutes leaves the statuses of
    the steps that neither log nor end the epoch to be read one step late."""
    output = folder / f"log-every-{log_every}"
    train(_config(data, output, "train.epochs=1", f"train.log_every={log_every}"))
    return output


# steps numbered from 0, as the error names them; kept_step: the steps done when the kept last.pt was written
@pytest.mark.parametrize(("settings", "nan_step", "forwards", "kept_step"), [
    # step 5 (the first of epoch 2) is poisoned; its status is read while step 6 runs; last.pt is the epoch end's
    (("train.epochs=2", "train.log_every=100", "train.checkpoint_every=4"), 5, 7, 5),
    # a checkpoint due by time at every step, learnt from statuses read one step late, so saves follow steps 1
    # and 3: step 2's status asks for the save that would hold step 3's weights, and step 3's is read before it
    (("train.epochs=1", "train.log_every=100", "train.checkpoint_minutes=1e-6"), 3, 4, 2),
])
def test_a_non_finite_loss_read_late_names_its_step_and_keeps_the_checkpoint_before_it(
        tiny_data, tmp_path, monkeypatch, settings, nan_step, forwards, kept_step):
    calls = {"n": 0}
    real = train_module.compute_loss

    def poisoned(logits, targets):
        calls["n"] += 1
        loss = real(logits, targets)
        return loss * float("nan") if calls["n"] == nan_step + 1 else loss  # step indices count from 0

    monkeypatch.setattr(train_module, "compute_loss", poisoned)
    output = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=rf"the loss became nan at epoch \d, step {nan_step};"):
        train(_config(tiny_data, output, *settings))
    assert calls["n"] == forwards  # read while the next step ran (or, before a checkpoint, at once)
    kept = load_checkpoint(output / "checkpoints" / "last.pt")
    assert kept["step"] == kept_step <= nan_step  # written before the poisoned step ran
    assert all(torch.isfinite(v).all() for v in kept["model"].values())


# ---------------------------------------------------------------------- two gloo processes


def _spawn(worker, *args: Any, timeout: float = 300.0) -> None:
    """Run ``worker(rank, *args)`` in 2 spawned processes; fails on an error in either or after ``timeout`` s."""
    context = mp.start_processes(worker, args=args, nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=5.0):
            if time.monotonic() > deadline:
                raise AssertionError(f"the 2 processes did not finish within {timeout} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


def _join(rank: int, store: Path) -> None:
    """This spawned process as ``rank`` of a 2-process gloo group, as torchrun would describe it."""
    torch.set_num_threads(1)
    for name, value in (("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", 2)):
        os.environ[name] = str(value)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)


# rank 0's piece is the shorter; rank 1 also sends an empty piece (an evaluation share with no items)
PIECES = {
    "float": (torch.arange(6.0).reshape(3, 2), torch.arange(10.0, 20.0).reshape(5, 2)),
    "long": (torch.tensor([7, 8], dtype=torch.long), torch.tensor([-1, 2, 3, 4], dtype=torch.long)),
    "bool": (torch.tensor([True]), torch.tensor([False, True, True])),
    "empty": (torch.ones(2, 3, 4), torch.zeros(0, 3, 4)),
}


def _gather_worker(rank: int, data: Path, folder: Path) -> None:
    _join(rank, folder / "store")
    result = {"gathered": {key: distributed.gather_to_main(pieces[rank]) for key, pieces in PIECES.items()}}
    config = _config(data, folder / "unused")
    class_names = read_annotations(annotation_path(config, "train"), config.data.root).class_names
    torch.manual_seed(0)
    model = build_model(config, class_names)
    spec = input_spec(config, model, class_names)
    views = build_split(config, "val", spec, training=False, num_clips=2)  # 10 videos x 2 clips
    # unequal shards: rank 0 a quarter of the views (5), rank 1 every view (20), each one's repeats counted once
    share = build_loader(views, 3, training=False, num_replicas=4 if rank == 0 else 1, rank=0)
    context = distributed.DistributedContext(rank, 2, rank, torch.device("cpu"))
    result["shard"] = len(share.sampler)
    result["metrics"] = evaluate(model, share, context)[0]
    dist.destroy_process_group()
    if rank == 0:  # the same views in one process
        alone = distributed.DistributedContext(0, 1, 0, torch.device("cpu"))
        result["alone"] = evaluate(model, build_loader(views, 3, training=False), alone)[0]
    torch.save(result, folder / f"gather-{rank}.pt")


@pytest.mark.slow  # two spawned processes: about 10 s on 2 cores
def test_gather_to_main_returns_every_length_on_rank_0_and_evaluation_counts_unequal_shards(tiny_data, tmp_path):
    _spawn(_gather_worker, tiny_data, tmp_path)
    main, other = (torch.load(tmp_path / f"gather-{rank}.pt") for rank in (0, 1))
    for key, pieces in PIECES.items():
        got = main["gathered"][key]
        assert len(got) == 2, key
        assert all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(got, pieces, strict=True)), key
        assert other["gathered"][key] is None
    assert (main["shard"], other["shard"]) == (5, 20)
    assert main["metrics"] == other["metrics"]  # sent to every process
    assert main["metrics"]["videos"] == 10 and main["metrics"]["videos_missing"] == 0
    assert main["metrics"] == pytest.approx(main["alone"], abs=1e-9)


# resumed runs: 20 training clips / (2 processes x 4) = 2 steps an epoch
RESUMED = ("train.checkpoint_minutes=0", "train.lr=0.001")


def _resume_worker(rank: int, data: Path, folder: Path) -> None:
    """Train one epoch, then resume for a second, each process with its own output folder (no shared storage);
    records what each process holds after the resume set-up and at the end."""
    output = folder / f"rank-{rank}"
    _join(rank, folder / "store-first")
    train(_config(data, output, *RESUMED, "train.epochs=1"))
    if rank == 0:
        shutil.copy(output / "checkpoints" / "last.pt", folder / "first.pt")
    _join(rank, folder / "store-resumed")
    setup, finish = Trainer._setup, Trainer._finish

    def record(trainer: Trainer, name: str) -> None:
        step = trainer.train_step
        state = {"model": trainer.model.state_dict(), "optimizer": step.optimizer.state_dict(),
                 "scheduler": step.scheduler.state_dict(), "position": dataclasses.astuple(trainer.position),
                 "sees_checkpoint": (output / "checkpoints" / "last.pt").exists()}
        torch.save(state, folder / f"{name}-{rank}.pt")

    def recorded_setup(trainer: Trainer) -> None:
        setup(trainer)
        record(trainer, "resumed")

    def recorded_finish(trainer: Trainer, seconds: float) -> dict[str, Any]:
        record(trainer, "final")
        return finish(trainer, seconds)

    Trainer._setup, Trainer._finish = recorded_setup, recorded_finish
    train(_config(data, output, *RESUMED, "train.epochs=2"))


def _assert_same_optimizer(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert first["state"].keys() == second["state"].keys()
    for index, state in first["state"].items():
        for name, value in state.items():
            assert torch.equal(value, second["state"][index][name]), (index, name)


@pytest.mark.slow  # two spawned processes training twice: about 10 s on 2 cores
def test_a_resume_seen_only_by_rank_0_leaves_both_ranks_identical(tiny_data, tmp_path):
    _spawn(_resume_worker, tiny_data, tmp_path)
    first = load_checkpoint(tmp_path / "first.pt")
    resumed = [torch.load(tmp_path / f"resumed-{rank}.pt") for rank in (0, 1)]
    assert [state["sees_checkpoint"] for state in resumed] == [True, False]
    assert not (tmp_path / "rank-1" / "checkpoints").exists()
    assert first["step"] == 2
    for state in resumed:
        assert state["position"] == (first["epoch"], first["batch"], first["step"]) == (1, 0, 2)
        assert state["model"].keys() == first["model"].keys()
        assert all(torch.equal(value, first["model"][name]) for name, value in state["model"].items())
        _assert_same_optimizer(state["optimizer"], first["optimizer"])
        assert state["scheduler"]["last_epoch"] == first["scheduler"]["last_epoch"]
    final = [torch.load(tmp_path / f"final-{rank}.pt") for rank in (0, 1)]
    assert final[0]["position"] == final[1]["position"] == (2, 0, 4)
    different = [name for name, value in final[0]["model"].items() if not torch.equal(value, final[1]["model"][name])]
    assert not different, f"the ranks' weights differ after resuming: {different[:5]}"
    _assert_same_optimizer(final[0]["optimizer"], final[1]["optimizer"])
    last = load_checkpoint(tmp_path / "rank-0" / "checkpoints" / "last.pt")
    assert all(torch.equal(value, last["model"][name]) for name, value in final[0]["model"].items())
