"""Trajectory-attention maps of one query point (the paper's Fig. 4), and pictures of them.

``attention_maps`` reads the centred test view of a video as the checkpoint expects it (its sampling, frame count,
sampling rate, crop and channel order; the first clip of its test views) and returns the eq. 4 weights that the
query point's token pays to the patches of every token frame in one layer: a softmax over each frame's patches,
per head. The frames are drawn in RGB whatever the model's channel order. The writers draw them over the frames:
a PNG grid, an animated GIF, and one self-contained HTML page (both images embedded as data URIs, no external
resources).

Coordinates: a point ``(x, y)`` is in pixels of the model's input crop (0 .. crop_size - 1: the video's short side
is resized to crop_size and the centre crop taken, as in testing); ``frame`` is an input frame of the clip
(0 .. num_frames - 1). The query token is ``(frame // tubelet_size, y // patch_size, x // patch_size)``; input frame
i is drawn with the map of token frame ``i // tubelet_size``.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from motionformer.data.build import build_sampler
from motionformer.data.decoding import open_video
from motionformer.data.transforms import frames_to_video, short_side_resize, spatial_crops, test_transform
from motionformer.engine.build import model_from_weights
from motionformer.engine.distributed import resolve_device
from motionformer.inference import predict_views, top_classes
from motionformer.io import atomic_write
from motionformer.models.motionformer import AttentionType

log = logging.getLogger(__name__)

__all__ = ["AttentionMaps", "animation_gif", "attention_maps", "colour_scale", "grid_png", "html_page",
           "overlay_frames", "parse_point", "save_attention_pictures"]

# Heat colours from low to high attention (an inferno-like ramp), RGB 0..255, evenly spaced over [0, 1].
_RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32)
_QUERY_COLOUR = (0, 255, 255)
_BACKGROUND = (32, 32, 32)
_TEXT = (235, 235, 235)
_LABEL_HEIGHT = 16  # pixels of the caption strip above each panel
_GAP = 4  # pixels between panels
_SCALE_HEIGHT = 28  # pixels of the colour scale under the panels: a 10-pixel ramp over its labels


@dataclasses.dataclass(frozen=True)
class AttentionMaps:
    """One query's attention maps with the clip they were computed on; built by ``attention_maps``.

    ``frames``: uint8 (num_frames, crop, crop, 3), the clip as the model sees it (before normalisation).
    ``maps``: float32 (heads, token_frames, h, w), the eq. 4 weights of the query token in ``layer``; each token
    frame's h x w weights sum to 1 for every head. ``head`` is the head drawn, None for the mean over heads.
    ``prediction``: {head name: [(class, score), ...]} for this view ("" for single-head models).
    """

    video: Path
    checkpoint: Path
    frames: Tensor
    maps: Tensor
    point: tuple[int, int]
    frame: int
    token: tuple[int, int, int]
    layer: int
    head: int | None
    tubelet_size: int
    patch_size: int
    prediction: dict[str, list[tuple[str, float]]]

    @property
    def heatmap(self) -> Tensor:
        """(token_frames, h, w): the drawn head's maps, or the mean over heads (also summing to 1 per frame)."""
        return self.maps.mean(0) if self.head is None else self.maps[self.head]

    @property
    def head_label(self) -> str:
        """``"head 1"`` or ``"mean of 12 heads"``."""
        return f"mean of {self.maps.shape[0]} heads" if self.head is None else f"head {self.head}"


def parse_point(text: str) -> tuple[int, int, int | None]:
    """``"X,Y"`` or ``"X,Y,T"`` (integers) -> (x, y, frame or None)."""
    parts = [part.strip() for part in text.split(",")]
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (2, 3):
        raise ValueError(f"point must be X,Y or X,Y,T (integers: pixels of the input crop and an input frame), "
                         f"got {text!r}")
    return values[0], values[1], values[2] if len(values) == 3 else None


def attention_maps(video: str | os.PathLike, checkpoint: str | os.PathLike, point: tuple[int, int], *,
                   frame: int | None = None, layer: int = -1, head: int | None = None, device: str = "auto",
                   top_k: int = 5) -> AttentionMaps:
    """The trajectory attention that the token at ``point`` of input frame ``frame`` (default: the middle frame)
    pays to every frame in block ``layer`` (negative: from the end), with the top-``top_k`` prediction of the view.

    ``head`` chooses the head drawn (None: the mean over heads). Raises FileNotFoundError for a missing video or
    checkpoint and ValueError, naming the value, for a point outside the crop, a frame, layer or head out of range,
    a model without trajectory attention, or a video that cannot be decoded.
    """
    video = Path(video)
    if not video.exists():
        raise FileNotFoundError(f"video not found: {video}")
    model, class_names, spec = model_from_weights(checkpoint)
    if model.attention is not AttentionType.TRAJECTORY:
        raise ValueError(f"{checkpoint}: attention maps need a trajectory-attention model, this one uses "
                         f"{model.attention.value} attention")
    crop, num_frames = spec.crop_size, spec.num_frames
    x, y = point
    if not (0 <= x < crop and 0 <= y < crop):
        raise ValueError(f"point ({x}, {y}) is outside the {crop}x{crop} input crop: x and y must be in 0..{crop - 1}")
    frame = num_frames // 2 if frame is None else frame
    if not 0 <= frame < num_frames:
        raise ValueError(f"frame {frame} is outside the clip: the model reads {num_frames} frames, 0..{num_frames - 1}")
    depth = len(model.blocks)
    if not -depth <= layer < depth:
        raise ValueError(f"layer {layer} is out of range: the model has {depth} blocks, 0..{depth - 1} "
                         f"(or -{depth}..-1 from the end)")
    layer %= depth
    num_heads = model.blocks[layer].attn.num_heads
    if head is not None and not 0 <= head < num_heads:
        raise ValueError(f"head {head} is out of range: layer {layer} has {num_heads} heads, 0..{num_heads - 1}")

    sampler = build_sampler(spec.sampling, training=False, num_frames=num_frames, sampling_rate=spec.sampling_rate,
                            num_clips=1)
    with open_video(video) as reader:
        raw = sampler(reader)  # (F, H, W, 3) uint8 RGB
    resized = short_side_resize(frames_to_video(raw).float(), crop)  # as the model's input is, then rounded
    shown = spatial_crops(resized, crop, 1)[0].round().to(torch.uint8)  # (F, 3, crop, crop), drawn in RGB
    frames = shown.as_subclass(Tensor).permute(0, 2, 3, 1).contiguous()  # (F, crop, crop, 3)
    clip = test_transform(crop_size=crop, num_crops=1, mean=spec.mean, std=spec.std,
                          channel_order=spec.channel_order)(raw)  # (1, 3, F, crop, crop)
    token = (frame // model.tubelet_size, y // model.patch_size, x // model.patch_size)
    target = resolve_device(device)
    model, clip = model.to(target).eval(), clip.to(target)
    with torch.no_grad():
        maps = model.trajectory_attention_maps(clip, token, layers=[layer])[layer]
    log.info("query (x=%d, y=%d, frame %d) -> token (t=%d, row=%d, col=%d), layer %d", x, y, frame, *token, layer)
    prediction = top_classes(predict_views(model, clip[None]), class_names, top_k)[0]
    return AttentionMaps(video=video, checkpoint=Path(checkpoint), frames=frames,
                         maps=maps[0].float().cpu(), point=(x, y), frame=frame, token=token, layer=layer, head=head,
                         tubelet_size=model.tubelet_size, patch_size=model.patch_size, prediction=prediction)


def _colour(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1], any shape -> float RGB (..., 3) in 0..255 along ``_RAMP``."""
    stops = np.linspace(0.0, 1.0, len(_RAMP))
    return np.stack([np.interp(values, stops, _RAMP[:, channel]) for channel in range(3)], axis=-1)


def overlay_frames(result: AttentionMaps, *, min_size: int = 192, alpha: float = 0.7) -> list[Image.Image]:
    """One RGB panel per input frame: a caption strip over the frame, upscaled (nearest) by the smallest integer
    factor that makes it at least ``min_size`` pixels, with its token frame's heat map blended in (opacity
    ``alpha`` x the weight, weights scaled by their maximum over all frames; one block per token) and the query
    point ringed on its own frame."""
    crop = result.frames.shape[1]
    scale = max(1, math.ceil(min_size / crop))
    size = crop * scale
    heat = result.heatmap  # (token_frames, h, w)
    heat = (heat / heat.max().clamp_min(1e-12)).numpy()
    block = result.patch_size * scale
    panels = []
    for index, frame in enumerate(result.frames.numpy()):
        weights = heat[index // result.tubelet_size].repeat(block, axis=0).repeat(block, axis=1)  # (size, size)
        base = np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.NEAREST), dtype=np.float32)
        opacity = alpha * weights[..., None]
        blended = (1.0 - opacity) * base + opacity * _colour(weights)
        panel = Image.new("RGB", (size, size + _LABEL_HEIGHT), _BACKGROUND)
        panel.paste(Image.fromarray(blended.round().clip(0, 255).astype(np.uint8)), (0, _LABEL_HEIGHT))
        draw = ImageDraw.Draw(panel)
        caption = f"frame {index}  (tokens t={index // result.tubelet_size})"
        if index == result.frame:
            caption += "  query"
            centre_x = (result.point[0] + 0.5) * scale
            centre_y = (result.point[1] + 0.5) * scale + _LABEL_HEIGHT
            radius = max(5.0, size / 24)
            draw.ellipse([centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius],
                         outline=_QUERY_COLOUR, width=2)
            draw.ellipse([centre_x - 1.5, centre_y - 1.5, centre_x + 1.5, centre_y + 1.5], fill=_QUERY_COLOUR)
        draw.text((4, 2), caption, fill=_TEXT)
        panels.append(panel)
    return panels


def colour_scale(width: int, peak: float) -> Image.Image:
    """A strip ``width`` pixels wide: the heat colours from weight 0 to ``peak`` (the largest weight drawn, which
    ``overlay_frames`` blends at opacity ``alpha``), labelled with both ends."""
    strip = Image.new("RGB", (width, _SCALE_HEIGHT), _BACKGROUND)
    length = width - 2 * _GAP
    ramp = _colour(np.linspace(0.0, 1.0, length))  # (length, 3)
    bar = np.broadcast_to(ramp[None], (10, length, 3)).round().astype(np.uint8)
    strip.paste(Image.fromarray(np.ascontiguousarray(bar)), (_GAP, 2))
    draw = ImageDraw.Draw(strip)
    top = 14
    draw.text((_GAP, top), "0", fill=_TEXT)
    label, peak_label = "attention weight", f"{peak:.3f}"
    draw.text(((width - draw.textlength(label)) / 2, top), label, fill=_TEXT)
    draw.text((width - _GAP - draw.textlength(peak_label), top), peak_label, fill=_TEXT)
    return strip


def _with_scale(panel: Image.Image, peak: float) -> Image.Image:
    """``panel`` with ``colour_scale`` under it."""
    framed = Image.new("RGB", (panel.width, panel.height + _SCALE_HEIGHT), _BACKGROUND)
    framed.paste(panel, (0, 0))
    framed.paste(colour_scale(panel.width, peak), (0, panel.height))
    return framed


def _title(result: AttentionMaps) -> str:
    x, y = result.point
    return (f"{result.video.name}: query (x={x}, y={y}) in frame {result.frame}, layer {result.layer}, "
            f"{result.head_label}")


def grid_png(result: AttentionMaps, *, min_size: int = 192) -> bytes:
    """The overlays of ``overlay_frames`` in a grid (4 columns up to 8 frames, else 8) under a title line, over
    ``colour_scale``: PNG."""
    panels = overlay_frames(result, min_size=min_size)
    columns = min(len(panels), 4 if len(panels) <= 8 else 8)
    rows = math.ceil(len(panels) / columns)
    width, height = panels[0].size
    title_height = _LABEL_HEIGHT + _GAP
    grid = Image.new("RGB", (columns * width + (columns + 1) * _GAP, title_height + rows * (height + _GAP) + _GAP),
                     _BACKGROUND)
    ImageDraw.Draw(grid).text((_GAP, _GAP + 2), _title(result), fill=_TEXT)
    for index, panel in enumerate(panels):
        row, column = divmod(index, columns)
        grid.paste(panel, (_GAP + column * (width + _GAP), title_height + _GAP + row * (height + _GAP)))
    buffer = io.BytesIO()
    _with_scale(grid, float(result.heatmap.max())).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def animation_gif(result: AttentionMaps, *, min_size: int = 192, frame_ms: int = 300) -> bytes:
    """The overlays of ``overlay_frames``, each over ``colour_scale``, as an endlessly looping GIF, ``frame_ms``
    milliseconds per frame."""
    peak = float(result.heatmap.max())
    panels = [_with_scale(panel, peak) for panel in overlay_frames(result, min_size=min_size)]
    buffer = io.BytesIO()
    panels[0].save(buffer, format="GIF", save_all=True, append_images=panels[1:], duration=frame_ms, loop=0)
    return buffer.getvalue()


_PAGE_STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
th { text-align: left; padding-right: 1em; vertical-align: top; }
img { image-rendering: pixelated; max-width: 100%; }
.score { color: #666; }
</style>"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def html_page(result: AttentionMaps, png: bytes, gif: bytes) -> str:
    """A self-contained page: the query, layer and head, the prediction, the grid ``png`` and the ``gif``.

    On load, its script records on ``<body>`` how many images there are (``data-images-total``) and how many
    decoded (``data-images-rendered``: complete with naturalWidth > 0).
    """
    x, y = result.point
    t, row, col = result.token
    facts = [
        ("video", str(result.video)),
        ("checkpoint", str(result.checkpoint)),
        ("query point", f"x={x}, y={y} in input frame {result.frame} (pixels of the "
                        f"{result.frames.shape[2]}x{result.frames.shape[1]} input crop)"),
        ("query token", f"t={t}, row={row}, col={col} ({result.tubelet_size} frames x "
                        f"{result.patch_size}x{result.patch_size} pixels per token)"),
        ("layer", f"{result.layer} (block {result.layer + 1} of the network)"),
        ("head", result.head_label),
    ]
    rows = "\n".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>" for name, value in facts)
    predictions = []
    for head, ranked in result.prediction.items():
        items = "".join(f"<li>{html.escape(name)} <span class=\"score\">{score:.3f}</span></li>"
                        for name, score in ranked)
        heading = f"<h3>{html.escape(head)}</h3>" if head else ""
        predictions.append(f"{heading}<ol>{items}</ol>")
    title = html.escape(f"Trajectory attention: {result.video.name}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
{_PAGE_STYLE}
</head>
<body>
<h1>{title}</h1>
<p>The attention that the query token pays to every frame (eq. 4 of Patrick et al., 2021: a softmax over each
frame's patches). Brighter is more attention; the colour scale under the pictures runs from 0 to the largest
weight over all frames.</p>
<table>
{rows}
</table>
<h2>Prediction for this view</h2>
{"".join(predictions)}
<h2>All frames</h2>
<img id="grid" alt="attention over every frame" src="{_data_uri(png, "image/png")}">
<h2>Animation</h2>
<img id="animation" alt="attention, animated" src="{_data_uri(gif, "image/gif")}">
<script>
window.addEventListener("load", () => {{
  const images = Array.from(document.images);
  document.body.dataset.imagesTotal = String(images.length);
  const rendered = images.filter((image) => image.complete && image.naturalWidth > 0);
  document.body.dataset.imagesRendered = String(rendered.length);
}});
</script>
</body>
</html>
"""


def save_attention_pictures(result: AttentionMaps, output_dir: str | os.PathLike, *, min_size: int = 192
                            ) -> list[Path]:
    """Write ``VIDEO_attention.png`` (grid), ``.gif`` and ``.html`` to ``output_dir`` (created if needed), each
    through a temporary file and a rename; returns their paths."""
    output = Path(output_dir)
    stem = f"{result.video.stem}_attention"
    png, gif = grid_png(result, min_size=min_size), animation_gif(result, min_size=min_size)
    page = html_page(result, png, gif)
    paths = [output / f"{stem}.png", output / f"{stem}.gif", output / f"{stem}.html"]
    for path, data in zip(paths, (png, gif, page.encode("utf-8")), strict=True):
        atomic_write(path, lambda temp, data=data: Path(temp).write_bytes(data))
    log.info("wrote %s", ", ".join(str(path) for path in paths))
    return paths
