"""Trajectory attention: the fast path against eq. 4-6 written out, in float64, forward and gradients."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import motionformer.attention.trajectory as trajectory_module
from motionformer.attention import (
    TemporalPooling,
    TemporalProjections,
    exact_frame_attention,
    space_time_frame_attention,
    trajectory_attention,
)
from motionformer.attention.reference import (
    frame_attention_reference,
    softmax_attention_reference,
    trajectory_attention_reference,
)

SHAPES = [  # (batch, heads, frames, tokens per frame, head dim)
    (2, 3, 4, 6, 8),
    (1, 2, 1, 5, 4),  # a single frame
    (1, 2, 3, 1, 4),  # a single token per frame
    (1, 1, 2, 7, 3),  # S not a square, one head
]


def _inputs(b, h, t, s, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = 1 + t * s
    q, k, v = (torch.randn(b, h, n, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    c = h * d
    proj = TemporalProjections(
        *(torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True) / c ** 0.5
          for shape in [(c, c), (c,), (2 * c, c), (2 * c,)])
    )
    return q, k, v, proj


def _grads(out, tensors):
    weights = torch.randn_like(out)
    return torch.autograd.grad((out * weights).sum(), tensors, allow_unused=True)


def _close(a, b):
    if a is None or b is None:  # an input the function ignores: the other side must be zero
        other = b if a is None else a
        assert other is None or torch.count_nonzero(other) == 0 or other.abs().max() < 1e-12
        return
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("original_temporal_values", [False, True])
@pytest.mark.parametrize("chunk_elements", [None, 40])
def test_fast_path_matches_equations(shape, original_temporal_values, chunk_elements, monkeypatch):
    if chunk_elements is not None:  # force several query chunks (uneven last one) through the temporal stage
        monkeypatch.setattr(trajectory_module, "CHUNK_ELEMENTS", chunk_elements)
    q, k, v, proj = _inputs(*shape)
    t = shape[2]
    fast = trajectory_attention(q, k, v, t, proj, original_temporal_values=original_temporal_values)
    slow = trajectory_attention_reference(q, k, v, t, proj, original_temporal_values=original_temporal_values)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
    torch.manual_seed(1)
    inputs = (q, k, v, *proj)
    grads_fast = _grads(fast, inputs)
    torch.manual_seed(1)
    grads_slow = _grads(slow, inputs)
    for a, b in zip(grads_fast, grads_slow, strict=True):
        _close(a, b)


def _fused_layout(x: torch.Tensor) -> torch.Tensor:
    """The same values laid out (T, N, B, H, D)-major, as the fused kernels write trajectories (B, H, T, N, D)."""
    return x.permute(2, 3, 0, 1, 4).contiguous().permute(2, 3, 0, 1, 4)


@pytest.mark.parametrize("original_temporal_values", [False, True])
@pytest.mark.parametrize("strided_rows", [False, True])
def test_temporal_stage_in_any_layout_matches_equations(original_temporal_values, strided_rows, monkeypatch):
    """Contiguous trajectories (copied chunk by chunk) and the fused kernels' layout (read and written in place):
    outputs and gradients against eq. 5-6 in float64, with several chunks and gradients written into strided rows
    (as on a GPU) or copied (as on the CPU)."""
    monkeypatch.setattr(trajectory_module, "CHUNK_ELEMENTS", 100)
    monkeypatch.setattr(trajectory_module, "_writes_strided_rows", lambda device: strided_rows)
    b, h, t, s, d = 2, 3, 3, 4, 2
    g = torch.Generator().manual_seed(4)
    traj = torch.randn(b, h, t, t * s, d, generator=g, dtype=torch.float64)
    _, _, _, proj = _inputs(b, h, t, s, d, seed=6)
    weights = torch.randn(b, t * s, h * d, generator=g, dtype=torch.float64)
    expected = None
    for layout in (traj, _fused_layout(traj)):
        x = layout.clone(memory_format=torch.preserve_format).requires_grad_()
        out = trajectory_module.temporal_attention(x, proj, original_temporal_values)
        grads = torch.autograd.grad((out * weights).sum(), (x, *proj))
        if expected is None:
            leaf = traj.clone().requires_grad_()
            ref = _temporal_reference(leaf, proj, original_temporal_values)
            torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
            for a, e in zip(grads, torch.autograd.grad((ref * weights).sum(), (leaf, *proj), allow_unused=True),
                            strict=True):
                _close(a, e)
            expected = (out, grads)
        else:
            torch.testing.assert_close(out, expected[0], rtol=1e-12, atol=1e-13)
            for a, e in zip(grads, expected[1], strict=True):
                torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-13)


def _temporal_reference(traj, proj, original):
    """Eq. 5-6 written out on trajectories (B, H, T, N, D): every trajectory token projected to keys and values."""
    b, h, t, n, d = traj.shape
    frames = torch.arange(n) // (n // t)
    own = traj[:, :, frames, torch.arange(n)]  # (B, H, N, D): each query's token at its own frame
    tokens = traj.permute(0, 3, 2, 1, 4).reshape(b, n, t, h * d)  # (B, N, T, C)
    query = own.transpose(1, 2).reshape(b, n, h * d) @ proj.q_weight.T + proj.q_bias
    kv = tokens @ proj.kv_weight.T + proj.kv_bias
    keys = kv[..., :h * d].unflatten(-1, (h, d))
    values = tokens.unflatten(-1, (h, d)) if original else kv[..., h * d:].unflatten(-1, (h, d))
    scores = torch.einsum("bnhd,bnthd->bnht", query.unflatten(-1, (h, d)), keys) * d ** -0.5
    return torch.einsum("bnht,bnthd->bnhd", scores.softmax(-1), values).flatten(2)


def test_fused_layout_is_read_without_copies():
    """In the fused kernels' layout the temporal stage's forward copies nothing (heads left unmerged, as the layer
    takes them): no clone or copy operation."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from launches import LaunchCounter

    traj = _fused_layout(torch.empty(2, 12, 8, 8 * 196, 64, device="meta"))
    proj = TemporalProjections(*(torch.empty(shape, device="meta") for shape in [(768, 768), (768,), (1536, 768),
                                                                                   (1536,)]))
    with LaunchCounter() as counter:
        trajectory_module._temporal_heads(traj, proj, False)
    assert not {"clone", "copy_", "_to_copy"} & set(counter.counts), counter.counts
    assert counter.total == 6, counter.counts  # query, keys, scores, softmax, pooling, values


def test_reference_follows_equation_4_to_6_by_loops():
    """The reference itself against a per-token loop over eq. 4, 5 and 6 (tiny sizes)."""
    b, h, t, s, d = 1, 2, 3, 2, 3
    q, k, v, proj = _inputs(b, h, t, s, d, seed=3)
    out = trajectory_attention_reference(q, k, v, t, proj)
    c = h * d
    scale = d ** -0.5
    for i in range(t * s):
        frame = i // s
        traj = torch.zeros(t, c, dtype=torch.float64)  # y~_{i t'} with heads merged
        for head in range(h):
            for tp in range(t):
                keys = k[0, head, 1 + tp * s: 1 + (tp + 1) * s]
                vals = v[0, head, 1 + tp * s: 1 + (tp + 1) * s]
                weights = torch.softmax(keys @ q[0, head, 1 + i] * scale, dim=0)  # eq. 4
                traj[tp, head * d:(head + 1) * d] = weights @ vals
        query = proj.q_weight @ traj[frame] + proj.q_bias  # eq. 5
        kv = traj @ proj.kv_weight.T + proj.kv_bias
        for head in range(h):
            sl = slice(head * d, (head + 1) * d)
            a = torch.softmax(kv[:, :c][:, sl] @ query[sl] * scale, dim=0)  # eq. 6
            expected = a @ kv[:, c:][:, sl]
            torch.testing.assert_close(out[0, 1 + i, sl], expected)
    cls = softmax_attention_reference(q[:, :, :1], k, v).transpose(1, 2).reshape(1, c)
    torch.testing.assert_close(out[:, 0], cls)


def test_frame_attention_exact_matches_reference():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 3, 4 * 9, 5, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(exact_frame_attention(q, k, v, 4), frame_attention_reference(q, k, v, 4))


def test_average_pooling_equals_mean_of_trajectories():
    q, k, v, _ = _inputs(2, 2, 3, 4, 4)
    out = trajectory_attention(q, k, v, 3, None, temporal_pooling=TemporalPooling.AVERAGE)
    slow = trajectory_attention_reference(q, k, v, 3, None, average_over_time=True)
    torch.testing.assert_close(out, slow)
    # Avg_T weights every frame equally: a patch output is the mean over frames of per-frame attention
    traj = frame_attention_reference(q[:, :, 1:], k[:, :, 1:], v[:, :, 1:], 3).mean(2)
    torch.testing.assert_close(out[:, 1:], traj.transpose(1, 2).reshape(2, 12, 8))


def test_space_time_normalisation_sums_to_joint_attention():
    """Norm_ST splits one softmax over all patch keys by frame: summed over frames it is joint attention."""
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 3 * 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    traj = space_time_frame_attention(q, k, v, 3)
    torch.testing.assert_close(traj.sum(2), softmax_attention_reference(q, k, v))
    q2, k2, v2, proj = _inputs(1, 2, 3, 5, 4)
    fast = trajectory_attention(q2, k2, v2, 3, proj, frame_attention=space_time_frame_attention)
    slow = trajectory_attention_reference(q2, k2, v2, 3, proj, frame_attention=space_time_frame_attention)
    torch.testing.assert_close(fast, slow)


def test_released_temporal_values_ignore_value_projection():
    q, k, v, proj = _inputs(1, 2, 3, 4, 4)
    out = trajectory_attention(q, k, v, 3, proj, original_temporal_values=True)
    changed = proj._replace(kv_weight=proj.kv_weight.detach().clone())
    changed.kv_weight[8:] = 0.0  # the value half
    torch.testing.assert_close(out, trajectory_attention(q, k, v, 3, changed, original_temporal_values=True))
    assert not torch.allclose(out, trajectory_attention(q, k, v, 3, changed))


@pytest.mark.parametrize("tokens, frames", [(10, 4), (1, 1), (7, 0)])
def test_bad_token_count_names_the_numbers(tokens, frames):
    q = torch.randn(1, 2, tokens, 4)
    with pytest.raises(ValueError, match=str(frames)):
        trajectory_attention(q, q, q, frames, None, temporal_pooling="average")


@pytest.mark.parametrize("device, batch, expected", [("cpu", 1, 7), ("cpu", 8, 56), ("meta", 1, 1), ("meta", 2, 1),
                                                    ("meta", 4, 2), ("meta", 8, 4)])
def test_query_chunks_bound_the_intermediates_including_the_batch(device, batch, expected):
    """At ViT-B size (8 x 196 queries, 12 heads, C = 768) every (B x chunk, 2H, C) intermediate stays under the bound.

    The CPU bound is 2^22 elements; other devices (meta stands for a GPU here) take 16 times more.
    """
    chunks = trajectory_module._chunks(batch, 1568, 12, 768, torch.device(device))
    assert [c.start for c in chunks[1:]] == [c.stop for c in chunks[:-1]]
    assert chunks[0].start == 0 and chunks[-1].stop == 1568
    bound = trajectory_module.CHUNK_ELEMENTS * (1 if device == "cpu" else trajectory_module.ACCELERATOR_CHUNK_FACTOR)
    assert all(batch * (c.stop - c.start) * 2 * 12 * 768 <= bound for c in chunks)
    assert len(chunks) == expected
