from pathlib import Path

import pytest

from motionformer.engine.config import (
    Config,
    ConfigError,
    config_from_dict,
    list_presets,
    load_config,
    to_dict,
    to_yaml,
    valid_keys,
)


def test_every_preset_loads_with_its_recipe():
    names = list_presets()
    for dataset in ("k400", "k600", "ssv2", "epic"):
        for model in ("mformer_b", "mformer_l", "mformer_hr", "joint_b", "divided_b"):
            assert f"{dataset}_{model}" in names
    assert "synthetic-tiny" in names
    for name in names:
        config = load_config(name)
        assert isinstance(config, Config)


def test_presets_carry_the_paper_recipe():
    k400 = load_config("k400_mformer_b")
    assert (k400.model.name, k400.data.sampling_rate, k400.train.epochs, k400.train.lr) == ("mformer_b", 4, 35, 1e-4)
    assert (k400.train.lr_steps, k400.train.effective_batch, k400.train.label_smoothing) == ([20, 30], 256, 0.2)
    assert (k400.eval.num_clips, k400.eval.num_crops, k400.train.weight_decay) == (10, 3, 0.05)
    hr = load_config("k400_mformer_hr")
    assert (hr.model.name, hr.data.sampling_rate, hr.data.scale_range, hr.train.lr) == ("mformer_hr", 8, [384, 480],
                                                                                       3.75e-5)
    large = load_config("k600_mformer_l")
    assert (large.model.name, large.data.sampling_rate, large.train.lr) == ("mformer_l", 3, 3.75e-5)
    ssv2 = load_config("ssv2_mformer_b")
    assert (ssv2.data.format, ssv2.eval.num_clips, ssv2.eval.num_crops) == ("ssv2", 1, 3)
    epic = load_config("epic_joint_b")
    assert (epic.model.name, epic.train.epochs, epic.train.lr_steps) == ("joint_b", 50, [30, 40])


def test_overrides_parse_values_as_yaml():
    config = load_config("synthetic-tiny", ["train.epochs=3", "data.scale_range=[70, 80]", "train.clip_grad=null",
                                            "model.options.depth=2", "train.lr=5e-4", "model.heads={verb: 3}"])
    assert config.train.epochs == 3 and config.data.scale_range == [70, 80] and config.train.clip_grad is None
    assert config.model.options["depth"] == 2 and config.train.lr == 5e-4 and config.model.heads == {"verb": 3}


@pytest.mark.parametrize("override, expected", [
    ("train.epoch=2", "unknown key 'train.epoch'; did you mean train.epochs"),
    ("trian.lr=1", "unknown key 'trian'"),
    ("data.batchsize=2", "did you mean data.batch_size"),
    ("train.lr=abc", "bad value for 'train.lr'"),
    ("epochs", "expected key=value"),
    ("train.precision=fp8", "train.precision='fp8' is not one of auto, fp32, bf16, fp16"),
    ("data.format=avi", "data.format='avi' is not one of auto, kinetics, ssv2, epic, csv, folder"),
    ("data.recipe=k400", "data.recipe='k400' is not one of kinetics, ssv2, epic"),
    ("train.schedule=linear", "train.schedule='linear' is not one of steps, cosine"),
    ("train.device=gpu", "train.device='gpu' is not one of auto, cpu, mps, cuda, cuda:N"),
    ("model.options.oversample=2", "model.options: unknown model argument(s) oversample; valid: "),
    ("model.options.approx=fast", "model.options: trajectory option approx='fast' is not one of orthoformer, nystrom"),
    ("eval.num_crops=2", "eval.num_crops must be 1 or 3"),
    ("train.lr_steps=[30, 20]", "train.lr_steps must be increasing"),
])
def test_bad_overrides_name_the_key(override, expected):
    with pytest.raises(ConfigError) as caught:
        load_config("synthetic-tiny", [override])
    assert expected in str(caught.value)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_devices_of_the_known_forms_pass(device):
    assert load_config("synthetic-tiny", [f"train.device={device}"]).train.device == device


def test_unknown_preset_suggests_close_names():
    with pytest.raises(ConfigError, match="did you mean k400_mformer_b"):
        load_config("k400_mformer_bb")


def test_yaml_file_with_base_and_errors_naming_the_file(tmp_path: Path):
    good = tmp_path / "mine.yaml"
    good.write_text("_base_: synthetic-tiny\ntrain:\n  epochs: 5\n")
    config = load_config(good)
    assert config.train.epochs == 5 and config.model.name == "mformer_tiny"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epocs: 5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'train.epocs'; did you mean train.epochs"):
        load_config(bad)
    loop = tmp_path / "loop.yaml"
    loop.write_text("_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="refers back to itself"):
        load_config(loop)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trips_through_yaml():
    import yaml

    config = load_config("epic_mformer_hr", ["seed=3"])
    again = config_from_dict(yaml.safe_load(to_yaml(config)))
    assert to_dict(again) == to_dict(config)


def test_valid_keys_cover_every_section():
    keys = set(valid_keys())
    assert {"model.name", "data.root", "train.epochs", "eval.num_clips", "output_dir", "seed", "checkpoint"} <= keys


def _numeric_keys(cls: type, prefix: str = "") -> list[str]:
    """Dotted keys of the config dataclasses whose values are numbers (or lists / dicts of numbers)."""
    import dataclasses
    import typing

    keys = []
    for field in dataclasses.fields(cls):
        kind = typing.get_type_hints(cls)[field.name]
        if dataclasses.is_dataclass(kind):
            keys += _numeric_keys(kind, f"{prefix}{field.name}.")
        elif field.name != "options" and any(number in str(kind) for number in ("int", "float")):
            keys.append(f"{prefix}{field.name}")
    return keys


def test_every_numeric_key_has_a_range():
    from motionformer.engine.config import RANGES, Config

    assert sorted(_numeric_keys(Config)) == sorted(RANGES)


@pytest.mark.parametrize(("override", "message"), [
    ("train.log_every=0", "train.log_every=0 is out of range: must be >= 1"),
    ("model.drop_path_rate=2", "model.drop_path_rate=2.0 is out of range: must be >= 0 and < 1"),
    ("data.crop_size=-32", "data.crop_size=-32 is out of range: must be >= 1"),
    ("data.crop_size=0", "data.crop_size=0 is out of range"),
    ("data.num_frames=0", "data.num_frames=0 is out of range"),
    ("train.clip_grad=-1", "train.clip_grad=-1.0 is out of range: must be > 0"),
    ("train.label_smoothing=5", "train.label_smoothing=5.0 is out of range: must be >= 0 and < 1"),
    ("train.max_steps=0", "train.max_steps=0 is out of range: must be >= 1"),
    ("data.std=[0.5, 0, 0.5]", "data.std=[0.5, 0.0, 0.5] is out of range: must be > 0"),
    ("data.scale_range=[320, 256]", "data.scale_range must be [low, high] with low <= high"),
    ("data.mean=[0.5, 0.5]", "data.mean must hold 3 values"),
    ("model.options.foo=1", "model.options: unknown model argument(s) foo; valid: img_size"),
])
def test_out_of_range_values_are_refused_before_any_work(override, message):
    from motionformer.engine.config import ConfigError, load_config

    with pytest.raises(ConfigError) as refused:
        load_config("synthetic-tiny", [override])
    assert message in str(refused.value)
