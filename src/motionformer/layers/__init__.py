"""nn.Modules that own projections and call ``motionformer.attention``."""

from motionformer.layers.attention import JointAttention, SpaceAttention, TimeAttention, TrajectoryAttention
from motionformer.layers.block import Block
from motionformer.layers.options import Approximation, TrajectoryOptions

__all__ = ["Approximation", "Block", "JointAttention", "SpaceAttention", "TimeAttention", "TrajectoryAttention",
           "TrajectoryOptions"]
