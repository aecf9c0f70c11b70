"""Trajectory attention (paper section 3.1, eq. 4-6), computed where it costs least.

Token layout everywhere: (B, H, 1 + T*S, D), the class token first, then patch tokens frame-major
(token index t*S + s). The computation has two stages:

1. *Frame attention* (eq. 4): every patch query attends, separately for every frame t', over the S
   keys of that frame. The result is a trajectory token per (query, frame): (B, H, T, T*S, D).
   A frame-attention function ``(q, k, v, num_frames) -> trajectories`` is pluggable; the exact one
   is here, the approximations live in ``orthoformer``, ``nystrom`` and ``performer``.
2. *Temporal attention* (eq. 5-6): the trajectory token of the query's own frame is projected to a
   new query, all trajectory tokens to keys and values, and a 1-D attention over t' pools them.

The straightforward computation (the authors' released code, and
``reference.trajectory_attention_reference``) projects all T x T*S trajectory tokens with the
(2C x C) ``proj_kv`` matrix, about four times the cost of the spatial attention itself. Here the
projections are moved to where they cost least, which is exact up to rounding because they are
linear and every temporal softmax row sums to one:

- key projection moved onto the query: <q~, W_k y~ + b_k> = <W_k^T q~, y~> + <q~, b_k>, so each
  (token, head) query is mapped back to C channels once instead of projecting T keys;
- value projection moved after the pooling: sum_t a_t (W_v y~_t + b_v) = W_v (sum_t a_t y~_t) + b_v.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from motionformer.attention.common import check_qkv, full_precision, head_scale, split_frames

# (q, k, v, num_frames) -> trajectories. q, k, v: (B, H, T*S, D) patch tokens only, frame-major.
# Returns (B, H, T, T*S, D): for key frame t' and query i, the trajectory token y~_{i t'} of eq. 4.
FrameAttention = Callable[[Tensor, Tensor, Tensor, int], Tensor]


class TemporalPooling(str, enum.Enum):
    """How the trajectory tokens of one query are pooled over time (Table 4: Att_T vs Avg_T)."""

    ATTENTION = "attention"
    AVERAGE = "average"


class Normalization(str, enum.Enum):
    """Where the first-stage softmax normalises (Table 4: Norm_S vs Norm_ST)."""

    FRAME = "frame"
    SPACE_TIME = "space_time"


class TemporalProjections(NamedTuple):
    """The second-stage weights: ``proj_q`` (C x C) and ``proj_kv`` (2C x C, keys first)."""

    q_weight: Tensor
    q_bias: Tensor | None
    kv_weight: Tensor
    kv_bias: Tensor | None


def exact_frame_attention(q: Tensor, k: Tensor, v: Tensor, num_frames: int) -> Tensor:
    """Eq. 4 exactly: a softmax over the S keys of each frame, for every query and frame.

    q, k, v: (B, H, T*S, D). Returns (B, H, T, T*S, D). Runs as one fused
    ``scaled_dot_product_attention`` call batched over frames, so the (T*S) x (T*S) score matrix
    is never stored on backends with a fused kernel.
    """
    b, h, n, d = q.shape
    s = n // num_frames
    # Fused CPU kernels take 4-D inputs, so frames become the leading batch dim. The queries are the
    # same for every frame: a stride-0 expand, never copied. Keys/values: (B, H, T*S, D) -> (T, B*H, S, D).
    k_frames = k.unflatten(2, (num_frames, s)).permute(2, 0, 1, 3, 4).reshape(num_frames, b * h, s, d)
    v_frames = v.unflatten(2, (num_frames, s)).permute(2, 0, 1, 3, 4).reshape(num_frames, b * h, s, d)
    q_frames = q.reshape(1, b * h, n, d).expand(num_frames, b * h, n, d)
    out = F.scaled_dot_product_attention(q_frames, k_frames, v_frames)  # (T, B*H, N, D)
    return out.view(num_frames, b, h, n, d).permute(1, 2, 0, 3, 4)  # (B, H, T, N, D), a view


def space_time_frame_attention(q: Tensor, k: Tensor, v: Tensor, num_frames: int) -> Tensor:
    """The Norm_ST ablation of eq. 4: one softmax over all T*S keys, then split by key frame.

    Shapes as ``exact_frame_attention``. Summed over frames it equals joint attention. This ablation
    stores the full (T*S) x (T*S) attention; it is kept simple rather than fast.
    """
    n, d = q.shape[-2:]
    s = n // num_frames
    attn = torch.softmax((q * head_scale(d)) @ k.transpose(-2, -1), dim=-1)  # (B, H, N, N), scaled first
    # (B, H, N, T, S) x (B, H, T, S, D) -> (B, H, T, N, D)
    return torch.einsum("bhnts,bhtsd->bhtnd", attn.unflatten(-1, (num_frames, s)),
                        v.unflatten(2, (num_frames, s)))


def temporal_attention(
    trajectories: Tensor, projections: TemporalProjections, original_temporal_values: bool = False
) -> Tensor:
    """Eq. 5-6 with the projections moved to where they cost least (see the module docstring).

    trajectories: (B, H, T, T*S, D). Returns the pooled tokens (B, T*S, H*D), heads merged.
    With ``original_temporal_values`` the pooled values are the trajectory tokens themselves
    (v = y~, as in the released checkpoints) and the value half of ``proj_kv`` is unused (its
    gradient is zero). The key bias cancels in the softmax, so its gradient is exactly zero too.

    Queries are processed in chunks of bounded memory (``CHUNK_ELEMENTS``), forward and backward,
    and the backward recomputes the (token, head, C) intermediates instead of storing them: only the
    trajectories (already kept by the first stage), the reference tokens, the temporal queries and
    the temporal weights are saved.
    """
    return _temporal_heads(trajectories, projections, original_temporal_values).flatten(2)


def _temporal_heads(trajectories: Tensor, projections: TemporalProjections, original_temporal_values: bool
                    ) -> Tensor:
    """``temporal_attention`` with the heads not yet merged: (B, T*S, H, D), possibly non-contiguous."""
    q_weight, q_bias, kv_weight, kv_bias = projections
    return _TemporalAttention.apply(trajectories, q_weight, q_bias, kv_weight, kv_bias,
                                    original_temporal_values)


# Elements of the largest (batch, queries, heads, channels) intermediate of the temporal stage on the CPU
# (16 MiB in float32, which keeps the activation memory of the earlier per-clip chunks). Queries are
# processed in chunks that keep every intermediate below the bound. Other devices take
# ACCELERATOR_CHUNK_FACTOR times more (256 MiB in float32), since a GPU step otherwise waits on the launches
# of many small chunks: ViT-B at 8 x 196 runs in one chunk up to batch 4.
CHUNK_ELEMENTS = 1 << 22
ACCELERATOR_CHUNK_FACTOR = 16


def _chunks(batch: int, num_queries: int, heads: int, channels: int, device: torch.device) -> list[slice]:
    """Query ranges whose (batch, chunk, heads, channels) intermediates hold at most the device's bound.

    Every device but the CPU takes the accelerator bound, the meta device included (launch counts model a GPU).
    While ``torch.export`` traces, the bound holds per clip instead, so the exported graph works for any batch.
    """
    budget = CHUNK_ELEMENTS * (1 if device.type == "cpu" else ACCELERATOR_CHUNK_FACTOR)
    per_chunk = heads * channels * (1 if torch.compiler.is_exporting() else batch)
    size = max(1, budget // per_chunk)
    return [slice(start, min(start + size, num_queries)) for start in range(0, num_queries, size)]


def _joined(parts: list[Tensor], dim: int) -> Tensor:
    """``torch.cat(parts, dim)``, without a copy for a single part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _summed(parts: list[Tensor], dtype: torch.dtype) -> Tensor:
    """The sum of equally shaped tensors in ``dtype``, without an operation for a single one already in it."""
    return parts[0].to(dtype) if len(parts) == 1 else torch.stack(parts).sum(0, dtype=dtype)


def _key_value_weights(kv_weight: Tensor, heads: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """W_k and W_v per head: (H, D, C) each, in ``dtype``; output channel g*D + e of ``proj_kv`` is (head g, e)."""
    c = kv_weight.shape[1]
    return kv_weight[:c].to(dtype).view(heads, c // heads, c), kv_weight[c:].to(dtype).view(heads, c // heads, c)


def _scaled_bmm(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """``scale * (a @ b)`` for (G, n, k) x (G, k, m) in one GEMM.

    The scale applies to the GEMM's accumulator, so a half-precision result cannot overflow where
    the unscaled product would.
    """
    return torch.baddbmm(a.new_empty(()), a, b, beta=0, alpha=scale)


def _heads_first(x: Tensor, heads: int) -> Tensor:
    """(B, n, H*D) -> (H, B*n, D), a view where the layout allows."""
    return x.unflatten(-1, (heads, -1)).permute(2, 0, 1, 3).flatten(1, 2)


def _temporal_queries(query: Tensor, k_weight: Tensor) -> Tensor:
    """W_k^T q~ / sqrt(D) per head, the key bias left out (it cancels): (B, n, C) -> (B, n, H, C), a view."""
    h, d, _ = k_weight.shape
    # (H, B*n, D) x (H, D, C) -> (H, B*n, C)
    return _scaled_bmm(_heads_first(query, h), k_weight, head_scale(d)).unflatten(1, (query.shape[0], -1)).permute(
        1, 2, 0, 3)


class _TemporalAttention(torch.autograd.Function):
    """The temporal stage with a hand-written, chunked backward (see ``temporal_attention``)."""

    @staticmethod
    def forward(ctx, trajectories, q_weight, q_bias, kv_weight, kv_bias, original_temporal_values):
        b, h, _, n, d = trajectories.shape
        dtype = trajectories.dtype
        k_weight, v_weight = _key_value_weights(kv_weight, h, dtype)
        with full_precision(trajectories.device):  # dtypes are chosen explicitly here
            bias_q = q_bias.to(dtype) if q_bias is not None else None
            reference = _reference_tokens(trajectories)  # (B, N, C)
            query = F.linear(reference, q_weight.to(dtype), bias_q)  # (B, N, C)
            v_bias = None
            if kv_bias is not None and not original_temporal_values:
                v_bias = kv_bias[h * d:].to(dtype).view(h, 1, d)
            parts = [_forward_chunk(trajectories, query, k_weight, v_weight, v_bias, chunk, original_temporal_values)
                     for chunk in _chunks(b, n, h, h * d, trajectories.device)]
        weights = _joined([w for w, _ in parts], dim=1)  # (B, N, H, T), float32 or wider
        pooled = _joined([p for _, p in parts], dim=1)  # (B, N, H, D)
        ctx.save_for_backward(trajectories, q_weight, q_bias, kv_weight, kv_bias, reference, query, weights)
        ctx.original_temporal_values = original_temporal_values
        return pooled

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pooled):
        with full_precision(grad_pooled.device):  # dtypes are chosen explicitly here too
            return (*_temporal_backward(grad_pooled, *ctx.saved_tensors, ctx.original_temporal_values), None)


def _temporal_backward(grad_pooled: Tensor, trajectories: Tensor, q_weight: Tensor, q_bias: Tensor | None,
                       kv_weight: Tensor, kv_bias: Tensor | None, reference: Tensor, query: Tensor, weights: Tensor,
                       original: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor | None]:
    """Gradients of the trajectories, proj_q's weight and bias and proj_kv's weight and bias."""
    b, h, t, n, d = trajectories.shape
    c, dtype = h * d, trajectories.dtype
    k_weight, v_weight = _key_value_weights(kv_weight, h, dtype)
    grad_out = grad_pooled.to(dtype).reshape(b, n, h, d)
    grad_traj = torch.empty_like(trajectories)  # same strides: the first stage needs no copy
    parts = [_backward_chunk(trajectories, query, weights, grad_out, grad_traj, k_weight, v_weight, chunk,
                             original) for chunk in _chunks(b, n, h, c, trajectories.device)]
    grad_query = _joined([part[0] for part in parts], dim=1)  # (B, N, C)
    # the query's own trajectory token: (B, N, C) -> the diagonal of grad_traj, (B, H, S, D, T)
    grad_reference = (grad_query @ q_weight.to(dtype)).view(b, t, n // t, h, d).permute(0, 3, 2, 4, 1)
    _diagonal(grad_traj).add_(grad_reference)
    acc = torch.promote_types(q_weight.dtype, torch.float32)  # weight gradients accumulate here
    grad_q_weight = (grad_query.flatten(0, 1).T.to(acc) @ reference.flatten(0, 1).to(acc)).to(q_weight.dtype)
    grad_q_bias = grad_query.sum((0, 1), dtype=acc).to(q_bias.dtype) if q_bias is not None else None
    grad_k_weight = _summed([part[1] for part in parts], acc)  # (H, D, C)
    if original:  # the value half of proj_kv is unused: zero gradient
        grad_kv_weight = F.pad(grad_k_weight.view(c, c), (0, 0, 0, c))
    else:
        grad_kv_weight = torch.cat([grad_k_weight, _summed([part[2] for part in parts], acc)]).view(2 * c, c)
    grad_kv_weight = grad_kv_weight.to(kv_weight.dtype)
    grad_kv_bias = None
    if kv_bias is not None:  # the key bias cancels in the softmax: zero gradient, as for unused values
        grad_v_bias = grad_out.new_zeros(c) if original else grad_out.sum((0, 1), dtype=acc).view(c)
        grad_kv_bias = F.pad(grad_v_bias, (c, 0)).to(kv_bias.dtype)
    return grad_traj, grad_q_weight, grad_q_bias, grad_kv_weight, grad_kv_bias


def _forward_chunk(trajectories: Tensor, query: Tensor, k_weight: Tensor, v_weight: Tensor, v_bias: Tensor | None,
                   chunk: slice, original: bool) -> tuple[Tensor, Tensor]:
    """Temporal weights (B, n, H, T) in float32 or wider and pooled tokens (B, n, H, D) of the queries ``chunk``.

    ``v_bias``: (H, 1, D) or None. The pooled tokens may be a non-contiguous view.
    """
    b, h, t, _, d = trajectories.shape
    tokens = _tokens(trajectories, chunk)  # (B, n, T, C)
    scores = _temporal_queries(query[:, chunk], k_weight) @ tokens.transpose(-2, -1)  # (B, n, H, T), scaled
    w = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))
    wd = w.to(tokens.dtype)
    if original:  # head g pools its own channels of y~
        return w, torch.einsum("bnht,bnthd->bnhd", wd, tokens.view(b, -1, t, h, d))
    # W_v after pooling: (B, n, H, T) x (B, n, T, C) -> (B, n, H, C) -> (H, B*n, C) x (H, C, D) -> (H, B*n, D)
    mixed = (wd @ tokens).permute(2, 0, 1, 3).flatten(1, 2)
    pooled = torch.bmm(mixed, v_weight.transpose(-2, -1)) if v_bias is None else torch.baddbmm(
        v_bias, mixed, v_weight.transpose(-2, -1))
    return w, pooled.unflatten(1, (b, -1)).permute(1, 2, 0, 3)  # (B, n, H, D), a view


def _backward_chunk(trajectories: Tensor, query: Tensor, weights: Tensor, grad_out: Tensor, grad_traj: Tensor,
                    k_weight: Tensor, v_weight: Tensor, chunk: slice, original: bool
                    ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Gradients of the queries ``chunk``: writes grad_traj's chunk, returns (grad query, grad W_k, grad W_v).

    grad query is (B, n, C); grad W_k and grad W_v are (H, D, C); grad W_v is None for original values.
    At most two (B, n, H, C) intermediates are alive at a time.
    """
    b, h, t, _, d = trajectories.shape
    tokens = _tokens(trajectories, chunk)  # (B, n, T, C)
    w32 = weights[:, chunk]  # (B, n, H, T)
    w = w32.to(tokens.dtype)
    g_out = grad_out[:, chunk]  # (B, n, H, D)
    if original:
        grad_v_weight = None
        grad_w = torch.einsum("bnhd,bnthd->bnht", g_out, tokens.view(b, -1, t, h, d))
        grad_tokens = torch.einsum("bnht,bnhd->bnthd", w, g_out).reshape(b, -1, t, h * d)
    else:
        grad_w, grad_tokens, grad_v_weight = _value_gradients(g_out, w, tokens, v_weight)
    grad_scores = torch._softmax_backward_data(grad_w.to(w32.dtype), w32, -1, w32.dtype).to(tokens.dtype)
    # grad_tokens + grad_scores^T q_in_tokens, batched over (B, n): (B*n, T, H) x (B*n, H, C) -> (B*n, T, C);
    # q_in_tokens is recomputed, not stored, and freed at once
    grad_tokens = torch.baddbmm(grad_tokens.flatten(0, 1), grad_scores.transpose(-2, -1).flatten(0, 1),
                                _temporal_queries(query[:, chunk], k_weight).flatten(0, 1))
    # back to the trajectory layout: (B, n, T, H, D) -> (B, H, T, n, D)
    grad_traj[:, :, :, chunk] = grad_tokens.view(b, -1, t, h, d).permute(0, 3, 2, 1, 4)
    del grad_tokens  # freed before the next (B, n, H, C) intermediate
    # through q_in_tokens = W_k^T q~ / sqrt(D): (H, D, B*n) x (H, B*n, C) and (H, B*n, C) x (H, C, D)
    grad_q_in_heads = (grad_scores @ tokens).permute(2, 0, 1, 3).flatten(1, 2)  # (B, n, H, C) -> (H, B*n, C)
    grad_k_weight = _scaled_bmm(_heads_first(query[:, chunk], h).transpose(-2, -1), grad_q_in_heads, head_scale(d))
    grad_query = _scaled_bmm(grad_q_in_heads, k_weight.transpose(-2, -1), head_scale(d))  # (H, B*n, D)
    return grad_query.unflatten(1, (b, -1)).permute(1, 2, 0, 3).flatten(2), grad_k_weight, grad_v_weight


def _value_gradients(g_out: Tensor, w: Tensor, tokens: Tensor, v_weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Through pooled = W_v (w @ tokens): gradients of w (B, n, H, T), tokens (B, n, T, C) and W_v (H, D, C)."""
    grad_v_weight = torch.einsum("bnhd,bnhc->hdc", g_out, w @ tokens)
    grad_mixed = torch.einsum("bnhd,hdc->bnhc", g_out, v_weight)  # (B, n, H, C)
    return grad_mixed @ tokens.transpose(-2, -1), w.transpose(-2, -1) @ grad_mixed, grad_v_weight


def _tokens(trajectories: Tensor, chunk: slice) -> Tensor:
    """Trajectory tokens of the queries ``chunk``, heads merged: (B, H, T, N, D) -> (B, n, T, H*D)."""
    b, h, t, _, d = trajectories.shape
    return trajectories[:, :, :, chunk].permute(0, 3, 2, 1, 4).reshape(b, -1, t, h * d)


def _diagonal(trajectories: Tensor) -> Tensor:
    """Each query's trajectory token at its own frame, as a view: (B, H, T, T*S, D) -> (B, H, S, D, T)."""
    t = trajectories.shape[2]
    # query i = t*S + s of frame t: (B, H, T, T, S, D), diagonal over the key frame and the query frame
    return trajectories.unflatten(3, (t, -1)).diagonal(dim1=2, dim2=3)


def _reference_tokens(trajectories: Tensor) -> Tensor:
    """Each query's trajectory token at its own frame t = i // S, heads merged: (B, N, H*D)."""
    b, h, _, n, d = trajectories.shape
    # (B, H, S, D, T) -> (B, T, S, H, D) -> (B, N, C)
    return _diagonal(trajectories).permute(0, 4, 2, 1, 3).reshape(b, n, h * d)


def trajectory_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_frames: int,
    projections: TemporalProjections | None,
    *,
    frame_attention: FrameAttention = exact_frame_attention,
    temporal_pooling: TemporalPooling = TemporalPooling.ATTENTION,
    original_temporal_values: bool = False,
) -> Tensor:
    """Trajectory attention of a clip with a class token: (B, H, 1+T*S, D) x3 -> (B, 1+T*S, H*D).

    The class token attends jointly over all tokens (its own key included); patch tokens attend
    along trajectories over patch keys only. ``projections`` may be None only with average pooling.
    Output heads are merged but not yet passed through the output projection.
    """
    check_qkv(q, k, v)
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"trajectory attention needs as many queries as keys, got {q.shape[-2]} "
                         f"and {k.shape[-2]}")
    split_frames(q.shape[-2], num_frames)
    q_cls, q_patches = q.split([1, q.shape[-2] - 1], dim=2)  # one split: its backward is a single cat
    cls_out = F.scaled_dot_product_attention(q_cls, k, v)  # (B, H, 1, D)
    trajectories = frame_attention(q_patches, k[:, :, 1:], v[:, :, 1:], num_frames)  # (B, H, T, TS, D)
    if TemporalPooling(temporal_pooling) is TemporalPooling.AVERAGE:
        pooled = trajectories.mean(2).transpose(1, 2)  # (B, H, T, N, D) -> (B, N, H, D)
    else:
        if projections is None:
            raise ValueError("temporal attention pooling needs the proj_q / proj_kv weights")
        pooled = _temporal_heads(trajectories, projections, original_temporal_values)  # (B, N, H, D)
    # (B, 1 + N, H, D) -> (B, 1 + N, C): the one copy of the output
    return torch.cat([cls_out.transpose(1, 2), pooled], dim=1).flatten(2)
