"""Image-ViT initialisation (2D -> 3D): start a Motionformer from a timm ViT-B/16 or ViT-L/16 state dict."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from motionformer.io import reading
from motionformer.models.motionformer import Motionformer, resize_grid

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadReport:
    """Which tensors an initialisation loaded, left new, or ignored."""

    loaded: list[str] = dataclasses.field(default_factory=list)
    new: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        def sample(names: list[str]) -> str:
            shown = ", ".join(names[:6])
            return shown + (f", ... ({len(names)} in all)" if len(names) > 6 else "")

        return (f"loaded {len(self.loaded)} tensors; new {len(self.new)}: {sample(self.new)}; "
                f"ignored {len(self.ignored)}: {sample(self.ignored)}")


def _read_state_dict(source: str | os.PathLike | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A state dict from a mapping, a local file (.safetensors, or a torch.save file such as .pth / .pt), or a
    timm model name (needs network access the first time, unless timm finds the weights in its cache)."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if path.exists():
        with reading(path, "image ViT weights (a .safetensors, or a torch.save file of tensors)"):
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(path))
            state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict", "model_state"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        return state
    if os.sep in str(source) or path.suffix:
        raise FileNotFoundError(f"image ViT weights not found: {source}")
    import timm

    try:
        return timm.create_model(str(source), pretrained=True).state_dict()
    except Exception as error:  # timm raises several kinds for an unknown name or no network
        raise ValueError(f"could not get timm model {source!r} with pretrained weights ({error}); "
                         "pass a local state-dict file instead") from error


def inflate_patch_kernel(kernel_2d: Tensor, tubelet_size: int) -> Tensor:
    """Central-frame initialisation: (C, 3, p, p) -> (C, 3, t, p, p) with the 2D kernel in temporal slice
    floor(t / 2) and zeros elsewhere, so a clip of identical frames embeds like the image."""
    kernel = kernel_2d.new_zeros(*kernel_2d.shape[:2], tubelet_size, *kernel_2d.shape[2:])
    kernel[:, :, tubelet_size // 2] = kernel_2d
    return kernel


@torch.no_grad()
def init_from_image_vit(model: Motionformer, source: str | os.PathLike | Mapping[str, Tensor]) -> LoadReport:
    """Initialise ``model`` from a timm ViT (B/16 or L/16) state dict, a local file, or a timm model name.

    Loads the patch embedding (2D, and inflated to 3D by central-frame initialisation), class token,
    position embedding (resized bicubically to the model's grid, repeated over frames for joint tables),
    every block, the final norm and, when present, pre-logits. ``temp_embed`` is zeroed; the temporal
    projections of trajectory attention (``proj_q``, ``proj_kv``), divided attention's ``timeattn`` and
    ``norm3``, and the classifier stay newly initialised. Returns (and logs) a ``LoadReport``.
    """
    image = _read_state_dict(source)
    own = model.state_dict()
    report = LoadReport()
    updates: dict[str, Tensor] = {}
    c = model.embed_dim

    def take(target: str, value: Tensor, source_key: str) -> None:
        if own[target].shape != value.shape:
            raise ValueError(f"image ViT tensor {source_key} has shape {tuple(value.shape)}, the model's "
                             f"{target} needs {tuple(own[target].shape)}: is it the right ViT size?")
        updates[target] = value.to(own[target].dtype)
        report.loaded.append(target)

    for key, value in image.items():
        if key == "patch_embed.proj.weight":
            take("patch_embed.proj.weight", value, key)
            if model.tubelet_size > 1:
                take("patch_embed_3d.proj.weight", inflate_patch_kernel(value, model.tubelet_size), key)
        elif key == "patch_embed.proj.bias":
            take("patch_embed.proj.bias", value, key)
            if model.tubelet_size > 1:
                take("patch_embed_3d.proj.bias", value, key)
        elif key == "pos_embed":
            side = round((value.shape[1] - 1) ** 0.5)
            spatial = resize_grid(value[0, 1:].reshape(side, side, -1), model.pos_grid).reshape(1, -1, c)
            if "temp_embed" not in own:  # joint space-time table: the same spatial table in every frame
                spatial = spatial.repeat(1, model.token_frames, 1)
            take("pos_embed", torch.cat([value[:, :1], spatial], dim=1), key)
        elif key in own and not key.startswith("head"):
            take(key, value, key)
        else:
            report.ignored.append(key)
    if "temp_embed" in own:
        updates["temp_embed"] = torch.zeros_like(own["temp_embed"])
        report.loaded.append("temp_embed (zeros)")
    model.load_state_dict(updates, strict=False)
    report.new = [key for key in own if key not in updates]
    log.info("image ViT initialisation: %s", report)
    return report
