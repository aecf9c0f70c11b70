"""``motionformer bench motion``: clips, memory, determinism, the reports, resuming, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from motionformer.cli import main
from motionformer.data.synthetic import render_clip
from motionformer_experiments import motion as bench
from motionformer_experiments.motion import Arm, Budget, jobs
from motionformer_experiments.motion.arms import build_model, render_batch
from motionformer_experiments.motion.report import PLATEAU_MARGIN
from motionformer_experiments.motion.train import training_memory

TINY = Budget(steps=2, batch_size=4, val_clips=10, width=16, depth=1, heads=2, num_frames=4, tubelet=2)
ARMS = (
    Arm("attention", "joint", {"attention": "joint"}, size=16, patch=4),
    Arm("attention", "single frame", single_frame=True, size=16, patch=4),
    Arm("stride", "joint s4", {"attention": "joint"}, stride=4, size=16, patch=4),
    Arm("orthoformer", "orthoformer 4", {"approx": "orthoformer", "num_prototypes": 4}, size=16, patch=2),
)


def test_clips_take_every_stride_th_frame_or_one_frame():
    labels, seeds = np.array([0, 7]), np.array([11, 12])
    video = render_batch(Arm("g", "a", stride=3, size=16), TINY, labels, seeds, np.random.default_rng(0))
    assert video.shape == (2, 3, 4, 16, 16) and video.min() >= -1 and video.max() <= 1
    frames = render_clip(7, num_frames=12, size=16, rng=12, plain=True, background_level=TINY.background_level)
    expected = torch.from_numpy(frames[::3]).permute(3, 0, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(video[1], expected)
    single = render_batch(Arm("g", "a", size=16, single_frame=True), TINY, labels, seeds, np.random.default_rng(0))
    assert single.shape == (2, 3, 1, 16, 16)
    whole = render_batch(Arm("g", "a", stride=1, size=16), Budget(num_frames=8), labels, seeds, None)
    assert any(torch.equal(single[0, :, 0], whole[0, :, t]) for t in range(8))  # one of the clip's 8 frames


def test_panning_arms_render_a_moving_background():
    labels, seeds = np.array([0]), np.array([5])
    still = render_batch(Arm("g", "a", size=16), TINY, labels, seeds, None)
    panned = render_batch(Arm("g", "a", size=16, pan=True), TINY, labels, seeds, None)
    assert not torch.equal(still, panned)


def test_training_memory_grows_with_the_batch_and_leaves_no_gradients():
    model = build_model(ARMS[0], TINY)
    sizes = []
    for batch in (2, 8):
        video = torch.randn(batch, 3, 4, 16, 16)
        sizes.append(training_memory(model, video, torch.zeros(batch, dtype=torch.long)))
        assert all(p.grad is None for p in model.parameters())
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert weights < sizes[0] < sizes[1]


def test_an_arm_is_deterministic_for_its_seed():
    first, second = (bench.train_arm(ARMS[0], TINY, seed=3, threads=1) for _ in range(2))
    assert first["top1"] == second["top1"] and first["final_train_loss"] == second["final_train_loss"]
    other = bench.train_arm(ARMS[0], TINY, seed=4, threads=1)
    assert other["final_train_loss"] != first["final_train_loss"]
    assert first["params"] > 0 and first["macs"] > 0 and first["step_seconds"] > 0


def test_run_writes_reports_and_resumes(tmp_path, monkeypatch):
    report = bench.run_benchmark(tmp_path, budget=TINY, seeds=2, workers=1, arms=ARMS, progress=False)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(
        f"{arm.slug}-seed{seed}.json" for arm in ARMS for seed in (0, 1))
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) == {arm.name for arm in ARMS}
    for row in rows.values():
        runs = row["top1_runs"]
        assert len(runs) == 2 and row["top1_mean"] == pytest.approx(sum(runs) / 2)
        assert row["top1_std"] == pytest.approx(abs(runs[0] - runs[1]) / 2 ** 0.5)
    assert rows["single frame"]["macs"] < rows["joint"]["macs"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == report["rows"] and len(saved["runs"]) == 8
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {arm.group} | {arm.name} |" in table for arm in ARMS)
    assert "min for 8 jobs, in 1 invocation(s)." in table
    assert len(saved["history"]) == 1 and saved["history"][0]["jobs_run"] == 8
    curve = saved["runs"][0]["loss_curve"]
    assert curve["steps"] == [1, 2] and len(curve["mean_loss"]) == 2  # one point per step when steps < 20
    for name in ("attention.png", "stride.png", "orthoformer.png", "loss.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.width > 100

    # a rerun trains nothing; a job cut short (unreadable record) or of another budget runs again
    def refuse(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(jobs, "train_arm", refuse)
    assert bench.run_benchmark(tmp_path, budget=TINY, seeds=2, workers=1, arms=ARMS, progress=False)["rows"] == \
        report["rows"]
    (tmp_path / "runs" / f"{ARMS[0].slug}-seed1.json").write_text('{"top1": 0.')
    calls = []
    monkeypatch.setattr(jobs, "train_arm", lambda arm, budget, seed, *rest: calls.append((arm.name, seed)) or
                        {**report["runs"][1], "seed": seed})
    bench.run_benchmark(tmp_path, budget=TINY, seeds=2, workers=1, arms=ARMS, progress=False)
    assert calls == [("joint", 1)]
    history = json.loads((tmp_path / "results.json").read_text())["history"]
    assert [entry["jobs_run"] for entry in history] == [8, 1]  # the resumed invocation adds its own time
    assert "for 9 jobs, in 2 invocation(s)." in (tmp_path / "results.md").read_text()
    calls.clear()
    bench.run_benchmark(tmp_path, budget=Budget(**{**TINY.__dict__, "steps": 3}), seeds=1, workers=1, arms=ARMS[:1],
                        progress=False)
    assert calls == [("joint", 0)]


def test_the_packaged_arms_cover_the_issue():
    names = {(arm.group, arm.name) for arm in bench.ARMS}
    assert {("attention", n) for n in ("joint", "divided", "trajectory", "trajectory Avg_T", "trajectory Norm_ST",
                                        "single frame")} <= names
    ortho = [arm for arm in bench.ARMS if arm.group == "orthoformer"]
    tokens = {(arm.size // arm.patch) ** 2 for arm in ortho}
    prototypes = [arm.model.get("num_prototypes", 128) for arm in ortho if arm.model.get("approx") == "orthoformer"]
    assert tokens == {144} and max(prototypes) < 144  # every approximation really approximates
    assert len({arm.slug for arm in bench.ARMS}) == len(bench.ARMS)
    for arm in bench.ARMS:  # every arm builds
        build_model(arm, bench.FULL)


def test_cli_errors_exit_with_status_2(tmp_path, capsys):
    assert main(["bench", "motion", "--groups", "attention,nope", "--out", str(tmp_path)]) == 2
    assert "unknown group(s) 'nope'" in capsys.readouterr().err
    assert main(["bench", "motion", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    assert main(["bench", "motion", "--background-level", "0", "--out", str(tmp_path)]) == 2
    assert "leave out the group(s) 'camera pan'" in capsys.readouterr().err
    assert main(["bench", "motion", "--background-level", "1.2", "--out", str(tmp_path)]) == 2
    assert "--background-level must be in [0, 1), got 1.2" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_loss_curve_has_twenty_points_and_the_background_level_changes_the_clips():
    curve = bench.train_arm(ARMS[0], Budget(**{**TINY.__dict__, "steps": 45}), seed=0)["loss_curve"]
    assert curve["steps"][-1] == 45 and len(curve["steps"]) == len(curve["mean_loss"]) == 20
    labels, seeds = np.array([2]), np.array([9])
    dim, black = (render_batch(Arm("g", "a", size=16), Budget(**{**TINY.__dict__, "background_level": level}),
                               labels, seeds, None) for level in (0.3, 0.0))
    assert (black == -1).float().mean() > 0.5 and (dim == -1).float().mean() < 0.1  # black is -1 after scaling


def test_off_plateau_counts_the_seeds_whose_final_loss_fell_below_ln_10():
    stuck, learnt = {"final_train_loss": 2.30}, {"final_train_loss": 1.9}
    assert not bench.left_plateau(stuck) and bench.left_plateau(learnt)
    assert not bench.left_plateau({"final_train_loss": np.log(10) - PLATEAU_MARGIN + 1e-3})
    common = {"top1": 0.1, "params": 1, "macs": 1, "memory_bytes": 1, "step_seconds": 1.0}
    records = {(ARMS[0].slug, 0): {**common, **stuck}, (ARMS[0].slug, 1): {**common, **learnt}}
    rows = bench.summarise(ARMS[:1], records, seeds=2)
    assert rows[0]["off_plateau"] == 1 and rows[0]["loss_curve"] is None  # records without curves still summarise
    assert "| attention | joint | 10.0 ± 0.0 | 1/2 |" in bench.markdown_table(rows, TINY, 2)
