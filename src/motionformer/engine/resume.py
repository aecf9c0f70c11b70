"""Resuming a run: which checkpoint to continue from, and whether this run's config may continue it.

A run continues from ``checkpoints/last.pt``, or, when that is missing or unreadable, from the newest readable
``epoch-NNNN.pt``. Its config must match the checkpoint's: the keys of ``SAFE_TO_CHANGE`` (the run's length,
logging, checkpoint intervals, workers, where the data and outputs are, the test settings) may differ and take
this run's values; any other difference is refused with every key and both values, unless ``train.resume`` is
``override`` (the differing values are applied, except the model's) or ``fresh`` (the old run is moved to
``previous/<time>/`` in the output folder and training starts over; nothing is deleted).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from motionformer.engine.checkpoint import load_checkpoint
from motionformer.engine.config import Config, to_dict

log = logging.getLogger(__name__)

SAFE_TO_CHANGE = frozenset({
    "train.epochs", "train.max_steps", "train.log_every", "train.checkpoint_every", "train.checkpoint_minutes",
    "train.keep_last", "train.eval_every", "train.test_at_end", "train.device", "train.compile", "train.resume",
    "train.finetune", "data.workers", "data.root", "data.test", "model.init", "output_dir", "checkpoint",
    "eval.num_clips", "eval.num_crops", "eval.batch_size", "eval.predictions", "eval.confusion",
})
RUN_FILES = ("checkpoints", "metrics.jsonl", "config.yaml", "tensorboard", "model.safetensors", "model.json",
             "test_metrics.json", "predictions.csv", "confusion.png")


@dataclasses.dataclass(frozen=True)
class Difference:
    """A config key whose value in the checkpoint differs from this run's."""

    key: str
    saved: Any
    now: Any

    def __str__(self) -> str:
        def shown(value: Any) -> str:
            return value if isinstance(value, str) else repr(value)

        return f"{self.key}: checkpoint {shown(self.saved)}, now {shown(self.now)}"


def find_checkpoint(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to continue from (``last.pt``, else the newest readable ``epoch-NNNN.pt``) and its record."""
    candidates = [folder / "last.pt", *sorted(folder.glob("epoch-*.pt"), reverse=True)]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            record = load_checkpoint(path)
        except ValueError as error:
            log.warning("cannot resume from %s (%s); trying an older checkpoint", path, error)
            continue
        if path.name != "last.pt":
            log.warning("%s is missing or unreadable: resuming from %s", folder / "last.pt", path)
        return path, record
    return None


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "options" and key != "heads":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: dict[str, Any], config: Config) -> list[Difference]:
    """The keys whose values differ between a checkpoint's config and ``config``. Keys the checkpoint lacks count
    as their defaults; keys the config no longer has are ignored."""
    now = _flatten(to_dict(config))
    defaults = _flatten(to_dict(Config()))
    old = {**defaults, **{key: value for key, value in _flatten(saved).items() if key in defaults}}
    return [Difference(key, old[key], now[key]) for key in now if _normal(old[key]) != _normal(now[key])]


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check_compatible(path: Path, record: dict[str, Any], config: Config, *, class_names: Any,
                     effective_batch: int, steps_per_epoch: int) -> list[Difference]:
    """Raise ValueError when this run cannot continue ``record`` (see the module docstring); return the
    differences it continues with."""
    differences = config_differences(record.get("config", {}), config)
    policy = config.train.resume
    blocking = [d for d in differences if d.key not in SAFE_TO_CHANGE
                and (policy != "override" or d.key.startswith("model."))]
    saved_classes = record.get("class_names")
    if saved_classes is not None and saved_classes != class_names:
        blocking.append(Difference("class names of the training data", _short(saved_classes), _short(class_names)))
    for key, now in (("effective batch", effective_batch), ("steps per epoch", steps_per_epoch)):
        saved = record.get(key.replace(" ", "_"))
        if saved is not None and saved != now and policy != "override":
            blocking.append(Difference(key, saved, now))
    if blocking:
        listing = "; ".join(map(str, blocking))
        raise ValueError(f"{path} cannot be continued with this config ({listing}). Use the checkpoint's values, "
                         "or train.resume=fresh to set the old run aside and start over, or train.resume=override to "
                         "continue with the new values (not for the model or the classes), or another output_dir")
    for difference in differences:
        log.info("resuming with a changed %s", difference)
    return differences


def _short(names: Any) -> str:
    if isinstance(names, dict):
        return "{" + ", ".join(f"{head}: {_short(value)}" for head, value in names.items()) + "}"
    names = list(names)
    return f"{len(names)} classes [{', '.join(map(str, names[:4]))}{', ...' if len(names) > 4 else ''}]"


def set_aside(output: Path) -> Path | None:
    """Move a previous run's files into ``output/previous/<time>/``; returns that folder (None: nothing to move)."""
    present = [output / name for name in RUN_FILES if (output / name).exists()]
    if not present:
        return None
    target = output / "previous" / time.strftime("%Y%m%d-%H%M%S")
    target.mkdir(parents=True, exist_ok=False)
    for path in present:
        path.rename(target / path.name)
    log.info("train.resume=fresh: the previous run's files are in %s", target)
    return target
