"""input_spec: what a run feeds a model, from its config over what the weights expect."""

from __future__ import annotations

from motionformer.engine.build import input_spec, model_from_weights
from motionformer.engine.config import load_config
from motionformer.models import InputSpec, WeightsInfo, create_model, save_model

OVERRIDES = ["data.num_frames=4", "data.sampling_rate=3", "eval.num_clips=2", "eval.num_crops=3"]


def test_fresh_weights_take_the_config_and_the_model():
    config = load_config("synthetic-tiny", [*OVERRIDES, "data.recipe=ssv2", "data.mean=[0.4, 0.4, 0.4]"])
    model = create_model("mformer_tiny", num_classes=3, **config.model.options)
    spec = input_spec(config, model, ["a", "b", "c"])
    assert spec == InputSpec(num_frames=4, crop_size=32, sampling_rate=3, mean=(0.4, 0.4, 0.4), num_clips=2,
                             num_crops=3, class_names=["a", "b", "c"], sampling="segments")


def test_loaded_weights_keep_what_they_expect_unless_the_config_says(tmp_path):
    config = load_config("synthetic-tiny", OVERRIDES)
    model = create_model("mformer_tiny", num_classes=3, **config.model.options)
    expected = InputSpec(num_frames=8, crop_size=32, mean=(0.45, 0.45, 0.45), channel_order="bgr", sampling="segments",
                         class_names=["x", "y", "z"])
    save_model(model, tmp_path / "m", WeightsInfo(source="test", architecture=model.architecture, input=expected))
    loaded, class_names, spec = model_from_weights(tmp_path / "m.safetensors")
    assert spec == expected and class_names == ["x", "y", "z"]
    run = input_spec(config, loaded)
    assert (run.num_frames, run.sampling_rate, run.num_clips, run.num_crops) == (4, 3, 2, 3)  # the config's
    assert (run.mean, run.channel_order, run.sampling, run.class_names) == (expected.mean, "bgr", "segments",
                                                                             ["x", "y", "z"])  # the weights'
