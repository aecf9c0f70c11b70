"""The LRA Transformer: attention names, parity of the exact forms, padding, costs, and a run that learns."""

from __future__ import annotations

import json

import pytest
import torch

from motionformer.cli import main
from motionformer_experiments.lra.data import load_task
from motionformer_experiments.lra.listops import ListOpsSettings, generate_listops
from motionformer_experiments.lra.model import ATTENTIONS, LRAModel, SequenceAttention, parse_attention
from motionformer_experiments.lra.report import PAPER_TABLE5, table5
from motionformer_experiments.lra.train import Preset, measure_cost, train_lra


def test_attention_names():
    assert parse_attention("exact") == ("exact", None)
    assert parse_attention("orthoformer-64") == ("orthoformer", 64)
    assert parse_attention("performer") == ("performer", 256)
    for bad in ("exact-3", "linformer-64", "orthoformer-"):
        with pytest.raises(ValueError, match=f"unknown attention '{bad}'"):
            parse_attention(bad)


def _pair(attention: str, reference: str = "exact") -> tuple[SequenceAttention, SequenceAttention]:
    torch.manual_seed(0)
    first = SequenceAttention(16, 2, 8, attention).double()
    second = SequenceAttention(16, 2, 8, reference).double()
    second.load_state_dict(first.state_dict(), strict=False)
    return first, second


@pytest.mark.parametrize("attention", ["exact-unfused", "orthoformer-32", "nystrom-32"])
def test_exact_forms_agree_in_float64(attention):
    """Unfused softmax, and Orthoformer / Nystrom with at least as many prototypes as tokens, are exact attention."""
    first, second = _pair(attention)
    x = torch.randn(3, 20, 16, dtype=torch.float64)
    mask = torch.ones(3, 20, dtype=torch.bool)
    torch.testing.assert_close(first(x, mask), second(x, mask))
    if attention == "exact-unfused":
        mask[:, 15:] = False
        torch.testing.assert_close(first(x, mask), second(x, mask))


def test_padding_does_not_change_the_exact_model():
    torch.manual_seed(0)
    model = LRAModel(vocab_size=16, num_classes=10, max_length=40, dropout=0.0).double().eval()
    tokens = torch.randint(1, 16, (2, 25))
    padded = torch.cat([tokens, torch.zeros(2, 15, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(tokens), model(padded))


@pytest.mark.parametrize("attention", ATTENTIONS[1:])
def test_approximations_run_on_padded_batches(attention):
    model = LRAModel(vocab_size=16, num_classes=10, max_length=300, attention=attention)
    tokens = torch.randint(1, 16, (2, 300))
    tokens[1, 200:] = 0
    logits = model(tokens)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.sum().backward()


def test_costs_fall_with_orthoformer_and_grow_with_the_batch():
    cpu = torch.device("cpu")
    exact = LRAModel(vocab_size=16, num_classes=10, max_length=512)
    ortho = LRAModel(vocab_size=16, num_classes=10, max_length=512, attention="orthoformer-32")
    exact_macs, exact_memory = measure_cost(exact, 512, 2, 16, cpu)
    ortho_macs, _ = measure_cost(ortho, 512, 2, 16, cpu)
    _, bigger = measure_cost(exact, 512, 4, 16, cpu)
    # the projections and MLP alone: 2 layers x 512 tokens x (64*192 + 64*64 + 2*64*128) multiply-adds
    assert 512 * 2 * (64 * 192 + 64 * 64 + 2 * 64 * 128) < ortho_macs < exact_macs
    assert exact_memory < bigger
    assert all(p.grad is None for p in exact.parameters())


def test_a_trivially_easy_listops_subset_is_learnt(tmp_path):
    easy = ListOpsSettings(max_depth=2, max_args=3, operators=("[MAX",), min_length=2, max_length=10)
    generate_listops(tmp_path / "data", size=600, settings=easy, workers=1, progress=False)
    data = load_task("listops", tmp_path / "data", 8)
    torch.manual_seed(0)
    preset = Preset(seq_len=8, batch_size=32, steps=300, warmup=30, lr=1e-3, dropout=0.0)
    result = train_lra(data, "exact", preset, out=tmp_path / "run", progress=False)
    assert result["test_accuracy"] >= 0.8 > result["majority_class_accuracy"] + 0.3
    assert json.loads((tmp_path / "run" / "result.json").read_text())["test_accuracy"] == result["test_accuracy"]
    assert result["macs"] > 0 and result["memory_bytes"] > 0 and result["step_seconds"] > 0


def test_table5_layout():
    runs = [{"task": "listops", "attention": "exact", "test_accuracy": 0.375, "macs": 1.2e9, "memory_bytes": 2**30,
             "step_seconds": 0.25},
            {"task": "pathfinder", "attention": "exact", "test_accuracy": 0.5, "step_seconds": 0.5}]
    table = table5(runs)
    assert "| exact | 37.5 | 36.69 | 50.0 | 66.35 | 1.200 | 1.21 | 1024 | 4579 | 250 | 500 |" in table
    assert set(PAPER_TABLE5) <= set(ATTENTIONS) | {"exact"}


def test_cli_errors_name_the_missing_data(tmp_path, capsys):
    assert main(["lra", "train", "listops", "--attention", "exact", "--data", str(tmp_path)]) == 2
    assert "basic_train.tsv not found" in capsys.readouterr().err
    assert main(["lra", "train", "listops", "--attention", "fast", "--data", str(tmp_path)]) == 2
    assert main(["lra", "report", str(tmp_path)]) == 2
    assert "no result.json" in capsys.readouterr().err


def test_pathfinder_files_load_and_train(tmp_path, capsys):
    assert main(["lra", "generate", "pathfinder", str(tmp_path / "pf"), "--size", "40", "--workers", "1"]) == 0
    data = load_task("pathfinder", tmp_path / "pf", 1024)
    tokens, labels = data.splits["train"]
    assert tokens.shape == (32, 1024) and tokens.max() <= 255 and set(labels.tolist()) == {0, 1}
    assert not data.padding and data.num_classes == 2
    result = train_lra(data, "orthoformer-64", Preset(seq_len=1024, batch_size=4, steps=2, warmup=1), measure=False,
                       progress=False)
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["test_examples"] == 4
    with pytest.raises(ValueError, match="32x32 pixels, but --seq-len is 256"):
        load_task("pathfinder", tmp_path / "pf", 256)
    (tmp_path / "pf" / "test.txt").write_text("images/00/000000.png 2\n")
    with pytest.raises(ValueError, match=r"test.txt:1: expected 'image.png 0\|1'"):
        load_task("pathfinder", tmp_path / "pf", 1024)
