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
    # (T, N, B*H, D)-major, as the fused kernels write it for queries laid out as ours: the temporal stage reads
    # it in place. A copy only where a kernel wrote another layout (the math kernel).
    out = out.transpose(1, 2).contiguous().transpose(1, 2)
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
    and the backward recomputes the (query, head, C) intermediates instead of storing them: only the
    trajectories (already kept by the first stage), the temporal queries and the temporal weights are
    saved. The trajectory tokens are read in place when the first stage wrote them frame-major, query
    next (as ``exact_frame_attention`` does), and copied chunk by chunk otherwise.
    """
    return _temporal_heads(trajectories, projections, original_temporal_values).flatten(2)


def _temporal_heads(trajectories: Tensor, projections: TemporalProjections, original_temporal_values: bool
                    ) -> Tensor:
    """``temporal_attention`` with the heads not yet merged: (B, T*S, H, D), possibly non-contiguous."""
    q_weight, q_bias, kv_weight, kv_bias = projections
    return _TemporalAttention.apply(trajectories, q_weight, q_bias, kv_weight, kv_bias,
                                    original_temporal_values)


# Elements of the largest intermediate of the temporal stage, (batch x queries, 2 x heads, channels) per chunk, on the
# CPU (16 MiB in float32). Queries are processed in chunks that keep every intermediate below the bound.
# Other devices take ACCELERATOR_CHUNK_FACTOR times more (256 MiB in float32), since a GPU step otherwise
# waits on the launches of many small chunks: ViT-B at 8 x 196 runs in one chunk up to batch 2.
CHUNK_ELEMENTS = 1 << 22
ACCELERATOR_CHUNK_FACTOR = 16


def _chunks(batch: int, num_queries: int, heads: int, channels: int, device: torch.device) -> list[slice]:
    """Query ranges whose (batch x chunk, 2 x heads, channels) intermediates hold at most the device's bound.

    Every device but the CPU takes the accelerator bound, the meta device included (launch counts model a GPU).
    While ``torch.export`` traces, the bound holds per clip instead, so the exported graph works for any batch.
    """
    budget = CHUNK_ELEMENTS * (1 if device.type == "cpu" else ACCELERATOR_CHUNK_FACTOR)
    per_query = 2 * heads * channels * (1 if torch.compiler.is_exporting() else batch)
    size = max(1, budget // per_query)
    return [slice(start, min(start + size, num_queries)) for start in range(0, num_queries, size)]


def _joined(parts: list[Tensor], dim: int) -> Tensor:
    """``torch.cat(parts, dim)``, without a copy for a single part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _rows(trajectories: Tensor, queries: slice) -> Tensor:
    """The trajectory tokens of ``queries``, heads merged: (B, H, T, N, D) -> (n*B, T, H*D), row (query, clip).

    A view when the trajectories lie (T, N, B, H, D)-major in memory, the layout of the fused attention kernels'
    output in ``exact_frame_attention``; a copy of the chunk otherwise.
    """
    _, h, t, _, d = trajectories.shape
    return trajectories[:, :, :, queries].permute(3, 0, 2, 1, 4).reshape(-1, t, h * d)


def _row_view(trajectories: Tensor, queries: slice) -> Tensor | None:
    """``_rows`` where it is a view (to write into), else None."""
    part = trajectories[:, :, :, queries].permute(3, 0, 2, 1, 4)  # (n, B, T, H, D)
    _, b, t, h, d = part.shape
    stride_n, stride_b, _, stride_h, stride_d = part.stride()
    if (b > 1 and stride_n != b * stride_b) or (h > 1 and stride_h != d * stride_d) or stride_d != 1:
        return None
    return part.reshape(-1, t, h * d)


def _writes_strided_rows(device: torch.device) -> bool:
    """Whether the backward's GEMMs write gradient rows straight into the strided trajectory layout on ``device``.

    Not on the CPU, where a GEMM into strided rows is slower than one into a fresh tensor plus a copy.
    """
    return device.type != "cpu"


def _write_rows(trajectories: Tensor, queries: slice, rows: Tensor) -> None:
    """Copy (n*B, T, C) ``rows`` into the queries ``queries`` of (B, H, T, N, D) ``trajectories``."""
    b, h, t, _, d = trajectories.shape
    trajectories[:, :, :, queries].permute(3, 0, 2, 1, 4).copy_(rows.view(-1, b, t, h, d))


def _diagonal(trajectories: Tensor) -> Tensor:
    """Each query's token at its own frame, as a view: (B, H, T, T*S, D) -> (T, S, B, H, D)."""
    t = trajectories.shape[2]
    # query t_q*S + s: (B, H, T_k, T_q, S, D); the diagonal t_q = t_k is (B, H, S, D, T)
    return trajectories.unflatten(3, (t, -1)).diagonal(dim1=2, dim2=3).permute(4, 2, 0, 1, 3)


def _own_frame(trajectories: Tensor) -> Tensor:
    """``_diagonal`` as (T, S*B, C), frame t holding its queries' rows: a view where the layout allows."""
    diagonal = _diagonal(trajectories)
    t, s, b, h, d = diagonal.shape
    return diagonal.reshape(t, s * b, h * d)


def _heads_first(rows: Tensor, heads: int) -> Tensor:
    """(r, H*D) -> (H, r, D), a view."""
    return rows.unflatten(-1, (heads, -1)).transpose(0, 1)


def _scaled_query(own: Tensor, weight: Tensor, bias: Tensor | None, scale: float) -> Tensor:
    """The temporal queries times 1/sqrt(D), scale * (W_q y~_own + b_q): (T, S*B, C) -> (N*B, C), one GEMM.

    The scale applies to the GEMM's accumulator, so a half-precision result cannot overflow where the unscaled
    product would.
    """
    weight_t = weight.t().expand(own.shape[0], -1, -1)
    if bias is None:
        return torch.baddbmm(own.new_empty(()), own, weight_t, beta=0, alpha=scale).flatten(0, 1)
    return torch.baddbmm(bias, own, weight_t, beta=scale, alpha=scale).flatten(0, 1)


class _TemporalAttention(torch.autograd.Function):
    """The temporal stage with a hand-written, chunked backward (see ``temporal_attention``)."""

    @staticmethod
    def forward(ctx, trajectories, q_weight, q_bias, kv_weight, kv_bias, original_temporal_values):
        b, h, _, n, d = trajectories.shape
        dtype, c = trajectories.dtype, h * d
        with full_precision(trajectories.device):  # dtypes are chosen explicitly here
            bias_q = q_bias.to(dtype) if q_bias is not None else None
            query = _scaled_query(_own_frame(trajectories), q_weight.to(dtype), bias_q, head_scale(d))  # (NB, C)
            k_weight, v_weight = kv_weight.to(dtype).view(2 * h, d, c).split(h)  # (H, D, C) each
            v_bias = None
            if kv_bias is not None and not original_temporal_values:
                v_bias = kv_bias[c:].to(dtype).view(h, 1, d)
            parts = [_forward_chunk(_rows(trajectories, chunk), query[chunk.start * b:chunk.stop * b], k_weight,
                                    v_weight, v_bias, original_temporal_values)
                     for chunk in _chunks(b, n, h, c, trajectories.device)]
        weights = _joined([w for w, _ in parts], dim=0)  # (NB, H, T), float32 or wider
        ctx.save_for_backward(trajectories, q_weight, q_bias, kv_weight, kv_bias, query, weights)
        ctx.original_temporal_values = original_temporal_values
        if original_temporal_values:  # (NB, H, D) -> (B, N, H, D), a view
            return _joined([p for _, p in parts], dim=0).unflatten(0, (n, b)).transpose(0, 1)
        # (H, NB, D) -> (B, N, H, D), a view
        return _joined([p for _, p in parts], dim=1).unflatten(1, (n, b)).permute(2, 1, 0, 3)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pooled):
        with full_precision(grad_pooled.device):  # dtypes are chosen explicitly here too
            return (*_temporal_backward(grad_pooled, *ctx.saved_tensors, ctx.original_temporal_values), None)


def _forward_chunk(tokens: Tensor, query: Tensor, k_weight: Tensor, v_weight: Tensor, v_bias: Tensor | None,
                   original: bool) -> tuple[Tensor, Tensor]:
    """Temporal weights (r, H, T) in float32 or wider and pooled tokens of the rows ``tokens`` (r, T, C).

    The pooled tokens are (H, r, D), or (r, H, D) for ``original`` values. ``v_bias``: (H, 1, D) or None.
    """
    h, d, _ = k_weight.shape
    # W_k^T q~ / sqrt(D) per head: (H, r, D) x (H, D, C) -> (H, r, C); then x (r, C, T) per row -> (r, H, T)
    scores = torch.bmm(torch.bmm(_heads_first(query, h), k_weight).transpose(0, 1), tokens.transpose(1, 2))
    w = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))
    wd = w.to(tokens.dtype)
    if original:  # head g pools its own channels of y~
        return w, torch.einsum("rht,rthd->rhd", wd, tokens.unflatten(-1, (h, d)))
    # W_v after pooling: (r, H, T) x (r, T, C) -> (r, H, C) -> (H, r, C) x (H, C, D) -> (H, r, D)
    mixed = torch.bmm(wd, tokens).transpose(0, 1)
    if v_bias is None:
        return w, torch.bmm(mixed, v_weight.transpose(1, 2))
    return w, torch.baddbmm(v_bias, mixed, v_weight.transpose(1, 2))


def _temporal_backward(grad_pooled: Tensor, trajectories: Tensor, q_weight: Tensor, q_bias: Tensor | None,
                       kv_weight: Tensor, kv_bias: Tensor | None, query: Tensor, weights: Tensor, original: bool
                       ) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor | None]:
    """Gradients of the trajectories, proj_q's weight and bias and proj_kv's weight and bias."""
    b, h, t, n, d = trajectories.shape
    c, dtype, scale = h * d, trajectories.dtype, head_scale(d)
    grad_out = grad_pooled.to(dtype)  # (B, N, H, D)
    grad_traj = torch.empty_like(trajectories)  # the same layout: rows are views of it where they are of the input
    in_place = _writes_strided_rows(trajectories.device)
    weight_heads = kv_weight.to(dtype).view(2 * h, d, c)  # [W_k; W_v] per head
    backward_chunk = _backward_chunk_original if original else _backward_chunk
    acc = torch.promote_types(q_weight.dtype, torch.float32)  # weight gradients accumulate here
    grad_query = grad_out.new_empty(n * b, c)  # of q~, unscaled
    grad_kv_weight = None
    for chunk in _chunks(b, n, h, c, trajectories.device):
        rows = slice(chunk.start * b, chunk.stop * b)
        target = _row_view(grad_traj, chunk) if in_place else None
        grad_rows, grad_query_heads, grad_weight = backward_chunk(
            _rows(trajectories, chunk), query[rows], weights[rows], grad_out[:, chunk], weight_heads, scale, target)
        if target is None:
            _write_rows(grad_traj, chunk, grad_rows)
        grad_query[rows].unflatten(1, (h, d)).transpose(0, 1).copy_(grad_query_heads)
        # summed chunk by chunk, so that at most one partial sum is alive
        grad_kv_weight = grad_weight.to(acc) if grad_kv_weight is None else grad_kv_weight.add_(grad_weight)
    # the query's own trajectory token: y~_own = the diagonal of the trajectories
    _diagonal(grad_traj).add_((grad_query @ q_weight.to(dtype)).view(t, -1, b, h, d))
    own = _own_frame(trajectories).reshape(n * b, c)
    grad_q_weight = (grad_query.T.to(acc) @ own.to(acc)).to(q_weight.dtype)
    grad_q_bias = grad_query.sum(0, dtype=acc).to(q_bias.dtype) if q_bias is not None else None
    grad_kv_weight = grad_kv_weight.view(-1, c)
    if original:  # the value half of proj_kv is unused: zero gradient
        grad_kv_weight = F.pad(grad_kv_weight, (0, 0, 0, c))
    grad_kv_weight = grad_kv_weight.to(kv_weight.dtype)
    grad_kv_bias = None
    if kv_bias is not None:  # the key bias cancels in the softmax: zero gradient, as for unused values
        grad_v_bias = grad_out.new_zeros(c) if original else grad_out.sum((0, 1), dtype=acc).view(c)
        grad_kv_bias = F.pad(grad_v_bias, (c, 0)).to(kv_bias.dtype)
    return grad_traj, grad_q_weight, grad_q_bias, grad_kv_weight, grad_kv_bias


def _backward_chunk(tokens: Tensor, query: Tensor, weights: Tensor, grad_out: Tensor, weight_heads: Tensor,
                    scale: float, out: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of the rows ``tokens`` (r, T, C): (of the tokens, written into ``out`` when given; of the unscaled
    temporal queries, (H, r, D); of ``proj_kv``'s weight per head, (2H, D, C)).

    Keys and values go through one GEMM each way: [q~/sqrt(D); grad out] (2H, r, D) against [W_k; W_v] gives
    [W_k^T q~/sqrt(D); grad of the pooled mixture] (2H, r, C), and [grad scores; weights] (r, 2H, T) against the
    tokens gives [grad of W_k^T q~/sqrt(D); the pooled mixture]. One (2H, r, C) intermediate is alive at a time.
    """
    h = weight_heads.shape[0] // 2
    # (H, B, n, D) each, rows n*B + b -> (2H, r, D)
    stacked = torch.cat([query.unflatten(0, (-1, grad_out.shape[0])).unflatten(-1, (h, -1)).permute(2, 0, 1, 3),
                         grad_out.permute(2, 1, 0, 3)]).flatten(1, 2)
    keys_and_values = torch.bmm(stacked, weight_heads)  # (2H, r, C)
    grad_w = torch.bmm(keys_and_values[h:].transpose(0, 1), tokens.transpose(1, 2))  # (r, H, T)
    grad_scores = torch._softmax_backward_data(grad_w.to(weights.dtype), weights, -1, weights.dtype)
    pair = torch.cat([grad_scores, weights], dim=1).to(tokens.dtype)  # (r, 2H, T)
    grad_tokens = torch.bmm(pair.transpose(1, 2), keys_and_values.transpose(0, 1), out=out)  # (r, T, C)
    del keys_and_values  # freed before the next (2H, r, C) intermediate
    grad_and_mixed = torch.bmm(pair, tokens).transpose(0, 1)  # (2H, r, C)
    grad_kv_weight = torch.bmm(stacked.transpose(1, 2), grad_and_mixed)  # (2H, D, C)
    grad_query = torch.baddbmm(stacked.new_empty(()), grad_and_mixed[:h], weight_heads[:h].transpose(1, 2),
                               beta=0, alpha=scale)  # (H, r, D)
    return grad_tokens, grad_query, grad_kv_weight


def _backward_chunk_original(tokens: Tensor, query: Tensor, weights: Tensor, grad_out: Tensor,
                             weight_heads: Tensor, scale: float, out: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """``_backward_chunk`` for pooled trajectory tokens (v = y~): the value half of the weight gets no gradient,
    and the last gradient is of W_k alone, (H, D, C)."""
    h, d = weight_heads.shape[0] // 2, weight_heads.shape[1]
    k_weight = weight_heads[:h]
    query_heads = _heads_first(query, h)  # (H, r, D)
    g_out = grad_out.transpose(0, 1).flatten(0, 1)  # (r, H, D)
    keys = torch.bmm(query_heads, k_weight).transpose(0, 1)  # (r, H, C)
    heads = tokens.unflatten(-1, (h, d))  # (r, T, H, D)
    grad_w = torch.einsum("rhd,rthd->rht", g_out, heads)
    grad_scores = torch._softmax_backward_data(grad_w.to(weights.dtype), weights, -1, weights.dtype)
    grad_scores = grad_scores.to(tokens.dtype)
    pooled_grad = torch.einsum("rht,rhd->rthd", weights.to(tokens.dtype), g_out).flatten(2)  # (r, T, C)
    grad_tokens = torch.baddbmm(pooled_grad, grad_scores.transpose(1, 2), keys, out=out)
    grad_keys = torch.bmm(grad_scores, tokens).transpose(0, 1)  # (H, r, C)
    grad_k_weight = torch.bmm(query_heads.transpose(1, 2), grad_keys)  # (H, D, C)
    grad_query = torch.baddbmm(query.new_empty(()), grad_keys, k_weight.transpose(1, 2), beta=0, alpha=scale)
    return grad_tokens, grad_query, grad_k_weight


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
