"""Run configuration: dataclasses with defaults, YAML presets, dotted ``key=value`` overrides.

``load_config(preset_or_file, overrides)`` starts from the dataclass defaults, merges a preset (a name from
``list_presets()``, or a YAML file; ``_base_: NAME`` or a list of names merges other presets first), then the
overrides (``train.epochs=3 data.root=/data/k400``). Unknown keys and values of the wrong type are errors that
name the key, where it came from and the closest valid keys. The resolved config is what every run folder saves
as ``config.yaml``. OmegaConf does the merging and type checking.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from motionformer.models.registry import model_arguments

PRESET_SUFFIX = ".yaml"
BASE_KEY = "_base_"


@dataclasses.dataclass
class ModelConfig:
    """The network: a registry name, its classifier, regularisation and initialisation."""

    name: str = "mformer_b"
    num_classes: int | None = None  # None: the number of classes the training data names
    heads: dict[str, int] | None = None  # several classifiers, e.g. {verb: 97, noun: 300}; None: from the data
    drop_path_rate: float = 0.2
    init: str | None = None  # image ViT weights (a .safetensors or torch.save file of timm ViT keys) for 2D -> 3D
    grad_checkpointing: bool = False
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # more create_model keyword arguments


@dataclasses.dataclass
class DataConfig:
    """Where the videos and annotations are and how clips are sampled and augmented."""

    format: str = "auto"  # auto, kinetics, ssv2, epic, csv, folder
    root: str | None = None  # the video root; relative annotation paths are relative to it
    train: str | None = "train.csv"
    val: str | None = "val.csv"
    test: str | None = None  # None: the val file
    recipe: str | None = None  # kinetics, ssv2, epic; None: follows the format
    num_frames: int | None = None  # None: the model's
    sampling_rate: int = 4
    crop_size: int | None = None  # None: the model's input size
    scale_range: list[int] | None = None  # training short-side jitter [low, high]; None: the recipe's
    flip: bool | None = None  # None: the recipe's
    color_jitter: bool | None = None
    rand_augment: bool | None = None
    random_erasing: float = 0.0
    mean: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])
    channel_order: str | None = None  # rgb or bgr; None: the weights' (fine-tuning from BGR weights keeps BGR)
    frames: bool = False  # frame-image folders instead of video files (SSv2, Epic-Kitchens)
    batch_size: int = 4  # clips per process per forward pass
    workers: int = 4
    max_retries: int = 10
    name: str | None = None  # what the data is, for model.json's "dataset" (kinetics400, ...); None: "custom"


@dataclasses.dataclass
class TrainConfig:
    """Optimisation, schedule, precision, checkpoints and logging."""

    epochs: int = 35
    lr: float = 1e-4
    schedule: str = "steps"  # steps (x lr_gamma at each of lr_steps epochs) or cosine
    lr_steps: list[int] = dataclasses.field(default_factory=lambda: [20, 30])
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    min_lr: float = 0.0  # the end of the cosine schedule
    weight_decay: float = 0.05
    label_smoothing: float = 0.2
    effective_batch: int | None = None  # accumulate gradients up to this many clips per step; None: no accumulation
    clip_grad: float | None = None  # max gradient norm
    precision: str = "auto"  # auto (bf16 on GPUs that have it, else fp32), fp32, bf16, fp16
    compile: bool = False  # torch.compile the model: faster steps on GPUs after a first slow one
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0 turns it off
    cutmix: float = 0.0  # Beta(alpha, alpha) of cutmix; 0 turns it off
    finetune: str | None = None  # weights to start from (ours or released); optimizer and schedule start fresh
    device: str = "auto"
    eval_every: int = 1  # epochs between validations; 0: none during training
    test_at_end: bool = True  # multi-view test of the best weights when training ends
    checkpoint_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: by time only)
    checkpoint_minutes: float = 10.0  # also write one when this long has passed since the last
    keep_last: int = 2  # epoch checkpoints kept besides last.pt and best.pt
    log_every: int = 10  # optimizer steps between metrics.jsonl lines
    max_steps: int | None = None  # stop after this many optimizer steps (for smoke tests)
    resume: str = "auto"  # auto: continue output_dir's run if its config matches; fresh: set it aside, start over;
    # override: continue it with this config's values where they differ (not the model's)


@dataclasses.dataclass
class EvalConfig:
    """Validation during training and multi-view testing."""

    num_clips: int = 10  # temporal clips per video in testing
    num_crops: int = 3  # spatial crops per clip in testing
    val_clips: int = 1  # views of the per-epoch validation
    val_crops: int = 1
    batch_size: int | None = None  # None: data.batch_size
    precision: str = "auto"  # auto (bf16 where the CPU or GPU multiplies bf16 natively, else fp32), fp32, bf16
    predictions: bool = True  # write predictions.csv
    confusion: bool = True  # draw confusion.png


@dataclasses.dataclass
class Config:
    """A run: the model, data, training and evaluation settings, where to write, and the seed."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    output_dir: str = "runs/default"
    seed: int = 0
    checkpoint: str | None = None  # weights for `motionformer test` (a run's .pt, ours .safetensors, released .pyth)


class ConfigError(ValueError):
    """A preset, file or override that does not fit the config."""


def _presets_dir() -> Path:
    return Path(str(resources.files("motionformer") / "configs"))


def list_presets() -> list[str]:
    """Names of the packaged presets (``motionformer train NAME``)."""
    return sorted(path.stem for path in _presets_dir().glob(f"*{PRESET_SUFFIX}"))


def describe_preset(name: str) -> str:
    """The first sentence of the comment that opens a preset's YAML file ("" when it has none)."""
    lines = []
    for line in preset_path(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


def preset_path(name_or_path: str | Path) -> Path:
    """The YAML file of a preset name, or ``name_or_path`` itself when it is a file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    packaged = _presets_dir() / f"{name_or_path}{PRESET_SUFFIX}"
    if not packaged.is_file():
        close = difflib.get_close_matches(str(name_or_path), list_presets(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown preset {str(name_or_path)!r}{hint} (presets: {', '.join(list_presets())}; "
                          "or give a YAML file)")
    return packaged


def valid_keys(node: Any = None, prefix: str = "") -> Iterator[str]:
    """Every dotted key of the config (``train.lr``, ``model.options`` ...)."""
    node = OmegaConf.structured(Config) if node is None else node
    for key in node:
        dotted = f"{prefix}{key}"
        yield dotted
        value = node._get_node(key)
        if isinstance(value, DictConfig) and value._metadata.object_type not in (None, dict):
            yield from valid_keys(value, f"{dotted}.")


def _explain(error: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(error, "full_key", None) or "?"
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)):
        close = difflib.get_close_matches(key, list(valid_keys()), n=3, cutoff=0.5)
        if not close:  # a misspelt section, or a key under the wrong section: match on the last part
            last = key.rsplit(".", 1)[-1]
            close = [k for k in valid_keys() if difflib.get_close_matches(last, [k.rsplit(".", 1)[-1]], cutoff=0.7)]
        hint = f"; did you mean {', '.join(close[:3])}?" if close else ""
        return ConfigError(f"{source}: unknown key {key!r}{hint}")
    if isinstance(error, ValidationError):
        message = str(error).splitlines()[0]
        return ConfigError(f"{source}: bad value for {key!r}: {message}")
    return ConfigError(f"{source}: {str(error).splitlines()[0]} (key {key!r})")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(loaded).__name__}")
    return loaded


def _merge_file(config: DictConfig, path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigError(f"{path}: {BASE_KEY} refers back to itself ({chain})")
    values = _read_yaml(path)
    bases = values.pop(BASE_KEY, [])
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = path.parent / f"{base}{PRESET_SUFFIX}" if not str(base).endswith(".yaml") else path.parent / base
        if not base_path.is_file():
            base_path = preset_path(base)
        config = _merge_file(config, base_path, (*seen, path.resolve()))
    try:
        return OmegaConf.merge(config, OmegaConf.create(values))
    except OmegaConfBaseException as error:
        raise _explain(error, str(path)) from error


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text or text.startswith("="):
        raise ConfigError(f"command line: expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as error:
        raise ConfigError(f"command line: cannot parse the value of {key!r}: {raw!r} ({error})") from error
    return key.strip(), value


def apply_overrides(config: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """``config`` with each ``key=value`` applied (values parsed as YAML: ``[256, 320]``, ``null``, ``1e-4``)."""
    for text in overrides:
        key, value = _parse_override(text)
        try:
            OmegaConf.update(config, key, value, merge=True, force_add=False)
        except OmegaConfBaseException as error:
            if getattr(error, "full_key", None) in (None, ""):
                error.full_key = key
            raise _explain(error, f"command line {text!r}") from error
    return config


def load_config(preset: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """The defaults, then ``preset`` (a name or a YAML file), then ``overrides``: a checked ``Config``."""
    config = OmegaConf.structured(Config)
    if preset is not None:
        config = _merge_file(config, preset_path(preset))
    config = apply_overrides(config, overrides)
    try:
        resolved = OmegaConf.to_object(config)
    except OmegaConfBaseException as error:
        raise _explain(error, "config") from error
    check(resolved)
    return resolved


def config_from_dict(values: dict[str, Any], source: str = "config") -> Config:
    """A ``Config`` from a plain dict (a saved ``config.yaml`` or a checkpoint's copy)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(values))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise _explain(error, source) from error


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


_CHOICES = {
    "data.format": ("auto", "kinetics", "ssv2", "epic", "csv", "folder"),
    "data.recipe": (None, "kinetics", "ssv2", "epic"),
    "data.channel_order": (None, "rgb", "bgr"),
    "train.schedule": ("steps", "cosine"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.compile": (False, True),
    "eval.precision": ("auto", "fp32", "bf16"),
    "train.resume": ("auto", "fresh", "override"),
}
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check_choices(config: Config) -> None:
    """The enum-valued keys: each value one of its choices, ``train.device`` of the form ``DEVICE_PATTERN``."""
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in choices:
            shown = ", ".join(str(c) for c in choices if c is not None)
            raise ConfigError(f"{key}={value!r} is not one of {shown}")
    if not DEVICE_PATTERN.fullmatch(config.train.device):
        raise ConfigError(f"train.device={config.train.device!r} is not one of auto, cpu, mps, cuda, cuda:N")
    try:
        model_arguments(config.model.options)
    except ValueError as error:
        raise ConfigError(f"model.options: {error}") from None


@dataclasses.dataclass(frozen=True)
class Bound:
    """The allowed values of a numeric key: ``low`` <= value (< when ``open_low``) and the same for ``high``;
    list values are checked item by item."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    meaning: str = ""

    def admits(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.open_high and value == self.high))

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {self.high:g}")
        return " and ".join(parts) + (f" ({self.meaning})" if self.meaning else "")


AT_LEAST_1 = Bound(1)
NON_NEGATIVE = Bound(0)
POSITIVE = Bound(0, open_low=True)
FRACTION = Bound(0, 1, open_high=True)
# every numeric key of the config (a test checks that none is missing); null is allowed where the type allows it
RANGES: dict[str, Bound] = {
    "model.num_classes": AT_LEAST_1, "model.heads": AT_LEAST_1,
    "model.drop_path_rate": Bound(0, 1, open_high=True, meaning="a probability"),
    "data.num_frames": AT_LEAST_1, "data.sampling_rate": AT_LEAST_1, "data.crop_size": AT_LEAST_1,
    "data.scale_range": AT_LEAST_1, "data.random_erasing": Bound(0, 1, meaning="a probability"),
    "data.mean": Bound(0, 1, meaning="the pixel mean of a channel, in [0, 1]"),
    "data.std": Bound(0, open_low=True, meaning="the pixel standard deviation of a channel"),
    "data.batch_size": AT_LEAST_1, "data.workers": NON_NEGATIVE, "data.max_retries": NON_NEGATIVE,
    "train.epochs": AT_LEAST_1, "train.lr": POSITIVE, "train.lr_steps": NON_NEGATIVE,
    "train.lr_gamma": POSITIVE, "train.warmup_epochs": NON_NEGATIVE, "train.min_lr": NON_NEGATIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.label_smoothing": Bound(0, 1, open_high=True, meaning="the share of each target spread over the classes"),
    "train.effective_batch": AT_LEAST_1,
    "train.clip_grad": Bound(0, open_low=True, meaning="the largest gradient norm; null for no clipping"),
    "train.mixup": NON_NEGATIVE, "train.cutmix": NON_NEGATIVE, "train.eval_every": NON_NEGATIVE,
    "train.checkpoint_every": NON_NEGATIVE, "train.checkpoint_minutes": NON_NEGATIVE, "train.keep_last": NON_NEGATIVE,
    "train.log_every": AT_LEAST_1, "train.max_steps": AT_LEAST_1,
    "eval.num_clips": AT_LEAST_1, "eval.num_crops": Bound(1, 3, meaning="1 (centre) or 3 crops"),
    "eval.val_clips": AT_LEAST_1, "eval.val_crops": Bound(1, 3, meaning="1 (centre) or 3 crops"),
    "eval.batch_size": AT_LEAST_1, "seed": NON_NEGATIVE,
}


def _value(config: Config, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _check_ranges(config: Config) -> None:
    for key, bound in RANGES.items():
        value = _value(config, key)
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for item in values:
            if item is not None and not bound.admits(item):
                raise ConfigError(f"{key}={value!r} is out of range: must be {bound.describe()}")


def check(config: Config) -> None:
    """Values OmegaConf's types cannot check: choices, ranges, lengths, the model's options. Raises ConfigError
    naming the key."""
    _check_choices(config)
    _check_ranges(config)
    for key in ("eval.num_crops", "eval.val_crops"):
        if _value(config, key) not in (1, 3):
            raise ConfigError(f"{key} must be 1 or 3, got {_value(config, key)}")
    data = config.data
    if data.scale_range is not None and (len(data.scale_range) != 2 or data.scale_range[0] > data.scale_range[1]):
        raise ConfigError(f"data.scale_range must be [low, high] with low <= high, got {data.scale_range}")
    for key in ("data.mean", "data.std"):
        if len(_value(config, key)) != 3:
            raise ConfigError(f"{key} must hold 3 values (one per colour channel), got {_value(config, key)}")
    if sorted(config.train.lr_steps) != list(config.train.lr_steps):
        raise ConfigError(f"train.lr_steps must be increasing epochs, got {config.train.lr_steps}")
