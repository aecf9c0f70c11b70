"""Multiply-add counts: tiny models against closed formulas, the CPU attention formula, the guard, the command."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from motionformer import create_model
from motionformer.cli import main
from motionformer.models.flops import CUSTOM_FLOP_FORMULAS, count_flops, set_reference_attention

# the tiny variants: width 192, 3 heads, 4 blocks, MLP ratio 4, 16-pixel patches, 2-frame tubelets, 400 classes
DIM, HEADS, DEPTH, PATCH, TUBELET, CLASSES = 192, 3, 4, 16, 2, 400


def _sizes(num_frames: int, img_size: int) -> tuple[int, int, int]:
    """Token frames T, patches per frame S, all tokens N = 1 + T*S."""
    frames, per_frame = num_frames // TUBELET, (img_size // PATCH) ** 2
    return frames, per_frame, 1 + frames * per_frame


def _outside_attention(num_frames: int, img_size: int) -> int:
    """Tubelet embedding, the projections and MLP of every block but the last (12 N C^2), the last block (which
    computes the class token only: its query, all keys and values, its attention row, output projection and MLP:
    (2 N + 10) C^2 + 2 N C), and the pre-logits and head."""
    frames, per_frame, tokens = _sizes(num_frames, img_size)
    embed = frames * per_frame * DIM * 3 * TUBELET * PATCH * PATCH
    last_block = (2 * tokens + 10) * DIM**2 + 2 * tokens * DIM
    return embed + (DEPTH - 1) * 12 * tokens * DIM**2 + last_block + DIM * DIM + DIM * CLASSES


def joint_macs(num_frames: int, img_size: int) -> int:
    """Joint attention: Q K^T and A V over all N tokens, N^2 C each."""
    _, _, tokens = _sizes(num_frames, img_size)
    return _outside_attention(num_frames, img_size) + (DEPTH - 1) * 2 * tokens**2 * DIM


def trajectory_macs(num_frames: int, img_size: int, straightforward: bool) -> int:
    """Trajectory attention on n = T*S patch queries: class token 2 N C, frame attention 2 n^2 C, then

    straightforward: proj_q n C^2, proj_kv on all T*n trajectory tokens 2 T n C^2, scores and pooling 2 T n C;
    ours: proj_q, W_k^T q and W_v after pooling 3 n C^2, scores and pooling in C channels per head 2 H T n C.
    """
    frames, per_frame, tokens = _sizes(num_frames, img_size)
    n = frames * per_frame
    if straightforward:
        temporal = n * DIM**2 + 2 * frames * n * DIM**2 + 2 * frames * n * DIM
    else:
        temporal = 3 * n * DIM**2 + 2 * HEADS * frames * n * DIM
    return _outside_attention(num_frames, img_size) + (DEPTH - 1) * (2 * tokens * DIM + 2 * n * n * DIM + temporal)


@pytest.mark.parametrize(("num_frames", "img_size"), [(8, 112), (4, 64)])
def test_joint_attention_count_matches_closed_formula(num_frames: int, img_size: int):
    model = create_model("joint_tiny")
    assert count_flops(model, num_frames, img_size) == joint_macs(num_frames, img_size)


@pytest.mark.parametrize(("num_frames", "img_size"), [(8, 112), (4, 64)])
def test_trajectory_counts_match_closed_formulas(num_frames: int, img_size: int):
    """Ours counts the temporal stage's custom autograd function; straightforward is the reference path."""
    model = create_model("mformer_tiny")
    ours = count_flops(model, num_frames, img_size)
    assert set_reference_attention(model, True) == DEPTH
    straightforward = count_flops(model, num_frames, img_size)
    assert ours == trajectory_macs(num_frames, img_size, straightforward=False)
    assert straightforward == trajectory_macs(num_frames, img_size, straightforward=True)
    assert 0 < ours < straightforward


def test_counts_are_positive_and_leave_the_model_alone():
    model = create_model("mformer_tiny").train()
    before = {name: p.clone() for name, p in model.state_dict().items()}
    assert count_flops(model) > 0 and count_flops(create_model("divided_tiny")) > 0
    assert model.training
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())


def test_cpu_fused_attention_formula_matches_math_path():
    """On CPU tensors attention runs one fused kernel, which PyTorch has no formula for; ours counts Q K^T and
    A V like the meta device's math path (two batched products)."""
    batch, heads, queries, keys, head_dim = 2, 3, 10, 7, 8
    expected = 2 * 2 * batch * heads * queries * keys * head_dim
    counts = {}
    for device in ("cpu", "meta"):
        q = torch.zeros(batch, heads, queries, head_dim, device=device)
        kv = torch.zeros(batch, heads, keys, head_dim, device=device)
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOP_FORMULAS) as counter:
            F.scaled_dot_product_attention(q, kv, kv)
        counts[device] = counter.get_flop_counts()["Global"]
    assert set(counts["cpu"]) == {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu}
    assert sum(counts["cpu"].values()) == sum(counts["meta"].values()) == expected


def test_uncounted_matrix_product_raises(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delitem(flop_counter.flop_registry, torch.ops.aten.bmm)
    with pytest.raises(RuntimeError, match=r"aten\.bmm"):
        count_flops(create_model("joint_tiny"))


def test_flops_command_prints_a_table(capsys: pytest.CaptureFixture[str]):
    assert main(["flops", "mformer_tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "input", "params"]
    cells = lines[2].split()
    assert cells[:2] == ["mformer_tiny", "8x112"]
    # GMAC printed to 3 decimals
    assert float(cells[3]) == pytest.approx(trajectory_macs(8, 112, straightforward=False) / 1e9, abs=5e-4)
    assert float(cells[4]) == pytest.approx(trajectory_macs(8, 112, straightforward=True) / 1e9, abs=5e-4)
    assert cells[5] == "-"  # no paper figure for the tiny model
