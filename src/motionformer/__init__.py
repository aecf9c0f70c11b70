"""motionformer: trajectory attention for video transformers (Motionformer, NeurIPS 2021)."""

from motionformer.models import create_model, from_checkpoint, init_from_image_vit, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "from_checkpoint", "init_from_image_vit", "list_models"]
