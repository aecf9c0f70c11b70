"""The Motionformer network, its named variants, what its weights expect, and weight loading."""

from motionformer.layers import TrajectoryOptions
from motionformer.models.image_init import LoadReport, init_from_image_vit
from motionformer.models.motionformer import AttentionType, Motionformer, PosEmbed, count_parameters, split_heads
from motionformer.models.registry import create_model, list_models, model_arguments, model_defaults
from motionformer.models.spec import InputSpec
from motionformer.models.weights import WeightsInfo, convert_checkpoint, from_checkpoint, save_model

__all__ = ["AttentionType", "InputSpec", "LoadReport", "Motionformer", "PosEmbed", "TrajectoryOptions", "WeightsInfo",
           "convert_checkpoint", "count_parameters", "create_model", "from_checkpoint", "init_from_image_vit",
           "list_models", "model_arguments", "model_defaults", "save_model", "split_heads"]
