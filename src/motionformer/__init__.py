"""motionformer: trajectory attention for video transformers (Motionformer, NeurIPS 2021)."""

__version__ = "0.1.0"
