"""The authors' released checkpoints (``.pyth``): read exactly as they are, the architecture from the PySlowFast
YAML config embedded in them (never from the file name), with the input their training used.

Released models get ``original_temporal_values=True`` (their temporal-stage quirk) and, for Epic-Kitchens, the
verb/noun heads (``head0``/``head1``). They return logits; the released code returned softmax probabilities in
eval mode.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from motionformer.io import reading
from motionformer.models.class_names import class_names
from motionformer.models.motionformer import Motionformer, load_strict
from motionformer.models.registry import model_arguments
from motionformer.models.spec import ClassNames, InputSpec

EPIC_HEADS = {"verb": 97, "noun": 300}

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


def released_architecture(cfg: dict, state: Mapping[str, Tensor], path: Path) -> tuple[dict[str, Any], str]:
    """``Motionformer`` keyword arguments (``model.architecture``'s form) and the dataset name
    (``TRAIN.DATASET``) of a released checkpoint's config (PySlowFast YAML)."""
    def vit(key: str, default: Any = _REQUIRED) -> Any:
        return _cfg_value(cfg, f"VIT.{key}", path, default)

    tubelet = int(vit("PATCH_SIZE_TEMP"))
    token_frames = int(vit("TEMPORAL_RESOLUTION"))
    num_frames = int(_cfg_value(cfg, "DATA.NUM_FRAMES", path, token_frames * tubelet))
    if num_frames != token_frames * tubelet:
        raise ValueError(f"{path}: DATA.NUM_FRAMES = {num_frames} but VIT.TEMPORAL_RESOLUTION = {token_frames} "
                         f"x VIT.PATCH_SIZE_TEMP = {tubelet}")
    patch = int(vit("PATCH_SIZE"))
    approx = str(vit("APPROX_ATTN_TYPE", "none")).lower()
    dataset = str(_cfg_value(cfg, "TRAIN.DATASET", path, "kinetics"))
    crop = _cfg_value(cfg, "DATA.TEST_CROP_SIZE", path, _cfg_value(cfg, "DATA.TRAIN_CROP_SIZE", path, 224))
    architecture: dict[str, Any] = dict(
        img_size=int(crop), patch_size=patch, tubelet_size=tubelet, num_frames=num_frames,
        embed_dim=int(vit("EMBED_DIM")), depth=int(vit("DEPTH")), num_heads=int(vit("NUM_HEADS")),
        mlp_ratio=float(vit("MLP_RATIO")), qkv_bias=bool(vit("QKV_BIAS")),
        attention=str(vit("ATTN_LAYER")).lower(), pos_embed=str(vit("POS_EMBED", "separate")).lower(),
        pre_logits=bool(vit("USE_MLP", True)),
        num_classes=int(_cfg_value(cfg, "MODEL.NUM_CLASSES", path)),
        heads=dict(EPIC_HEADS) if dataset.lower() == "epickitchens" else None,
        trajectory=dict(original_temporal_values=bool(vit("USE_ORIGINAL_TRAJ_ATTN_CODE", True)),
                        approx=None if approx in ("none", "") else approx,
                        num_prototypes=int(vit("APPROX_ATTN_DIM", 128))),
    )
    rows = state["pos_embed"].shape[1] - 1 if "pos_embed" in state else None
    if architecture["pos_embed"] == "separate" and rows is not None:
        side = round(rows ** 0.5)
        if side * side != rows:
            raise ValueError(f"{path}: pos_embed holds {rows} spatial rows, not a square grid")
        architecture["pos_embed_size"] = side * patch
    head_act = str(vit("HEAD_ACT", "tanh")).lower()
    if architecture["pre_logits"] and head_act != "tanh":
        raise ValueError(f"{path}: VIT.HEAD_ACT = {head_act} is not supported (only tanh)")
    return architecture, dataset


def released_input(cfg: dict, architecture: Mapping[str, Any], dataset: str, path: Path) -> InputSpec:
    """The input a released model was trained and tested on: its config's frames, stride, crop, mean/std and
    test views; BGR and segment sampling where the released pipeline used them (SSv2; BGR for Epic-Kitchens)."""
    key = dataset.lower()
    return InputSpec(
        num_frames=architecture["num_frames"], crop_size=architecture["img_size"],
        sampling_rate=int(_cfg_value(cfg, "DATA.SAMPLING_RATE", path, 4)),
        mean=tuple(_cfg_value(cfg, "DATA.MEAN", path, [0.5] * 3)),
        std=tuple(_cfg_value(cfg, "DATA.STD", path, [0.5] * 3)),
        channel_order="bgr" if key in ("ssv2", "epickitchens") else "rgb",
        num_clips=int(_cfg_value(cfg, "TEST.NUM_ENSEMBLE_VIEWS", path, 1)),
        num_crops=int(_cfg_value(cfg, "TEST.NUM_SPATIAL_CROPS", path, 3)),
        class_names=released_class_names(dataset, architecture["num_classes"]),
        sampling="segments" if key == "ssv2" else "clips",
    )


def released_class_names(dataset: str, num_classes: int) -> ClassNames:
    """The packaged class names of a released config's dataset, or None when none fit."""
    key = dataset.lower()
    if key == "epickitchens":
        return {"verb": class_names("epic_verbs"), "noun": class_names("epic_nouns")}
    if key == "ssv2" and num_classes == 174:
        return class_names("ssv2")
    if key == "kinetics" and num_classes in (400, 600):
        return class_names(f"kinetics{num_classes}")
    return None


def _read_released(path: Path, trust_pickle: bool) -> tuple[dict, dict[str, Tensor]]:
    """The embedded config and the state dict (without DDP's ``module.`` prefix) of a ``.pyth`` file."""
    with reading(path, "a released Motionformer checkpoint (.pyth)",
                 unsafe_hint="; if you trust the file, pass trust_pickle=True"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    if not isinstance(checkpoint, dict) or "model_state" not in checkpoint or "cfg" not in checkpoint:
        keys = list(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path}: not a released Motionformer checkpoint (expected keys model_state and cfg, "
                         f"found {keys})")
    cfg = checkpoint["cfg"]
    cfg = yaml.safe_load(cfg) if isinstance(cfg, str) else cfg
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the embedded cfg is not a YAML mapping")
    state = {key.removeprefix("module."): value for key, value in checkpoint["model_state"].items()}
    return cfg, state


def load_released(path: str | os.PathLike, *, trust_pickle: bool = False) -> tuple[Motionformer, InputSpec, str]:
    """The model of a released ``.pyth`` file (eval mode), the input it expects, and its dataset name.

    Files are unpickled with ``weights_only=True``; ``trust_pickle=True`` lifts that for a file you trust that
    holds other Python objects.
    """
    path = Path(path)
    cfg, state = _read_released(path, trust_pickle)
    architecture, dataset = released_architecture(cfg, state, path)
    model = Motionformer(**model_arguments(architecture))
    load_strict(model, state, path)
    return model.eval(), released_input(cfg, architecture, dataset, path), dataset
