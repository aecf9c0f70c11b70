"""InputSpec and the weight file's metadata: checked values, JSON round trip, older files."""

from __future__ import annotations

import json

import pytest
import torch

from motionformer.models import (
    InputSpec,
    Motionformer,
    WeightsInfo,
    create_model,
    from_checkpoint,
    save_model,
    split_heads,
)
from motionformer.models.registry import model_arguments

TINY = dict(img_size=32, patch_size=16, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)


def test_defaults_and_json_round_trip():
    spec = InputSpec(num_frames=16, crop_size=224, mean=[0.45, 0.45, 0.45], class_names=["a", "b"])
    assert spec.channel_order == "rgb" and spec.sampling == "clips" and spec.mean == (0.45, 0.45, 0.45)
    assert InputSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


@pytest.mark.parametrize(("values", "message"), [
    ({"channel_order": "gbr"}, r"channel_order='gbr' is not one of rgb, bgr"),
    ({"sampling": "frames"}, r"sampling='frames' is not one of clips, segments"),
    ({"num_frames": 0}, r"num_frames must be an integer >= 1, got 0"),
    ({"num_crops": 2}, r"num_crops must be 1 or 3, got 2"),
    ({"mean": (0.5, 0.5)}, r"mean must hold 3 values"),
    ({"std": (0.5, 0.0, 0.5)}, r"std must be > 0"),
])
def test_bad_values_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        InputSpec(**{"num_frames": 8, "crop_size": 112, **values})


def test_from_json_names_the_source_and_unknown_keys():
    with pytest.raises(ValueError, match=r"model.json: unknown input-spec key\(s\) frames"):
        InputSpec.from_json({"frames": 8, "crop_size": 112}, "model.json")


def test_weight_files_keep_the_spec(tmp_path):
    model = create_model("mformer_tiny", **TINY)
    spec = InputSpec(num_frames=4, crop_size=32, sampling_rate=2, channel_order="bgr", sampling="segments",
                     num_clips=2, num_crops=3, class_names=[str(i) for i in range(5)])
    save_model(model, tmp_path / "m", WeightsInfo(source="test", architecture=model.architecture, input=spec))
    assert from_checkpoint(tmp_path / "m.json").weights_info.input == spec


def test_first_format_files_with_flat_options_still_load(tmp_path):
    """A ``motionformer/1`` record: input fields at the top level, trajectory options flat in the architecture."""
    flat = {**TINY, "approx": "orthoformer", "num_prototypes": 2, "original_temporal_values": True}
    model = Motionformer(**model_arguments(flat))
    save_model(model, tmp_path / "old")
    record = {"format": "motionformer/1", "outputs": "logits", "source": "old", "architecture": flat, "img_size": 32,
              "num_frames": 4, "sampling_rate": 8, "mean": [0.5] * 3, "std": [0.5] * 3, "dataset": "kinetics",
              "class_names": None, "test_views": [10, 3], "original_temporal_values": True}
    (tmp_path / "old.json").write_text(json.dumps(record))
    loaded = from_checkpoint(tmp_path / "old.json")
    spec = loaded.weights_info.input
    assert (spec.sampling_rate, spec.num_clips, spec.num_crops, spec.channel_order) == (8, 10, 3, "rgb")
    assert loaded.trajectory == model.trajectory and loaded.architecture == model.architecture
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_architecture_rebuilds_the_same_network():
    model = create_model("mformer_tiny", **TINY, approx="nystrom", num_prototypes=2, heads={"a": 2, "b": 3})
    again = Motionformer(**model_arguments(json.loads(json.dumps(model.architecture))))
    assert again.architecture == model.architecture and again.heads == {"a": 2, "b": 3}
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_split_heads_checks_the_width():
    logits = torch.arange(10.0).view(2, 5)
    parts = split_heads(logits, {"verb": 2, "noun": 3})
    torch.testing.assert_close(torch.cat([parts["verb"], parts["noun"]], 1), logits)
    with pytest.raises(ValueError, match=r"logits have 5 columns but the heads \{'': 4\} have 4 classes"):
        split_heads(logits, {"": 4})
