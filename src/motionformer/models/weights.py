"""This library's weight format, and ``from_checkpoint``: one entry point for every kind of weights.

The format is two files: ``NAME.safetensors`` (the state dict) and ``NAME.json``: ``format``
(``motionformer/2``), ``outputs`` (``logits``), ``source``, ``dataset``, ``architecture`` (the model's
keyword arguments) and ``input`` (an ``InputSpec``, with the channel order the weights were trained on). Files
of ``motionformer/1`` (the input spec's fields at the top level, flat trajectory options in ``architecture``) are
read too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from motionformer.io import atomic_write, reading
from motionformer.models.motionformer import Motionformer, load_strict
from motionformer.models.registry import model_arguments
from motionformer.models.released import load_released
from motionformer.models.spec import InputSpec
from motionformer.models.zoo import resolve

log = logging.getLogger(__name__)

FORMAT = "motionformer/2"


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
    """What a set of weights is and expects; attached to loaded models as ``model.weights_info``.

    ``architecture``: the model's keyword arguments (``model.architecture``); ``input``: what its clips must be.
    """

    source: str
    architecture: dict[str, Any]
    input: InputSpec
    dataset: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON record of ``NAME.json``."""
        return {"format": FORMAT, "outputs": "logits", "source": self.source, "dataset": self.dataset,
                "architecture": json.loads(json.dumps(self.architecture)), "input": self.input.to_json()}

    @classmethod
    def from_json(cls, record: Mapping[str, Any], source: str) -> WeightsInfo:
        """A ``WeightsInfo`` from a ``NAME.json`` record of either format; ValueError naming ``source``."""
        if not isinstance(record, Mapping) or not isinstance(record.get("architecture"), Mapping):
            found = type(record.get("architecture") if isinstance(record, Mapping) else record).__name__
            raise ValueError(f"{source}: expected an 'architecture' mapping of model arguments, found {found}")
        if "input" in record:
            spec = InputSpec.from_json(record["input"], f"{source} (input)")
        else:  # motionformer/1: the input's fields at the top level
            clips, crops = record.get("test_views") or (1, 1)
            values = {"num_frames": record.get("num_frames"), "crop_size": record.get("img_size"),
                      "sampling_rate": record.get("sampling_rate", 4), "mean": record.get("mean", (0.5,) * 3),
                      "std": record.get("std", (0.5,) * 3), "class_names": record.get("class_names"),
                      "num_clips": clips, "num_crops": crops}
            spec = InputSpec.from_json(values, source)
        return cls(source=str(record.get("source", source)), architecture=dict(record["architecture"]), input=spec,
                   dataset=record.get("dataset"))


def save_model(model: Motionformer, output: str | os.PathLike, info: WeightsInfo | None = None) -> tuple[Path, Path]:
    """Write ``OUTPUT.safetensors`` and ``OUTPUT.json``; returns both paths.

    ``info`` defaults to ``model.weights_info``, else the model's own frames and crop with default settings.
    """
    base = Path(output)
    if base.suffix in (".safetensors", ".json"):
        base = base.with_suffix("")
    weights, meta = base.with_suffix(".safetensors"), base.with_suffix(".json")
    write_weight_files(model, weights, meta, info)
    return weights, meta


def write_weight_files(model: Motionformer, weights: Path, meta: Path, info: WeightsInfo | None = None) -> None:
    """Write the state dict to ``weights`` (safetensors) and the ``WeightsInfo`` record to ``meta`` (JSON).

    ``info`` defaults to ``model.weights_info``, else the model's own frames and crop with default settings.
    """
    from safetensors.torch import save_file

    info = info or getattr(model, "weights_info", None) or WeightsInfo(
        source="motionformer", architecture=model.architecture,
        input=InputSpec(num_frames=model.num_frames, crop_size=model.img_size))
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    record = {**info.to_json(), "architecture": json.loads(json.dumps(model.architecture))}
    atomic_write(weights, lambda temp: save_file(state, temp))
    atomic_write(meta, lambda temp: Path(temp).write_text(json.dumps(record, indent=2) + "\n"))


def read_weight_files(weights: Path, meta: Path) -> Motionformer:
    """The model (eval mode, with ``weights_info``) of a ``weights`` / ``meta`` pair that ``write_weight_files``
    wrote; ValueError naming the file for a missing, unexpected or mis-shaped tensor."""
    from safetensors.torch import load_file

    with reading(meta, "the metadata (.json) of motionformer weights"):
        record = json.loads(meta.read_text())
    info = WeightsInfo.from_json(record, str(meta))
    try:
        model = Motionformer(**model_arguments(info.architecture))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{meta}: its 'architecture' does not describe a Motionformer ({error})") from error
    with reading(weights, "motionformer weights (.safetensors)"):
        state = load_file(str(weights))
    load_strict(model, state, weights)
    model.weights_info = dataclasses.replace(info, architecture=model.architecture)
    return model.eval()


def from_checkpoint(path: str | os.PathLike, *, trust_pickle: bool = False, download: bool = False) -> Motionformer:
    """Build and load a model (eval mode) from a released ``.pyth`` file, a model-zoo name (``k400_mformer_b``, its
    file in the weights folder; see ``motionformer.models.zoo``), this library's ``.safetensors``/``.json`` or a
    folder of the Hugging Face layout (``save_pretrained``); ``model.weights_info`` says what the weights expect.

    The model returns logits (the released code returned softmax probabilities in eval mode). ``download``: fetch
    an absent zoo file (else FileNotFoundError naming its URL and where to put it). ``trust_pickle``: see
    ``load_released``.
    """
    path = resolve(path, download=download)
    if path.is_dir():
        from motionformer.models import hub

        if (path / hub.CONFIG_NAME).is_file():
            return hub.from_pretrained(path)
    if path.suffix in (".safetensors", ".json"):
        return read_weight_files(path.with_suffix(".safetensors"), path.with_suffix(".json"))
    model, spec, dataset = load_released(path, trust_pickle=trust_pickle)
    model.weights_info = WeightsInfo(source=str(path), architecture=model.architecture, input=spec, dataset=dataset)
    return model


def convert_checkpoint(source: str | os.PathLike, output: str | os.PathLike) -> tuple[Path, Path]:
    """Read any supported checkpoint and write this library's format (``motionformer convert IN OUT``)."""
    model = from_checkpoint(source)
    paths = save_model(model, output)
    log.info("wrote %s and %s", *paths)
    return paths
