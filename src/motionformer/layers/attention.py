"""Attention modules: they own the projections (named as in the released checkpoints) and call
the pure functions of ``motionformer.attention``.

Input and output: (B, 1 + T*S, C), the class token first, then patch tokens frame-major.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motionformer.attention import (
    FrameAttention,
    Normalization,
    TemporalPooling,
    TemporalProjections,
    exact_frame_attention,
    joint_attention,
    nystrom_frame_attention,
    orthoformer_frame_attention,
    orthogonal_random_features,
    performer_frame_attention,
    space_attention,
    space_time_frame_attention,
    time_attention,
    trajectory_attention,
)
from motionformer.attention.common import split_frames
from motionformer.attention.reference import frame_attention_reference, trajectory_attention_reference
from motionformer.layers.options import Approximation, TrajectoryOptions


def _check_heads(dim: int, num_heads: int) -> int:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"dim = {dim} is not divisible by num_heads = {num_heads}")
    return dim // num_heads


class _HeadsAttention(nn.Module):
    """``qkv`` (C -> 3C) and ``proj`` (C -> C) around an attention function of (q, k, v)."""

    def __init__(self, dim: int, num_heads: int = 12, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = _check_heads(dim, num_heads)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, N, C) -> q, k, v: (B, H, N, D) each, views of one (B, N, 3, H, D) projection.

        ``unbind`` over the q/k/v axis: the backward stacks the three gradients straight into the projection's
        layout, one operation where indexing would take six.
        """
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(2)  # (B, N, H, D) each
        return qkv[0].transpose(1, 2), qkv[1].transpose(1, 2), qkv[2].transpose(1, 2)

    def class_token(self, x: Tensor, num_frames: int) -> Tensor:
        """The class token's output alone: (B, 1 + T*S, C) -> (B, 1, C), the patch tokens' rows not computed.

        Its query attends over every token, keys of the class token and all patches, in each attention here
        (joint, trajectory with any approximation, space and time), so one computation serves all.
        """
        self._check_tokens(x, num_frames)
        c = x.shape[-1]
        weight, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(x[:, :1], weight[:c], None if bias is None else bias[:c])  # (B, 1, C)
        kv = F.linear(x, weight[c:], None if bias is None else bias[c:])  # (B, N, 2C)
        q = q.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, H, 1, D)
        k, v = kv.unflatten(-1, (2, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)  # (B, H, N, D) each
        return self.proj(joint_attention(q, k, v).transpose(1, 2).flatten(2))

    def _check_tokens(self, x: Tensor, num_frames: int) -> None:
        if x.dim() != 3:
            raise ValueError(f"expected tokens of shape (B, 1 + T*S, C), got {tuple(x.shape)}")
        split_frames(x.shape[1], num_frames)


class JointAttention(_HeadsAttention):
    """Joint space-time attention (eq. 2): every token attends over all tokens."""

    def forward(self, x: Tensor, num_frames: int = 1) -> Tensor:
        q, k, v = self._split_heads(x)
        out = joint_attention(q, k, v)  # (B, H, N, D)
        return self.proj(out.transpose(1, 2).flatten(2))


class TimeAttention(_HeadsAttention):
    """The time half of divided space-time attention (``timeattn`` in the released checkpoints)."""

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        self._check_tokens(x, num_frames)
        q, k, v = self._split_heads(x)
        return self.proj(time_attention(q, k, v, num_frames).transpose(1, 2).flatten(2))


class SpaceAttention(_HeadsAttention):
    """The space half of divided space-time attention (``attn`` in the released divided blocks)."""

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        self._check_tokens(x, num_frames)
        q, k, v = self._split_heads(x)
        return self.proj(space_attention(q, k, v, num_frames).transpose(1, 2).flatten(2))


class TrajectoryAttention(_HeadsAttention):
    """Trajectory attention (paper eq. 4-6) with ``qkv``, ``proj_q``, ``proj_kv`` and ``proj``.

    ``options`` say how it computes (see ``TrajectoryOptions``); option names given as keywords replace those of
    ``options`` (``TrajectoryAttention(64, 4, approx="orthoformer")``). ``self.options`` keeps what it was built
    with; ``reference`` may be switched later (``set_reference_attention``).
    """

    def __init__(self, dim: int, num_heads: int = 12, qkv_bias: bool = True, options: TrajectoryOptions | None = None,
                 **option_values: Any):
        super().__init__(dim, num_heads, qkv_bias)
        options = TrajectoryOptions.from_dict(option_values, options)
        self.options = options
        self.original_temporal_values = options.original_temporal_values
        self.temporal_pooling = options.temporal_pooling
        self.normalization = options.normalization
        self.approx = options.approx
        self.num_prototypes = options.num_prototypes
        self.reference = options.reference
        if self.temporal_pooling is TemporalPooling.ATTENTION:
            self.proj_q = nn.Linear(dim, dim, bias=qkv_bias)
            self.proj_kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        if self.approx is Approximation.PERFORMER:
            features = orthogonal_random_features(options.num_random_features, self.head_dim)
            self.register_buffer("random_features", features)
        self.prototype_selection = options.prototype_selection
        self.shared_prototypes = options.shared_prototypes
        self.prototype_source = options.prototype_source
        self.oversampling = options.oversampling
        self.pinv_iterations = options.pinv_iterations

    def frame_attention(self) -> FrameAttention:
        """The first-stage function this module uses: (q, k, v, num_frames) -> (B, H, T, T*S, D)."""
        if self.approx is Approximation.ORTHOFORMER:
            return partial(orthoformer_frame_attention, num_prototypes=self.num_prototypes,
                           shared=self.shared_prototypes, selection=self.prototype_selection,
                           source=self.prototype_source, oversampling=self.oversampling)
        if self.approx is Approximation.NYSTROM:
            return partial(nystrom_frame_attention, num_landmarks=self.num_prototypes,
                           iterations=self.pinv_iterations)
        if self.approx is Approximation.PERFORMER:
            return partial(performer_frame_attention, projection=self.random_features)
        if self.normalization is Normalization.SPACE_TIME:
            return space_time_frame_attention
        return frame_attention_reference if self.reference else exact_frame_attention

    def _projections(self) -> TemporalProjections | None:
        if self.temporal_pooling is TemporalPooling.AVERAGE:
            return None
        return TemporalProjections(self.proj_q.weight, self.proj_q.bias, self.proj_kv.weight, self.proj_kv.bias)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        """x: (B, 1 + T*S, C) with T = ``num_frames`` token frames. Returns (B, 1 + T*S, C)."""
        self._check_tokens(x, num_frames)
        q, k, v = self._split_heads(x)
        if self.reference:
            out = trajectory_attention_reference(
                q, k, v, num_frames, self._projections(), frame_attention=self.frame_attention(),
                average_over_time=self.temporal_pooling is TemporalPooling.AVERAGE,
                original_temporal_values=self.original_temporal_values)
        else:
            out = trajectory_attention(
                q, k, v, num_frames, self._projections(), frame_attention=self.frame_attention(),
                temporal_pooling=self.temporal_pooling, original_temporal_values=self.original_temporal_values)
        return self.proj(out)

    @torch.no_grad()
    def spatial_attention_map(self, x: Tensor, num_frames: int, query_index: int) -> Tensor:
        """Eq. 4 weights that patch token ``query_index`` (0-based among patches) pays to every frame.

        Returns (B, H, T, S): a softmax over S for each frame (exact attention, for pictures).
        """
        self._check_tokens(x, num_frames)
        q, k, _ = self._split_heads(x)
        s = (x.shape[1] - 1) // num_frames
        query = q[:, :, 1 + query_index]  # (B, H, D)
        keys = k[:, :, 1:].unflatten(2, (num_frames, s))  # (B, H, T, S, D)
        scores = torch.einsum("bhd,bhtsd->bhts", query, keys) * self.head_dim ** -0.5
        return torch.softmax(scores, dim=-1)
