"""Looking inside trained models: the trajectory attention of a query point (the paper's Fig. 4)."""

from motionformer.analysis.attention_maps import (
    AttentionMaps,
    animation_gif,
    attention_maps,
    colour_scale,
    grid_png,
    html_page,
    overlay_frames,
    parse_point,
    save_attention_pictures,
)

__all__ = ["AttentionMaps", "animation_gif", "attention_maps", "colour_scale", "grid_png", "html_page",
           "overlay_frames", "parse_point", "save_attention_pictures"]
