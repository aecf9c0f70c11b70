"""Training, testing and prediction end to end on a tiny synthetic dataset, in this process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from motionformer.engine import train as train_module
from motionformer.engine.checkpoint import load_checkpoint
from motionformer.engine.config import load_config
from motionformer.engine.evaluate import evaluate_checkpoint
from motionformer.engine.optim import build_scheduler, lr_factor, parameter_groups
from motionformer.engine.train import NonFiniteLossError, mix_batch, one_hot_targets, train
from motionformer.inference import predict
from motionformer.models.registry import create_model

from .conftest import tiny_overrides


@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("run")
    train(load_config("synthetic-tiny", tiny_overrides(tiny_data, output)))
    return output


def test_a_run_writes_its_files(trained_run: Path):
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt", "model.safetensors",
                 "model.json", "predictions.csv", "confusion.png", "test_metrics.json"):
        assert (trained_run / name).exists(), name
    assert sorted(p.name for p in (trained_run / "checkpoints").glob("epoch-*.pt")) == ["epoch-0001.pt",
                                                                                      "epoch-0002.pt"]
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("train") == 10 and kinds.count("epoch") == 2 and kinds[-1] == "summary"  # 5 steps x 2 epochs
    assert all(r["loss"] > 0 for r in records if r["kind"] == "train")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert all("val_top1" in r for r in epochs)
    last = load_checkpoint(trained_run / "checkpoints" / "last.pt")
    assert (last["epoch"], last["batch"], last["step"]) == (2, 0, 10)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "config", "class_names"} <= set(last)
    with open(trained_run / "predictions.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 10 and len({row["video"] for row in rows}) == 10
    metrics = json.loads((trained_run / "test_metrics.json").read_text())
    assert metrics["videos"] == 10 and 0 <= metrics["top1"] <= 100


def test_test_command_reproduces_the_run_metrics(trained_run: Path, tiny_data: Path, tmp_path: Path):
    metrics = evaluate_checkpoint(load_config("synthetic-tiny", tiny_overrides(tiny_data, tmp_path,
                                                                f"checkpoint={trained_run / 'model.safetensors'}")))
    from_run = json.loads((trained_run / "test_metrics.json").read_text())
    assert metrics == pytest.approx(from_run)
    again = evaluate_checkpoint(load_config("synthetic-tiny", tiny_overrides(tiny_data, tmp_path / "pt",
                                                              f"checkpoint={trained_run / 'checkpoints/best.pt'}")))
    assert again == pytest.approx(from_run)


def test_predict_names_classes_from_both_checkpoint_kinds(trained_run: Path, tiny_data: Path):
    video = next((tiny_data / "videos").rglob("*.mp4"))
    for checkpoint in (trained_run / "model.safetensors", trained_run / "checkpoints" / "last.pt"):
        [answer] = predict([video], checkpoint, top_k=3, device="cpu")
        ranked = answer.top[""]
        assert len(ranked) == 3 and ranked[0][0] in (tiny_data / "classes.txt").read_text().splitlines()
        assert ranked[0][1] >= ranked[1][1] >= ranked[2][1] and sum(s for _, s in ranked) <= 1.0 + 1e-6
    with pytest.raises(FileNotFoundError, match="video not found"):
        predict([tiny_data / "missing.mp4"], trained_run / "model.safetensors")


def test_missing_data_is_reported_before_training(tmp_path: Path):
    config = load_config("synthetic-tiny", [f"data.root={tmp_path / 'nowhere'}",
                                            f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(FileNotFoundError, match=r"data.train: annotation file not found: .*nowhere.*train.csv"):
        train(config)
    assert not (tmp_path / "run").exists()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    output = tmp_path / "run"
    calls = {"n": 0}
    real = train_module.compute_loss

    def poisoned(logits, targets):
        calls["n"] += 1
        loss = real(logits, targets)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(train_module, "compute_loss", poisoned)
    config = load_config("synthetic-tiny", tiny_overrides(tiny_data, output, "train.checkpoint_every=1"))
    with pytest.raises(NonFiniteLossError, match="the loss became nan at epoch 0, step 2"):
        train(config)
    kept = load_checkpoint(output / "checkpoints" / "last.pt")
    assert kept["step"] == 2 and all(torch.isfinite(v).all() for v in kept["model"].values())


def test_finetune_keeps_the_body_and_makes_a_new_head(trained_run: Path, tiny_data: Path, tmp_path: Path):
    from motionformer.engine.build import load_finetune

    config = load_config("synthetic-tiny", tiny_overrides(tiny_data, tmp_path))
    model = create_model("mformer_tiny", num_classes=7, **config.model.options)
    report = load_finetune(model, trained_run / "checkpoints" / "last.pt")
    assert set(report["new"]) == {"head.weight", "head.bias"} and not report["resized"]
    source = load_checkpoint(trained_run / "checkpoints" / "last.pt")["model"]
    assert torch.equal(model.state_dict()["blocks.0.attn.qkv.weight"], source["blocks.0.attn.qkv.weight"])
    wider = create_model("mformer_tiny", num_classes=10, **{**config.model.options, "img_size": 48, "num_frames": 8})
    report = load_finetune(wider, trained_run / "model.safetensors")
    assert set(report["resized"]) == {"pos_embed", "temp_embed"}


def test_lr_schedule_steps_warmup_cosine_and_linear():
    common = dict(total_steps=350, milestones=[200, 300], gamma=0.1, min_ratio=0.0)
    steps = [lr_factor(s, schedule="steps", warmup_steps=0, **common) for s in (0, 199, 200, 299, 300)]
    assert steps == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    warm = [lr_factor(s, schedule="cosine", warmup_steps=10, **common) for s in (0, 9, 10, 349)]
    assert warm[0] == pytest.approx(0.1) and warm[1] == pytest.approx(1.0) and warm[2] == pytest.approx(1.0)
    assert warm[3] < 1e-3
    linear = [lr_factor(s, schedule="linear", warmup_steps=10, total_steps=110) for s in (0, 9, 10, 60, 110)]
    assert linear == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'cosin'"):
        build_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), total_steps=1, schedule="cosin")


def test_the_scheduler_sets_the_rate_of_each_step():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    scheduler = build_scheduler(optimizer, total_steps=4, warmup_steps=2, schedule="linear")
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1.0, 2.0, 2.0, 1.0])


def test_weight_decay_skips_biases_norms_and_embeddings():
    model = create_model("mformer_tiny", num_classes=3, depth=1)
    decay, no_decay = parameter_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "pos_embed", "temp_embed", "norm.weight", "head.bias"} <= skipped
    assert not {names[id(p)] for p in decay["params"]} & skipped and decay["weight_decay"] == 0.05
    assert "patch_embed.proj.weight" not in {names[id(p)] for p in decay["params"]}  # frozen 2D embedding


def test_mixup_and_cutmix_mix_clips_and_targets_alike():
    video = torch.stack([torch.zeros(3, 2, 8, 8), torch.ones(3, 2, 8, 8)])
    targets = {"": one_hot_targets(torch.tensor([0, 1]), 2, 0.0)}
    mixed, soft = mix_batch(video, targets, mixup=1.0, cutmix=0.0)
    lam = float(soft[""][0, 0])
    assert torch.allclose(mixed[0], torch.full_like(mixed[0], 1 - lam))
    cut, soft = mix_batch(video, targets, mixup=0.0, cutmix=1.0)
    share = float(cut[0].mean())  # the pasted fraction of the first clip
    assert soft[""][0, 1] == pytest.approx(share) and torch.allclose(soft[""].sum(1), torch.ones(2))
    assert torch.equal(cut[0, :, 0], cut[0, :, 1])  # the same box in every frame


def test_out_of_memory_names_the_options_that_help(tiny_data, tmp_path, monkeypatch):
    from motionformer.engine import RunError

    def no_memory(logits, targets):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "compute_loss", no_memory)
    config = load_config("synthetic-tiny", tiny_overrides(tiny_data, tmp_path / "run", "train.effective_batch=8"))
    with pytest.raises(RunError, match=r"data.batch_size=4\. .*train.effective_batch=8.*model.grad_checkpointing=true"):
        train(config)


def test_tensorboard_scalars_when_installed(trained_run: Path):
    pytest.importorskip("tensorboard")
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))


def _test_data_copy(tiny_data: Path, root: Path, classes: list[str]) -> Path:
    """A data root whose videos are the tiny data's and whose classes.txt lists ``classes``; csv labels follow."""
    names = (tiny_data / "classes.txt").read_text().splitlines()
    root.mkdir()
    (root / "videos").symlink_to(tiny_data / "videos")
    for split in ("train", "val"):
        lines = []
        for line in (tiny_data / f"{split}.csv").read_text().splitlines():
            path, label = line.rsplit(" ", 1)
            lines.append(f"{path} {classes.index(names[int(label)]) if names[int(label)] in classes else 0}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_test_data_in_another_class_order_is_scored_in_the_checkpoints(trained_run, tiny_data, tmp_path):
    names = (tiny_data / "classes.txt").read_text().splitlines()
    weights = f"checkpoint={trained_run / 'model.safetensors'}"
    reordered = _test_data_copy(tiny_data, tmp_path / "reordered", names[::-1])
    metrics = evaluate_checkpoint(load_config("synthetic-tiny", tiny_overrides(reordered, tmp_path / "a", weights)))
    assert metrics == pytest.approx(json.loads((trained_run / "test_metrics.json").read_text()))
    other = _test_data_copy(tiny_data, tmp_path / "other", [*names[:-1], "jumping"])
    with pytest.raises(ValueError, match=r"classes are not the checkpoint's: 1 unknown to it \['jumping'\]"):
        evaluate_checkpoint(load_config("synthetic-tiny", tiny_overrides(other, tmp_path / "b", weights)))


def test_a_test_set_of_unreadable_videos_still_writes_its_metrics(trained_run, tiny_data, tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "classes.txt").write_bytes((tiny_data / "classes.txt").read_bytes())
    (root / "val.csv").write_text("".join(f"gone{k}.mp4 {k}\n" for k in range(3)))
    config = load_config("synthetic-tiny", tiny_overrides(root, tmp_path / "out",
                                                          f"checkpoint={trained_run / 'model.safetensors'}"))
    with pytest.raises(ValueError, match="no test video could be read \\(3 failed"):
        evaluate_checkpoint(config)
    assert json.loads((tmp_path / "out" / "test_metrics.json").read_text()) == {"videos": 0.0, "videos_missing": 3.0}
