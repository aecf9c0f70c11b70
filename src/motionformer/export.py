"""Export a model for inference outside this library: ONNX (ONNX Runtime and other runtimes) or a ``torch.export``
ExportedProgram (``.pt2``), both with a dynamic batch dimension.

The exported graph is the model's forward in eval mode without autograd: input ``video`` (B, 3, frames, H, W),
normalised as ``model.weights_info.input`` says, with that spec's frames and crop (fixed in the graph); output
``logits`` (B, total classes). The weights' record (``WeightsInfo.to_json``: input spec, class names, architecture)
travels inside the file: ONNX metadata property ``motionformer``, or the ExportedProgram's extra file
``motionformer.json``. ONNX needs the optional dependencies ``pip install "motionformer[export]"``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from motionformer.attention import PrototypeSelection
from motionformer.io import atomic_write
from motionformer.layers.options import Approximation
from motionformer.models.motionformer import AttentionType, Motionformer
from motionformer.models.spec import InputSpec
from motionformer.models.weights import WeightsInfo

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "exported-program": ".pt2"}
INPUT_NAME, OUTPUT_NAME = "video", "logits"
METADATA_KEY = "motionformer"
EXAMPLE_BATCH = 2  # batch 1 would be specialised by torch.export; the graph takes any batch >= 1


def _weights_info(model: Motionformer) -> WeightsInfo:
    """``model.weights_info``, else the model's own frames and crop with default settings."""
    return getattr(model, "weights_info", None) or WeightsInfo(
        source="motionformer", architecture=model.architecture,
        input=InputSpec(num_frames=model.num_frames, crop_size=model.img_size))


def example_input(model: Motionformer, batch_size: int = EXAMPLE_BATCH, seed: int = 0) -> Tensor:
    """A random float32 batch (B, 3, frames, crop, crop) of the size the model's weights expect, on its device."""
    spec = _weights_info(model).input
    generator = torch.Generator().manual_seed(seed)
    video = torch.randn(batch_size, 3, spec.num_frames, spec.crop_size, spec.crop_size, generator=generator)
    return video.to(next(model.parameters()).device)


def _check_onnx_supported(model: Motionformer) -> None:
    """ValueError where the graph would draw random numbers, which ONNX cannot (Orthoformer's random candidates)."""
    options, spec = model.trajectory, _weights_info(model).input
    tokens_per_frame = (spec.crop_size // model.patch_size) ** 2
    random = options.prototype_selection is not PrototypeSelection.SEGMENT_MEANS
    if (model.attention is AttentionType.TRAJECTORY and options.approx is Approximation.ORTHOFORMER and random
            and options.num_prototypes < tokens_per_frame):
        raise ValueError(f"ONNX has no random permutation, which Orthoformer's prototype_selection="
                         f"{options.prototype_selection.value!r} draws at every call: export with --format "
                         "exported-program, or use a model with prototype_selection='segment_means'")


def export_program(model: Motionformer) -> torch.export.ExportedProgram:
    """The model's inference graph (eval mode, no autograd) on the model's device with a dynamic batch; the model
    is left in eval mode and float32."""
    model.eval().float()
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        return torch.export.export(model, (example_input(model),), dynamic_shapes=({0: batch},))


def _output_path(output: str | os.PathLike, format: str) -> Path:
    if format not in FORMATS:
        raise ValueError(f"export format {format!r} is not one of {', '.join(FORMATS)}")
    path, suffix = Path(output), FORMATS[format]
    if not path.suffix:
        return path.with_suffix(suffix)
    if path.suffix != suffix:
        raise ValueError(f"{path}: a {format} file ends in {suffix}, not {path.suffix}")
    return path


def export_model(model: Motionformer, output: str | os.PathLike, format: str = "onnx") -> Path:
    """Write the model's inference graph to ``output`` (``FORMATS`` gives the suffix, added when missing).

    Returns the path written. Raises ValueError for an unknown format, a wrong suffix, or an Orthoformer model
    with random prototypes in ONNX.
    """
    path = _output_path(output, format)
    if format == "onnx":
        _check_onnx_supported(model)
    program = export_program(model)
    record = json.dumps(_weights_info(model).to_json())
    if format == "exported-program":
        atomic_write(path, lambda temp: torch.export.save(program, temp, extra_files={f"{METADATA_KEY}.json": record}))
        return path
    onnx_program = torch.onnx.export(program, (example_input(model),), input_names=[INPUT_NAME],
                                     output_names=[OUTPUT_NAME], dynamo=True, verbose=False)
    onnx_program.model.metadata_props[METADATA_KEY] = record
    atomic_write(path, lambda temp: onnx_program.save(temp, external_data=False))
    return path


def load_exported(path: str | os.PathLike) -> tuple[Callable[[Tensor], Tensor], WeightsInfo]:
    """A function video (B, 3, frames, H, W) -> logits that runs an exported file (ONNX Runtime on the CPU for
    ``.onnx``, CPU logits), and the weights' record stored in it."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        record = session.get_modelmeta().custom_metadata_map[METADATA_KEY]

        def run(video: Tensor) -> Tensor:
            inputs = {INPUT_NAME: np.ascontiguousarray(video.cpu().numpy())}
            return torch.from_numpy(session.run([OUTPUT_NAME], inputs)[0])
    else:
        extra = {f"{METADATA_KEY}.json": ""}
        module = torch.export.load(path, extra_files=extra).module()
        record = extra[f"{METADATA_KEY}.json"]

        def run(video: Tensor) -> Tensor:
            with torch.no_grad():
                return module(video)
    return run, WeightsInfo.from_json(json.loads(record), str(path))


def export_error(path: str | os.PathLike, model: Motionformer, batch_sizes: Sequence[int] = (1, 3)) -> float:
    """The largest relative error ||exported - eager|| / ||eager|| of the logits over random batches of each size.

    Both runs start from the same torch seed, so models that draw random numbers (Orthoformer) draw the same.
    """
    run, _ = load_exported(path)
    model.eval()
    errors = []
    for size in batch_sizes:
        video = example_input(model, size, seed=size)
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(size)
            eager = model(video).cpu()
            torch.manual_seed(size)
            exported = run(video).cpu()
        errors.append(((exported - eager).norm() / eager.norm()).item())
    return max(errors)
