"""Weights: image-ViT initialisation (2D -> 3D), the authors' released checkpoints, this library's format.

This library's format is two files: ``NAME.safetensors`` (the state dict) and ``NAME.json`` (what is
needed to rebuild and use the network: architecture, input size, frames, sampling rate, mean/std,
class names). Released ``.pyth`` files are read exactly as they are: the architecture comes from the
YAML config embedded in them, never from the file name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from motionformer.models.class_names import class_names
from motionformer.models.motionformer import Motionformer, resize_grid

log = logging.getLogger(__name__)

EPIC_HEADS = {"verb": 97, "noun": 300}


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
    """What a set of weights expects and means; attached to loaded models as ``model.weights_info``."""

    source: str
    architecture: dict[str, Any]
    img_size: int
    num_frames: int
    sampling_rate: int = 4
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    dataset: str | None = None
    class_names: dict[str, list[str]] | list[str] | None = None
    test_views: tuple[int, int] | None = None  # (clips, spatial crops)
    original_temporal_values: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------- image ViT initialisation


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


# ---------------------------------------------------------------------- released checkpoints


_REQUIRED = object()


def _cfg_value(cfg: dict, dotted: str, path: Path, default: Any = _REQUIRED) -> Any:
    """``cfg["A"]["B"]`` for ``"A.B"``; a missing required key is an error naming it and the file."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is _REQUIRED:
                raise ValueError(f"{path}: the embedded config has no key {dotted}")
            return default
        node = node[part]
    return node


def released_architecture(cfg: dict, state: Mapping[str, Tensor], path: Path) -> tuple[dict[str, Any], WeightsInfo]:
    """Model keyword arguments and weights info from a released checkpoint's config (PySlowFast YAML)."""
    def vit(key: str, default: Any = _REQUIRED) -> Any:
        return _cfg_value(cfg, f"VIT.{key}", path, default)

    def data(key: str, default: Any = _REQUIRED) -> Any:
        return _cfg_value(cfg, f"DATA.{key}", path, default)

    tubelet = int(vit("PATCH_SIZE_TEMP"))
    token_frames = int(vit("TEMPORAL_RESOLUTION"))
    num_frames = int(data("NUM_FRAMES", token_frames * tubelet))
    if num_frames != token_frames * tubelet:
        raise ValueError(f"{path}: DATA.NUM_FRAMES = {num_frames} but VIT.TEMPORAL_RESOLUTION = {token_frames} "
                         f"x VIT.PATCH_SIZE_TEMP = {tubelet}")
    patch = int(vit("PATCH_SIZE"))
    rows = state["pos_embed"].shape[1] - 1 if "pos_embed" in state else None
    approx = str(vit("APPROX_ATTN_TYPE", "none")).lower()
    dataset = str(_cfg_value(cfg, "TRAIN.DATASET", path, "kinetics"))
    epic = dataset.lower() == "epickitchens"
    architecture: dict[str, Any] = dict(
        img_size=int(data("TEST_CROP_SIZE", data("TRAIN_CROP_SIZE", 224))),
        patch_size=patch, tubelet_size=tubelet, num_frames=num_frames,
        embed_dim=int(vit("EMBED_DIM")), depth=int(vit("DEPTH")), num_heads=int(vit("NUM_HEADS")),
        mlp_ratio=float(vit("MLP_RATIO")), qkv_bias=bool(vit("QKV_BIAS")),
        attention=str(vit("ATTN_LAYER")).lower(), pos_embed=str(vit("POS_EMBED", "separate")).lower(),
        pre_logits=bool(vit("USE_MLP", True)),
        original_temporal_values=bool(vit("USE_ORIGINAL_TRAJ_ATTN_CODE", True)),
        approx=None if approx in ("none", "") else approx,
        num_prototypes=int(vit("APPROX_ATTN_DIM", 128)),
        num_classes=int(_cfg_value(cfg, "MODEL.NUM_CLASSES", path)),
        heads=dict(EPIC_HEADS) if epic else None,
    )
    if architecture["pos_embed"] == "separate" and rows is not None:
        side = round(rows ** 0.5)
        if side * side != rows:
            raise ValueError(f"{path}: pos_embed holds {rows} spatial rows, not a square grid")
        architecture["pos_embed_size"] = side * patch
    head_act = str(vit("HEAD_ACT", "tanh")).lower()
    if architecture["pre_logits"] and head_act != "tanh":
        raise ValueError(f"{path}: VIT.HEAD_ACT = {head_act} is not supported (only tanh)")
    info = WeightsInfo(
        source=str(path), architecture=architecture, img_size=architecture["img_size"], num_frames=num_frames,
        sampling_rate=int(data("SAMPLING_RATE", 4)), mean=tuple(data("MEAN", [0.5] * 3)),
        std=tuple(data("STD", [0.5] * 3)), dataset=dataset,
        class_names=_class_names_for(dataset, architecture["num_classes"]),
        test_views=(int(_cfg_value(cfg, "TEST.NUM_ENSEMBLE_VIEWS", path, 1)),
                    int(_cfg_value(cfg, "TEST.NUM_SPATIAL_CROPS", path, 3))),
        original_temporal_values=architecture["original_temporal_values"],
    )
    return architecture, info


def _class_names_for(dataset: str, num_classes: int) -> dict[str, list[str]] | list[str] | None:
    """The packaged class names of a released config's dataset, or None when none fit."""
    key = dataset.lower()
    if key == "epickitchens":
        return {"verb": class_names("epic_verbs"), "noun": class_names("epic_nouns")}
    if key == "ssv2" and num_classes == 174:
        return class_names("ssv2")
    if key == "kinetics" and num_classes in (400, 600):
        return class_names(f"kinetics{num_classes}")
    return None


def _strip_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``module.`` prefix that DDP adds to every key."""
    return {key.removeprefix("module."): value for key, value in state.items()}


def _load_strict(model: nn.Module, state: Mapping[str, Tensor], path: Path) -> None:
    """load_state_dict that names every missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:8]}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:8]}")
        raise ValueError(f"{path}: the config does not match the tensors: " + "; ".join(parts))
    model.load_state_dict(state)


def from_checkpoint(path: str | os.PathLike, *, trust_pickle: bool = False) -> Motionformer:
    """Build and load a model from a released ``.pyth`` file or this library's ``.safetensors``/``.json``.

    Released models get ``original_temporal_values=True`` (their temporal-stage quirk) and, for
    Epic-Kitchens, the verb/noun heads. The model returns logits; the released code returned softmax
    probabilities in eval mode. ``model.weights_info`` says what the weights expect.
    ``.pyth`` files are unpickled with ``weights_only=True``; ``trust_pickle=True`` lifts that for a file
    you trust that holds other Python objects.
    """
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        return _load_ours(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: cannot be read as plain tensors and containers ({error}); if you trust the "
                         "file, pass trust_pickle=True") from error
    if not isinstance(checkpoint, dict) or "model_state" not in checkpoint or "cfg" not in checkpoint:
        keys = list(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path}: not a released Motionformer checkpoint (expected keys model_state and cfg, "
                         f"found {keys})")
    cfg = checkpoint["cfg"]
    cfg = yaml.safe_load(cfg) if isinstance(cfg, str) else cfg
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the embedded cfg is not a YAML mapping")
    state = _strip_prefix(checkpoint["model_state"])
    architecture, info = released_architecture(cfg, state, path)
    model = Motionformer(**architecture)
    _load_strict(model, state, path)
    model.weights_info = info
    return model.eval()


# ---------------------------------------------------------------------- this library's format


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, flushed and renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    umask = os.umask(0)  # mkstemp makes the file private (0600); give it the permissions a plain open would
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    try:
        write(temp)
        with open(temp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_model(model: Motionformer, output: str | os.PathLike, info: WeightsInfo | None = None) -> tuple[Path, Path]:
    """Write ``OUTPUT.safetensors`` and ``OUTPUT.json``; returns both paths."""
    from safetensors.torch import save_file

    base = Path(output)
    if base.suffix in (".safetensors", ".json"):
        base = base.with_suffix("")
    weights, meta = base.with_suffix(".safetensors"), base.with_suffix(".json")
    info = info or getattr(model, "weights_info", None) or WeightsInfo(
        source="motionformer", architecture=model.architecture, img_size=model.img_size,
        num_frames=model.num_frames)
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    record = {"format": "motionformer/1", "outputs": "logits", **info.to_json(),
              "architecture": json.loads(json.dumps(model.architecture))}
    atomic_write(weights, lambda temp: save_file(state, temp))
    atomic_write(meta, lambda temp: Path(temp).write_text(json.dumps(record, indent=2) + "\n"))
    return weights, meta


def _load_ours(path: Path) -> Motionformer:
    from safetensors.torch import load_file

    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    for needed in (weights, meta):
        if not needed.exists():
            raise FileNotFoundError(f"checkpoint file not found: {needed}")
    try:
        record = json.loads(meta.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{meta}: not valid JSON ({error})") from error
    if "architecture" not in record:
        raise ValueError(f"{meta}: no 'architecture' key")
    model = Motionformer(**record["architecture"])
    _load_strict(model, load_file(str(weights)), weights)
    fields = {f.name for f in dataclasses.fields(WeightsInfo)}
    values = {k: v for k, v in record.items() if k in fields}
    for key in ("mean", "std", "test_views"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    model.weights_info = WeightsInfo(**values)
    return model.eval()


def convert_checkpoint(source: str | os.PathLike, output: str | os.PathLike) -> tuple[Path, Path]:
    """Read any supported checkpoint and write this library's format (``motionformer convert IN OUT``)."""
    model = from_checkpoint(source)
    paths = save_model(model, output)
    log.info("wrote %s and %s", *paths)
    return paths
