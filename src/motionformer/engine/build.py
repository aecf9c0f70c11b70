"""Where a run's config becomes objects: the datasets, the model, and the weights it starts from.

The only module of the engine that reads config keys for the data and the model (the library below takes plain
keyword arguments).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from motionformer.data.build import build_dataset
from motionformer.data.datasets import VideoClipDataset
from motionformer.engine.checkpoint import is_training_checkpoint, load_checkpoint
from motionformer.engine.config import Config, config_from_dict
from motionformer.models.image_init import init_from_image_vit
from motionformer.models.motionformer import Motionformer, resize_grid
from motionformer.models.registry import create_model
from motionformer.models.spec import ClassNames, InputSpec
from motionformer.models.weights import WeightsInfo, from_checkpoint

log = logging.getLogger(__name__)



def annotation_path(config: Config, split: str) -> Path:
    """The annotation file of ``split`` (train, val, test), relative paths taken from ``data.root``."""
    data = config.data
    field = "val" if split == "test" and data.test is None else split
    name, key = getattr(data, field), f"data.{field}"
    if name is None:
        raise ValueError(f"{key} is not set: it names the {split} annotation file")
    path = Path(name)
    if not path.is_absolute() and data.root is not None:
        path = Path(data.root) / path
    if not path.exists():
        where = f" (data.root={data.root})" if data.root is not None else " (data.root is not set)"
        raise FileNotFoundError(f"{key}: annotation file not found: {path}{where}")
    return path


def input_spec(config: Config, model: Motionformer, class_names: ClassNames = None) -> InputSpec:
    """What a run feeds ``model``: the config's frames, crop, stride and test views, over what the model's
    weights expect (``model.weights_info``: mean, std, channel order, sampling, class names) or, for fresh
    weights, the model's own frames and crop with the config's mean and std and ``class_names`` (the data's).

    The channel order is ``data.channel_order`` when set, else the weights': for a model fine-tuned from other
    weights (``load_finetune``), theirs, so fine-tuning from BGR weights keeps BGR.
    """
    data, info = config.data, getattr(model, "weights_info", None)
    if info is not None:
        base = info.input
    else:
        recipe = data.recipe or data.format
        source = getattr(model, "source_input", None)
        base = InputSpec(num_frames=model.num_frames, crop_size=model.img_size, mean=tuple(data.mean),
                         std=tuple(data.std), class_names=class_names,
                         channel_order=source.channel_order if source is not None else "rgb",
                         sampling="segments" if recipe == "ssv2" else "clips")
        if source is not None and source.channel_order != "rgb":
            log.info("the fine-tuned weights learnt %s frames: %s (set data.channel_order to change it)",
                     source.channel_order.upper(),
                     f"using {data.channel_order.upper()} as data.channel_order says" if data.channel_order
                     else f"keeping {source.channel_order.upper()}")
    return dataclasses.replace(base, num_frames=data.num_frames or base.num_frames,
                               crop_size=data.crop_size or base.crop_size, sampling_rate=data.sampling_rate,
                               channel_order=data.channel_order or base.channel_order,
                               num_clips=config.eval.num_clips, num_crops=config.eval.num_crops)


def build_split(config: Config, split: str, spec: InputSpec, *, training: bool, num_clips: int = 1,
                num_crops: int = 1) -> VideoClipDataset:
    """The dataset of one split with the recipe and the config's overrides."""
    data = config.data
    overrides: dict[str, Any] = {"mean": spec.mean, "std": spec.std}
    if training:
        for key in ("flip", "color_jitter", "rand_augment"):
            if getattr(data, key) is not None:
                overrides[key] = getattr(data, key)
        if data.scale_range is not None:
            overrides["scale_range"] = tuple(data.scale_range)
        overrides["random_erasing"] = data.random_erasing
        # uint8 clips leave the workers (the engine normalises them on the device) unless random erasing needs floats
        overrides["normalize"] = data.random_erasing > 0
    return build_dataset(annotation_path(config, split), data.root, training=training, format=data.format,
                         recipe=data.recipe, sampling=spec.sampling, channel_order=spec.channel_order,
                         num_frames=spec.num_frames, sampling_rate=spec.sampling_rate,
                         crop_size=spec.crop_size, num_clips=num_clips, num_crops=num_crops, seed=config.seed,
                         frames=data.frames, max_retries=data.max_retries, **overrides)


def classifier_arguments(config: Config, class_names: ClassNames) -> dict[str, Any]:
    """``num_classes`` or ``heads`` for ``create_model``: the config's, else as many as the data names."""
    model = config.model
    if model.heads:
        return {"heads": dict(model.heads)}
    if isinstance(class_names, dict):
        return {"heads": {name: len(names) for name, names in class_names.items()}}
    if model.num_classes is not None:
        if class_names is not None and len(class_names) != model.num_classes:
            raise ValueError(f"model.num_classes={model.num_classes} but the training data names "
                             f"{len(class_names)} classes")
        return {"num_classes": model.num_classes}
    if class_names is None:
        raise ValueError("model.num_classes is not set and the training annotations do not name their classes "
                         "(add a classes.txt next to them, or set model.num_classes=N)")
    return {"num_classes": len(class_names)}


def build_model(config: Config, class_names: ClassNames) -> Motionformer:
    """The config's model on the CPU, initialised from an image ViT when ``model.init`` says so."""
    model = build_model_without_init(config, class_names)
    if config.model.init:
        if not Path(config.model.init).exists():
            log.info("model.init=%s is not a file: taking timm's pretrained weights of that name (timm downloads "
                     "them once into its cache; model.init=FILE uses a local file, model.init=null none)",
                     config.model.init)
        report = init_from_image_vit(model, config.model.init)
        log.info("initialised from image ViT %s: %s", config.model.init, report)
    if config.model.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def _resize_embedding(name: str, value: Tensor, target: Tensor, model: Motionformer) -> Tensor | None:
    """A position (``pos_embed``) or time (``temp_embed``) table resized to ``target``'s shape, or None."""
    if name == "temp_embed" and value.dim() == 3:
        return resize_grid(value[0], (target.shape[1],))[None]
    if name == "pos_embed" and value.dim() == 3 and model.pos_embed_mode.value == "separate":
        old = round((value.shape[1] - 1) ** 0.5)
        new = round((target.shape[1] - 1) ** 0.5)
        if old * old == value.shape[1] - 1 and new * new == target.shape[1] - 1:
            grid = resize_grid(value[0, 1:].view(old, old, -1), (new, new)).reshape(new * new, -1)
            return torch.cat([value[0, :1], grid])[None]
    return None


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], bool, InputSpec | None]:
    """A state dict from a run's ``.pt``, our ``.safetensors``, a released ``.pyth`` or a model-zoo name, whether
    its network used ``original_temporal_values`` (False when unknown: a run's checkpoint), and the input its
    weights expect (None when a run's checkpoint does not record it)."""
    if is_training_checkpoint(path):
        record = load_checkpoint(path)
        spec = InputSpec.from_json(record["input"], f"{path} (input)") if "input" in record else None
        return record["model"], False, spec
    model = from_checkpoint(path)
    return model.state_dict(), model.trajectory.original_temporal_values, model.weights_info.input


def load_finetune(model: Motionformer, path: str | Path) -> dict[str, list[str]]:
    """Start ``model`` from the weights in ``path``, keeping its own classifier where the classes differ.

    Position and time embeddings of another size are resized; other tensors must match. Returns the names
    {"loaded": [...], "resized": [...], "new": [...]} (new: left as initialised, e.g. a 174-class head on
    Kinetics-400 weights). ``model.source_input`` becomes the input the weights expect (``input_spec`` keeps
    their channel order).
    """
    state, original_temporal_values, source_input = read_weights(path)
    own = model.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "resized": [], "new": []}
    heads = tuple(name for name in own if name.startswith("head"))
    loaded: dict[str, Tensor] = {}
    for name, target in own.items():
        value = state.get(name)
        if value is None:
            report["new"].append(name)
        elif value.shape == target.shape:
            loaded[name] = value
            report["loaded"].append(name)
        elif name in heads:
            report["new"].append(name)
        elif (resized := _resize_embedding(name, value, target, model)) is not None:
            loaded[name] = resized
            report["resized"].append(name)
        else:
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(value.shape)}, the model's is "
                             f"{tuple(target.shape)}: the checkpoint holds another architecture")
    missing_body = [name for name in report["new"] if name not in heads]
    if missing_body:
        raise ValueError(f"{path}: no tensors for {', '.join(missing_body[:5])}"
                         f"{' ...' if len(missing_body) > 5 else ''}: not weights of this architecture")
    model.load_state_dict(loaded, strict=False)
    if source_input is not None:
        model.source_input = source_input
    if original_temporal_values and not model.trajectory.original_temporal_values:
        log.warning("%s was trained with original_temporal_values=True (the released models' temporal-value quirk); "
                    "to keep its behaviour set model.options.original_temporal_values=true", path)
    log.info("fine-tuning from %s: %d tensors loaded, %d resized, new: %s", path, len(report["loaded"]),
             len(report["resized"]), ", ".join(report["new"]) or "none")
    return report


def model_from_weights(path: str | Path) -> tuple[Motionformer, ClassNames, InputSpec]:
    """A model ready for inference from any checkpoint (a model-zoo name too), its class names, and the input it
    expects (a run's checkpoint: the input it recorded, else its config's).

    The model gets ``weights_info`` (for a run's checkpoint: its architecture and its config's input).
    """
    if not is_training_checkpoint(path):
        model = from_checkpoint(path)
        return model, model.weights_info.input.class_names, model.weights_info.input
    record = load_checkpoint(path)
    config = config_from_dict(record["config"], f"{path} (config)")
    class_names = record.get("class_names")
    model = build_model_without_init(config, class_names)
    model.load_state_dict(record["model"])
    spec = (InputSpec.from_json(record["input"], f"{path} (input)") if "input" in record
            else input_spec(config, model, class_names))
    model.weights_info = WeightsInfo(source=str(path), architecture=model.architecture, input=spec,
                                     dataset=config.data.name or "custom")
    return model.eval(), class_names, spec


def build_model_without_init(config: Config, class_names: ClassNames) -> Motionformer:
    """The config's architecture with fresh weights (no image-ViT initialisation): to load a checkpoint into."""
    return create_model(config.model.name, drop_path_rate=config.model.drop_path_rate,
                        **{**config.model.options, **classifier_arguments(config, class_names)})
