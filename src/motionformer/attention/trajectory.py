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
    # Frames folded into the head dim, since fused CPU kernels take 4-D inputs only:
    # keys/values (B, H, T*S, D) -> (B, H*T, S, D); queries repeated per frame (B, H*T, N, D).
    k_frames = k.reshape(b, h * num_frames, s, d)
    v_frames = v.reshape(b, h * num_frames, s, d)
    q_frames = q.unsqueeze(2).expand(b, h, num_frames, n, d).reshape(b, h * num_frames, n, d)
    return F.scaled_dot_product_attention(q_frames, k_frames, v_frames).view(b, h, num_frames, n, d)


def space_time_frame_attention(q: Tensor, k: Tensor, v: Tensor, num_frames: int) -> Tensor:
    """The Norm_ST ablation of eq. 4: one softmax over all T*S keys, then split by key frame.

    Shapes as ``exact_frame_attention``. Summed over frames it equals joint attention. This ablation
    stores the full (T*S) x (T*S) attention; it is kept simple rather than fast.
    """
    n, d = q.shape[-2:]
    s = n // num_frames
    attn = torch.softmax((q @ k.transpose(-2, -1)) * head_scale(d), dim=-1)  # (B, H, N, N)
    # (B, H, N, T, S) x (B, H, T, S, D) -> (B, H, T, N, D)
    return torch.einsum("bhnts,bhtsd->bhtnd", attn.unflatten(-1, (num_frames, s)),
                        v.unflatten(2, (num_frames, s)))


def reference_frame_tokens(trajectories: Tensor) -> Tensor:
    """The trajectory token of each query's own frame: (B, H, T, T*S, D) -> (B, T*S, H*D).

    Query i = t*S + s has reference frame t, so this is the diagonal over (key frame, query frame).
    """
    b, h, t, n, d = trajectories.shape
    s = n // t
    # (B, H, T', T, S, D) -> diagonal over T' == T -> (B, H, S, D, T)
    diag = trajectories.unflatten(3, (t, s)).diagonal(dim1=2, dim2=3)
    # (B, H, S, D, T) -> (B, T, S, H, D) -> (B, T*S, H*D)
    return diag.permute(0, 4, 2, 1, 3).reshape(b, n, h * d)


def temporal_attention(
    trajectories: Tensor, projections: TemporalProjections, original_temporal_values: bool = False
) -> Tensor:
    """Eq. 5-6 with the projections moved to where they cost least (see the module docstring).

    trajectories: (B, H, T, T*S, D). Returns the pooled tokens (B, T*S, H*D), heads merged.
    With ``original_temporal_values`` the pooled values are the trajectory tokens themselves
    (v = y~, as in the released checkpoints) and the value half of ``proj_kv`` is unused.
    """
    b, h, t, n, d = trajectories.shape
    c = h * d
    scale = head_scale(d)
    q_weight, q_bias, kv_weight, kv_bias = projections
    k_weight = kv_weight[:c].view(h, d, c)  # output channel g*D + e -> (head g, e, input channel)
    k_bias = kv_bias[:c].view(h, d) if kv_bias is not None else None

    query = F.linear(reference_frame_tokens(trajectories), q_weight, q_bias).view(b, n, h, d)
    # trajectory tokens per query: (B, H, T, N, D) -> (B, N, T, H, D) -> (B, N, T, C)
    tokens = trajectories.permute(0, 3, 2, 1, 4).reshape(b, n, t, c)
    # W_k^T q~ per head: (B, N, H, D) x (H, D, C) -> (B, N, H, C)
    query_in_tokens = torch.einsum("bnhd,hdc->bnhc", query, k_weight)
    scores = query_in_tokens @ tokens.transpose(-2, -1)  # (B, N, H, C) x (B, N, C, T) -> (B, N, H, T)
    if k_bias is not None:
        # <q~, b_k> is the same for every t' and cancels in the softmax; kept so the graph matches eq. 5.
        scores = scores + (query * k_bias).sum(-1, keepdim=True)
    weights = torch.softmax(scores * scale, dim=-1)  # (B, N, H, T)

    if original_temporal_values:
        # head g pools its own channels of y~: (B, N, H, T) x (B, N, T, H, D) -> (B, N, H, D)
        pooled = torch.einsum("bnht,bnthd->bnhd", weights, tokens.view(b, n, t, h, d))
        return pooled.reshape(b, n, c)
    mixed = weights @ tokens  # (B, N, H, T) x (B, N, T, C) -> (B, N, H, C)
    v_weight = kv_weight[c:].view(h, d, c)
    pooled = torch.einsum("bnhc,hdc->bnhd", mixed, v_weight)  # W_v per head after pooling
    if kv_bias is not None:
        pooled = pooled + kv_bias[c:].view(h, d)
    return pooled.reshape(b, n, c)


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
