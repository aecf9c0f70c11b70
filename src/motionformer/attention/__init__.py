"""Attention as pure tensor functions: (q, k, v, ...) -> out. Modules owning weights are in ``layers``."""

from motionformer.attention.divided import space_attention, time_attention
from motionformer.attention.joint import joint_attention
from motionformer.attention.nystrom import iterative_pinv, nystrom_attention, nystrom_frame_attention
from motionformer.attention.orthoformer import (
    PrototypeSelection,
    PrototypeSource,
    greedy_orthogonal_indices,
    orthoformer_attention,
    orthoformer_frame_attention,
    select_prototypes,
)
from motionformer.attention.performer import (
    orthogonal_random_features,
    performer_attention,
    performer_frame_attention,
)
from motionformer.attention.trajectory import (
    FrameAttention,
    Normalization,
    TemporalPooling,
    TemporalProjections,
    exact_frame_attention,
    space_time_frame_attention,
    temporal_attention,
    trajectory_attention,
)

__all__ = [
    "FrameAttention",
    "Normalization",
    "PrototypeSelection",
    "PrototypeSource",
    "TemporalPooling",
    "TemporalProjections",
    "exact_frame_attention",
    "greedy_orthogonal_indices",
    "iterative_pinv",
    "joint_attention",
    "nystrom_attention",
    "nystrom_frame_attention",
    "orthoformer_attention",
    "orthoformer_frame_attention",
    "orthogonal_random_features",
    "performer_attention",
    "performer_frame_attention",
    "select_prototypes",
    "space_attention",
    "space_time_frame_attention",
    "temporal_attention",
    "time_attention",
    "trajectory_attention",
]
