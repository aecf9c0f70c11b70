"""nn.Modules that own projections and call ``motionformer.attention``."""

from motionformer.layers.attention import (
    Approximation,
    JointAttention,
    SpaceAttention,
    TimeAttention,
    TrajectoryAttention,
)
from motionformer.layers.block import Block

__all__ = ["Approximation", "Block", "JointAttention", "SpaceAttention", "TimeAttention", "TrajectoryAttention"]
