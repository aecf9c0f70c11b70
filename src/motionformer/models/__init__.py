"""The Motionformer network, its named variants and weight loading."""

from motionformer.models.motionformer import AttentionType, Motionformer, PosEmbed, count_parameters
from motionformer.models.registry import create_model, list_models, model_defaults
from motionformer.models.weights import (
    LoadReport,
    WeightsInfo,
    convert_checkpoint,
    from_checkpoint,
    init_from_image_vit,
    save_model,
)

__all__ = ["AttentionType", "LoadReport", "Motionformer", "PosEmbed", "WeightsInfo", "convert_checkpoint",
           "count_parameters", "create_model", "from_checkpoint", "init_from_image_vit", "list_models",
           "model_defaults", "save_model"]
