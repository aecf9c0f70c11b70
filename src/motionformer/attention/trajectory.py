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

import contextlib
import enum
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from motionformer.attention.common import check_qkv, head_scale, split_frames

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

    Queries are processed in chunks, forward and backward, and the backward recomputes the
    (token, head, C) intermediates instead of storing them: only the trajectories (already kept by
    the first stage), the temporal queries and the temporal weights are saved.
    """
    q_weight, q_bias, kv_weight, kv_bias = projections
    return _TemporalAttention.apply(trajectories, q_weight, q_bias, kv_weight, kv_bias,
                                    original_temporal_values)


# Elements of one (queries, heads, channels) intermediate of the temporal stage: sets the chunk size.
CHUNK_ELEMENTS = 1 << 21


def _chunks(num_queries: int, heads: int, channels: int) -> list[tuple[int, int]]:
    """Query ranges whose (chunk, heads, channels) intermediates hold about ``CHUNK_ELEMENTS`` elements."""
    size = max(1, CHUNK_ELEMENTS // (heads * channels))
    return [(start, min(start + size, num_queries)) for start in range(0, num_queries, size)]


class _TemporalAttention(torch.autograd.Function):
    """The temporal stage with a hand-written, chunked backward (see ``temporal_attention``)."""

    @staticmethod
    def forward(ctx, trajectories, q_weight, q_bias, kv_weight, kv_bias, original_temporal_values):
        b, h, t, n, d = trajectories.shape
        c, s = h * d, n // t
        dtype = trajectories.dtype
        weights_q = q_weight.to(dtype)
        bias_q = q_bias.to(dtype) if q_bias is not None else None
        k_weight = kv_weight[:c].to(dtype).view(h, d, c)  # output channel g*D + e -> (head g, e, input c)
        v_weight = kv_weight[c:].to(dtype).view(h, d, c)
        v_bias = kv_bias[c:].to(dtype).view(h, d) if kv_bias is not None else None
        query = torch.empty(b, n, c, dtype=dtype, device=trajectories.device)
        weights = torch.empty(b, n, h, t, dtype=torch.promote_types(dtype, torch.float32),
                              device=trajectories.device)
        pooled = torch.empty(b, n, h, d, dtype=dtype, device=trajectories.device)
        device_type = trajectories.device.type
        no_autocast = (torch.autocast(device_type, enabled=False) if torch.amp.is_autocast_available(device_type)
                       else contextlib.nullcontext())
        with no_autocast:  # dtypes are chosen explicitly here
            for start, stop in _chunks(n, h, c):
                tokens = _tokens(trajectories, start, stop)  # (B, n, T, C)
                query[:, start:stop] = F.linear(_reference_tokens(trajectories, start, stop, s), weights_q, bias_q)
                # W_k^T q~ per head: (B, n, H, D) x (H, D, C) -> (B, n, H, C); the key bias cancels
                q_in_tokens = torch.einsum("bnhd,hdc->bnhc", query[:, start:stop].view(b, -1, h, d), k_weight)
                scores = q_in_tokens @ tokens.transpose(-2, -1)  # (B, n, H, T)
                w = torch.softmax(scores.to(weights.dtype) * head_scale(d), dim=-1)
                weights[:, start:stop] = w
                w = w.to(dtype)
                if original_temporal_values:  # head g pools its own channels of y~
                    pooled[:, start:stop] = torch.einsum("bnht,bnthd->bnhd", w, tokens.view(b, -1, t, h, d))
                else:  # W_v after pooling: (B, n, H, T) x (B, n, T, C) -> (B, n, H, C) -> (B, n, H, D)
                    pooled[:, start:stop] = torch.einsum("bnhc,hdc->bnhd", w @ tokens, v_weight)
        if v_bias is not None and not original_temporal_values:
            pooled += v_bias
        ctx.save_for_backward(trajectories, q_weight, q_bias, kv_weight, kv_bias, query, weights)
        ctx.original_temporal_values = original_temporal_values
        return pooled.view(b, n, c)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pooled):
        trajectories, q_weight, q_bias, kv_weight, kv_bias, query, weights = ctx.saved_tensors
        original = ctx.original_temporal_values
        b, h, t, n, d = trajectories.shape
        c, s = h * d, n // t
        dtype = trajectories.dtype
        acc = torch.promote_types(q_weight.dtype, torch.float32)  # weight gradients accumulate here
        k_weight = kv_weight[:c].to(dtype).view(h, d, c)
        v_weight = kv_weight[c:].to(dtype).view(h, d, c)
        weights_q = q_weight.to(dtype)
        grad_out = grad_pooled.to(dtype).reshape(b, n, h, d)
        grad_traj = torch.empty_like(trajectories)  # same strides: the first stage needs no copy
        grad_q_weight = torch.zeros(c, c, dtype=acc, device=q_weight.device)
        grad_k_weight = torch.zeros(h, d, c, dtype=acc, device=q_weight.device)
        grad_v_weight = torch.zeros(h, d, c, dtype=acc, device=q_weight.device)
        grad_query_sum = torch.zeros(c, dtype=acc, device=q_weight.device)
        frames = torch.arange(n, device=trajectories.device) // s
        for start, stop in _chunks(n, h, c):
            tokens = _tokens(trajectories, start, stop)  # (B, n, T, C)
            w = weights[:, start:stop].to(dtype)  # (B, n, H, T)
            g_out = grad_out[:, start:stop]  # (B, n, H, D)
            if original:
                grad_w = torch.einsum("bnhd,bnthd->bnht", g_out, tokens.view(b, -1, t, h, d))
                grad_tokens = torch.einsum("bnht,bnhd->bnthd", w, g_out).reshape(b, -1, t, c)
            else:
                grad_v_weight += torch.einsum("bnhd,bnhc->hdc", g_out, w @ tokens).to(acc)
                grad_mixed = torch.einsum("bnhd,hdc->bnhc", g_out, v_weight)  # (B, n, H, C)
                grad_w = grad_mixed @ tokens.transpose(-2, -1)  # (B, n, H, T)
                grad_tokens = w.transpose(-2, -1) @ grad_mixed  # (B, n, T, C)
            # softmax backward, then the 1/sqrt(D) scale
            w32 = weights[:, start:stop]
            grad_w = grad_w.to(w32.dtype)
            grad_scores = (w32 * (grad_w - (grad_w * w32).sum(-1, keepdim=True)) * head_scale(d)).to(dtype)
            q_chunk = query[:, start:stop].view(b, -1, h, d)
            q_in_tokens = torch.einsum("bnhd,hdc->bnhc", q_chunk, k_weight)  # recomputed, not stored
            grad_q_in_tokens = grad_scores @ tokens  # (B, n, H, T) x (B, n, T, C) -> (B, n, H, C)
            grad_tokens = grad_tokens + grad_scores.transpose(-2, -1) @ q_in_tokens  # (B, n, T, C)
            grad_k_weight += torch.einsum("bnhd,bnhc->hdc", q_chunk, grad_q_in_tokens).to(acc)
            grad_query = torch.einsum("bnhc,hdc->bnhd", grad_q_in_tokens, k_weight).reshape(b, -1, c)
            reference = _reference_tokens(trajectories, start, stop, s)  # (B, n, C)
            grad_q_weight += (grad_query.flatten(0, 1).T @ reference.flatten(0, 1)).to(acc)
            grad_query_sum += grad_query.sum((0, 1)).to(acc)
            grad_reference = grad_query @ weights_q  # (B, n, C)
            # back to the trajectory layout: (B, n, T, H, D) -> (B, H, T, n, D)
            grad_traj[:, :, :, start:stop] = grad_tokens.view(b, -1, t, h, d).permute(0, 3, 2, 1, 4)
            index = torch.arange(start, stop, device=trajectories.device)
            grad_traj[:, :, frames[start:stop], index] += grad_reference.view(b, -1, h, d).transpose(1, 2)
        grad_kv_weight = torch.cat([grad_k_weight.view(c, c), grad_v_weight.view(c, c)]).to(kv_weight.dtype)
        grad_kv_bias = None
        if kv_bias is not None:
            grad_v_bias = torch.zeros(c, dtype=kv_bias.dtype, device=kv_bias.device) if original else (
                grad_out.sum((0, 1)).reshape(c).to(kv_bias.dtype))
            grad_kv_bias = torch.cat([torch.zeros_like(grad_v_bias), grad_v_bias])
        grad_q_bias = grad_query_sum.to(q_bias.dtype) if q_bias is not None else None
        return grad_traj, grad_q_weight.to(q_weight.dtype), grad_q_bias, grad_kv_weight, grad_kv_bias, None


def _tokens(trajectories: Tensor, start: int, stop: int) -> Tensor:
    """Trajectory tokens of queries [start, stop), heads merged: (B, H, T, N, D) -> (B, n, T, H*D)."""
    b, h, t, _, d = trajectories.shape
    return trajectories[:, :, :, start:stop].permute(0, 3, 2, 1, 4).reshape(b, stop - start, t, h * d)


def _reference_tokens(trajectories: Tensor, start: int, stop: int, per_frame: int) -> Tensor:
    """Each query's trajectory token at its own frame t = i // S, for queries [start, stop): (B, n, H*D)."""
    b, h, _, _, d = trajectories.shape
    index = torch.arange(start, stop, device=trajectories.device)
    # advanced indexing over (frame, query) pairs: (B, H, n, D) -> (B, n, H, D)
    return trajectories[:, :, index // per_frame, index].transpose(1, 2).reshape(b, stop - start, h * d)


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
    b, h, _, d = q.shape
    cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # (B, H, 1, D)
    trajectories = frame_attention(q[:, :, 1:], k[:, :, 1:], v[:, :, 1:], num_frames)  # (B, H, T, TS, D)
    if TemporalPooling(temporal_pooling) is TemporalPooling.AVERAGE:
        # (B, H, T, N, D) -> (B, N, H, D) -> (B, N, C)
        pooled = trajectories.mean(2).transpose(1, 2).reshape(b, -1, h * d)
    else:
        if projections is None:
            raise ValueError("temporal attention pooling needs the proj_q / proj_kv weights")
        pooled = temporal_attention(trajectories, projections, original_temporal_values)
    return torch.cat([cls_out.transpose(1, 2).reshape(b, 1, h * d), pooled], dim=1)
