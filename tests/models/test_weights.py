"""Weights: released-format checkpoints built in the test, our format, image-ViT initialisation."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import yaml

from motionformer.models import (
    Motionformer,
    TrajectoryOptions,
    convert_checkpoint,
    from_checkpoint,
    init_from_image_vit,
    split_heads,
)

ARCH = dict(patch_size=16, tubelet_size=2, num_frames=4, embed_dim=32, depth=2, num_heads=2)
RELEASED = TrajectoryOptions(original_temporal_values=True)


def _released_cfg(attention="trajectory", dataset="Kinetics", classes=5, crop=32, embed_dim=32, **vit):
    """A PySlowFast-style config with the keys the released files carry (values for a tiny model)."""
    return {
        "TRAIN": {"DATASET": dataset, "BATCH_SIZE": 8},
        "TEST": {"NUM_ENSEMBLE_VIEWS": 10, "NUM_SPATIAL_CROPS": 3},
        "DATA": {"NUM_FRAMES": 4, "SAMPLING_RATE": 4, "TRAIN_CROP_SIZE": crop, "TEST_CROP_SIZE": crop,
                 "MEAN": [0.5, 0.5, 0.5], "STD": [0.5, 0.5, 0.5]},
        "MODEL": {"NUM_CLASSES": classes, "ARCH": "vit"},
        "VIT": {"ATTN_LAYER": attention, "PATCH_SIZE": 16, "PATCH_SIZE_TEMP": 2, "EMBED_DIM": embed_dim,
                "DEPTH": 2, "NUM_HEADS": 2, "MLP_RATIO": 4, "QKV_BIAS": True, "TEMPORAL_RESOLUTION": 2,
                "POS_EMBED": "separate", "USE_MLP": True, "HEAD_ACT": "tanh", "USE_ORIGINAL_TRAJ_ATTN_CODE": True,
                "APPROX_ATTN_TYPE": "none", "APPROX_ATTN_DIM": 128, **vit},
    }


def _write_released(path, model, cfg):
    state = {f"module.{key}": value for key, value in model.state_dict().items()}  # saved from DDP
    torch.save({"model_state": state, "epoch": 35, "optimizer_state": {}, "cfg": yaml.safe_dump(cfg)}, path)


@pytest.mark.parametrize("attention", ["trajectory", "joint", "divided"])
def test_released_checkpoint_round_trip(tmp_path, attention):
    source = Motionformer(**ARCH, img_size=32, num_classes=5, attention=attention, trajectory=RELEASED)
    path = tmp_path / "k400_tiny.pyth"
    _write_released(path, source, _released_cfg(attention))
    model = from_checkpoint(path)
    x = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(model(x), source.eval()(x), rtol=0, atol=0)
    spec = model.weights_info.input
    assert (spec.num_clips, spec.num_crops) == (10, 3) and spec.mean == (0.5, 0.5, 0.5)
    assert (spec.channel_order, spec.sampling, spec.sampling_rate, spec.crop_size) == ("rgb", "clips", 4, 32)
    if attention == "trajectory":
        assert all(block.attn.original_temporal_values for block in model.blocks)
        paper_form = Motionformer(**ARCH, img_size=32, num_classes=5).eval()
        paper_form.load_state_dict(source.state_dict())
        assert not torch.allclose(paper_form(x), model(x))


def test_released_epic_kitchens_has_verb_and_noun_heads(tmp_path):
    source = Motionformer(**ARCH, img_size=32, heads={"verb": 97, "noun": 300}, trajectory=RELEASED)
    path = tmp_path / "ek.pyth"
    _write_released(path, source, _released_cfg(dataset="Epickitchens", classes=397))
    model = from_checkpoint(path)
    assert model.heads == {"verb": 97, "noun": 300}
    assert {"head0.weight", "head1.weight"} <= set(model.state_dict())
    out = split_heads(model(torch.randn(1, 3, 4, 32, 32)), model.heads)
    assert out["verb"].shape == (1, 97) and out["noun"].shape == (1, 300)
    assert model.weights_info.input.channel_order == "bgr"  # the released pipeline read frames with OpenCV
    names = model.weights_info.input.class_names
    assert len(names["verb"]) == 97 and len(names["noun"]) == 300 and names["verb"][0] == "take"


def test_released_high_resolution_model_resizes_the_stored_grid(tmp_path):
    source = Motionformer(**ARCH, img_size=32, num_classes=5, trajectory=RELEASED)  # 2x2 grid stored
    path = tmp_path / "hr.pyth"
    _write_released(path, source, _released_cfg(crop=48))
    model = from_checkpoint(path)
    assert model.img_size == 48 and model.pos_embed.shape[1] == 1 + 4
    x = torch.randn(1, 3, 4, 48, 48)
    torch.testing.assert_close(model(x), source.eval()(x))


def test_config_that_does_not_match_the_tensors_is_named(tmp_path):
    source = Motionformer(**ARCH, img_size=32, num_classes=5)
    path = tmp_path / "bad.pyth"
    _write_released(path, source, _released_cfg(embed_dim=64))
    with pytest.raises(ValueError, match=r"bad.pyth: the config does not match .*cls_token"):
        from_checkpoint(path)
    cfg = _released_cfg()
    del cfg["VIT"]["DEPTH"]
    _write_released(path, source, cfg)
    with pytest.raises(ValueError, match=r"no key VIT\.DEPTH"):
        from_checkpoint(path)
    torch.save({"something": 1}, path)
    with pytest.raises(ValueError, match=r"not a released Motionformer checkpoint"):
        from_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        from_checkpoint(tmp_path / "missing.pyth")


def test_convert_writes_safetensors_and_metadata(tmp_path):
    source = Motionformer(**ARCH, img_size=32, num_classes=5, trajectory=RELEASED)
    _write_released(tmp_path / "k.pyth", source, _released_cfg())
    weights, meta = convert_checkpoint(tmp_path / "k.pyth", tmp_path / "out" / "k400_tiny")
    record = json.loads(meta.read_text())
    assert weights.suffix == ".safetensors" and record["outputs"] == "logits"
    assert record["format"] == "motionformer/2" and record["input"]["num_frames"] == 4
    assert record["architecture"]["trajectory"]["original_temporal_values"] is True
    model = from_checkpoint(meta)
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(model(x), source.eval()(x))
    assert not list((tmp_path / "out").glob("*.tmp"))


def _tiny_vit():
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=0).eval()


def test_joint_model_from_image_vit_sees_a_still_clip_as_the_image():
    vit = _tiny_vit()
    model = Motionformer(**{**ARCH, "num_frames": 2}, img_size=32, attention="joint").eval()
    report = init_from_image_vit(model, vit.state_dict())
    assert "temp_embed (zeros)" in report.loaded and "head.weight" in report.new
    image = torch.randn(1, 3, 32, 32)
    clip = image[:, :, None].expand(1, 3, 2, 32, 32)  # identical frames, one token frame
    torch.testing.assert_close(model.forward_features(clip)[:, 0], vit.forward_features(image)[:, 0])


def test_trajectory_model_from_image_vit_file(tmp_path):
    vit = _tiny_vit()
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    model = Motionformer(**ARCH, img_size=48)  # a larger crop: the position table is resized
    report = init_from_image_vit(model, tmp_path / "vit.pth")
    assert "blocks.0.attn.proj_kv.weight" in report.new and "blocks.0.attn.qkv.weight" in report.loaded
    torch.testing.assert_close(model.patch_embed_3d.proj.weight[:, :, 1], vit.patch_embed.proj.weight)
    assert torch.count_nonzero(model.patch_embed_3d.proj.weight[:, :, 0]) == 0
    with pytest.raises(FileNotFoundError):
        init_from_image_vit(model, tmp_path / "nothing.pth")
    with pytest.raises(ValueError, match="right ViT size"):
        init_from_image_vit(Motionformer(**{**ARCH, "embed_dim": 64}, img_size=32), vit.state_dict())


def test_convert_command(tmp_path, capsys):
    from motionformer.cli import main

    source = Motionformer(**ARCH, img_size=32, num_classes=5, trajectory=RELEASED)
    _write_released(tmp_path / "k.pyth", source, _released_cfg())
    assert main(["convert", str(tmp_path / "k.pyth"), str(tmp_path / "k")]) == 0
    assert (tmp_path / "k.safetensors").exists() and (tmp_path / "k.json").exists()
    assert main(["convert", str(tmp_path / "nothing.pyth"), str(tmp_path / "n")]) == 2
    assert "not found: " in capsys.readouterr().err


def test_pickles_with_other_objects_need_trust(tmp_path):
    import argparse

    source = Motionformer(**ARCH, img_size=32, num_classes=5, trajectory=RELEASED)
    path = tmp_path / "old.pyth"
    _write_released(path, source, _released_cfg())
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["args"] = argparse.Namespace(cfg_file="k400.yaml")  # not a plain container
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="trust_pickle=True"):
        from_checkpoint(path)
    assert from_checkpoint(path, trust_pickle=True).img_size == 32


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def test_unreadable_weight_files_are_named(tmp_path):
    source = Motionformer(**ARCH, img_size=32, num_classes=5, trajectory=RELEASED)
    _write_released(tmp_path / "k.pyth", source, _released_cfg())
    with pytest.raises(ValueError, match=r"k.pyth: cannot be read as a released Motionformer checkpoint"):
        from_checkpoint(_truncate(tmp_path / "k.pyth"))
    _write_released(tmp_path / "k2.pyth", source, _released_cfg())
    weights, meta = convert_checkpoint(tmp_path / "k2.pyth", tmp_path / "ours")
    _truncate(weights)
    with pytest.raises(ValueError, match=r"ours.safetensors: cannot be read as motionformer weights"):
        from_checkpoint(weights)
    with pytest.raises(ValueError, match=r"is a folder; expected"):
        from_checkpoint(tmp_path)
    record = json.loads(meta.read_text())
    meta.write_text(json.dumps({**record, "architecture": "mformer_b"}))
    with pytest.raises(ValueError, match=r"ours.json: expected an 'architecture' mapping .* found str"):
        from_checkpoint(meta)


def test_image_vit_file_with_other_objects_is_refused(tmp_path):
    import argparse

    path = tmp_path / "vit.pth"
    torch.save({"model": _tiny_vit().state_dict(), "args": argparse.Namespace(lr=1)}, path)
    model = Motionformer(**ARCH, img_size=32, num_classes=5)
    with pytest.raises(ValueError, match=r"vit.pth: refused: unpickling it would run code"):
        init_from_image_vit(model, path)
