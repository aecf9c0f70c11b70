"""Export: ONNX (run by ONNX Runtime) and ExportedProgram files equal the eager model for batch sizes other than
the traced one, and carry the weights' record."""

from __future__ import annotations

import pytest
import torch

from motionformer.cli import main
from motionformer.export import EXAMPLE_BATCH, export_error, export_model, load_exported
from motionformer.models import InputSpec, WeightsInfo, create_model, save_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SMALL = dict(img_size=32, num_frames=4, num_classes=7)
TOLERANCE = 1e-4  # relative error of the logits in float32


def _model(name: str, **overrides):
    torch.manual_seed(0)
    model = create_model(name, **{**SMALL, **overrides}).eval()
    spec = InputSpec(num_frames=4, crop_size=model.img_size, class_names=[f"class {i}" for i in range(7)])
    model.weights_info = WeightsInfo(source="test", architecture=model.architecture, input=spec, dataset="test")
    return model


@pytest.mark.slow
@pytest.mark.parametrize("format", ["onnx", "exported-program"])
def test_mformer_tiny_export_equals_eager_for_other_batch_sizes(tmp_path, format):
    model = _model("mformer_tiny")
    path = export_model(model, tmp_path / "tiny", format=format)
    assert path.suffix == {"onnx": ".onnx", "exported-program": ".pt2"}[format]
    batch_sizes = (1, 3, 5)
    assert EXAMPLE_BATCH not in batch_sizes
    assert export_error(path, model, batch_sizes) < TOLERANCE
    run, info = load_exported(path)
    assert info.input == model.weights_info.input
    assert run(torch.randn(4, 3, 4, 32, 32)).shape == (4, 7)


@pytest.mark.slow
def test_orthoformer_onnx_export_equals_eager(tmp_path):
    model = _model("mformer_tiny_orthoformer", img_size=64, num_prototypes=4, prototype_selection="segment_means")
    path = export_model(model, tmp_path / "orthoformer.onnx", format="onnx")
    assert export_error(path, model, (1, 3)) < TOLERANCE


@pytest.mark.slow
def test_orthoformer_random_prototypes_export_with_a_fixed_generator(tmp_path):
    """The ExportedProgram draws Orthoformer's candidates like the eager model: equal from the same seed."""
    model = _model("mformer_tiny_orthoformer", img_size=64, num_prototypes=4)
    path = export_model(model, tmp_path / "orthoformer", format="exported-program")
    assert export_error(path, model, (1, 3)) < TOLERANCE
    with pytest.raises(ValueError, match=r"prototype_selection='orthogonal'.*exported-program"):
        export_model(model, tmp_path / "orthoformer.onnx", format="onnx")


def test_bad_format_or_suffix_names_it(tmp_path):
    model = _model("mformer_tiny", depth=1)
    with pytest.raises(ValueError, match="'tflite' is not one of onnx, exported-program"):
        export_model(model, tmp_path / "m", format="tflite")
    with pytest.raises(ValueError, match=r"m.pt2: a onnx file ends in .onnx"):
        export_model(model, tmp_path / "m.pt2", format="onnx")


@pytest.mark.slow
def test_export_command_writes_and_checks_the_file(tmp_path, capsys):
    weights, _ = save_model(_model("mformer_tiny", depth=1), tmp_path / "tiny")
    assert main(["export", str(weights), str(tmp_path / "tiny"), "--format", "exported-program"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(tmp_path / "tiny.pt2")
    assert float(lines[1].rsplit(" ", 1)[1]) < TOLERANCE


def test_export_command_names_a_missing_checkpoint(tmp_path, capsys):
    assert main(["export", str(tmp_path / "absent.safetensors"), str(tmp_path / "out.onnx")]) == 2
    assert "absent" in capsys.readouterr().err
