"""The Hugging Face Hub convention: save_pretrained / from_pretrained with local folders only (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file, save_file

from motionformer.models import InputSpec, Motionformer, WeightsInfo, create_model, from_checkpoint
from motionformer.models.hub import CONFIG_NAME, WEIGHTS_NAME, from_pretrained, save_pretrained

TINY = dict(img_size=32, num_frames=4, depth=2)


def _model(**overrides) -> Motionformer:
    torch.manual_seed(0)
    model = create_model("mformer_tiny", **{**TINY, **overrides}).eval()
    names = {head: [f"{head} {i}" for i in range(classes)] for head, classes in model.heads.items()}
    spec = InputSpec(num_frames=4, crop_size=32, sampling_rate=2, channel_order="bgr", sampling="segments",
                     class_names=names.get("", names))
    model.weights_info = WeightsInfo(source="test", architecture=model.architecture, input=spec, dataset="toy")
    return model


@pytest.mark.parametrize("overrides", [dict(num_classes=5),
                                       dict(heads={"verb": 3, "noun": 4}, approx="orthoformer", num_prototypes=2,
                                            prototype_selection="segment_means")])
def test_round_trip_keeps_weights_architecture_and_input_spec(tmp_path, overrides):
    model = _model(**overrides)
    folder = model.save_pretrained(tmp_path / "pretrained")
    assert sorted(path.name for path in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    assert json.loads((folder / CONFIG_NAME).read_text())["input"]["channel_order"] == "bgr"
    loaded = Motionformer.from_pretrained(folder)
    assert not loaded.training
    assert loaded.heads == model.heads and loaded.trajectory == model.trajectory
    assert loaded.weights_info.input == model.weights_info.input
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(clip), model(clip))


def test_from_checkpoint_reads_a_pretrained_folder(tmp_path):
    model = _model(num_classes=5)
    loaded = from_checkpoint(save_pretrained(model, tmp_path / "m"))
    assert loaded.weights_info == model.weights_info
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def _edit_weights(folder: Path, edit) -> None:
    state = load_file(folder / WEIGHTS_NAME)
    edit(state)
    save_file(state, folder / WEIGHTS_NAME)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda state: state.pop("head.weight"), r"missing \['head.weight'\]"),
    (lambda state: state.update(extra=torch.zeros(1)), r"unexpected \['extra'\]"),
    (lambda state: state.update({"head.bias": torch.zeros(3)}), r"head.bias: file \(3,\) vs model \(5,\)"),
])
def test_loading_is_strict_and_names_the_tensor(tmp_path, edit, message):
    folder = save_pretrained(_model(num_classes=5), tmp_path / "m")
    _edit_weights(folder, edit)
    with pytest.raises(ValueError, match=message):
        from_pretrained(folder)


def test_a_repository_id_is_downloaded_with_the_options(tmp_path, monkeypatch):
    """A name that is no folder goes to huggingface_hub (here a stand-in serving a local folder)."""
    folder = save_pretrained(_model(num_classes=5), tmp_path / "repo")
    calls = []

    def download(repo_id, filename, **options):
        calls.append((repo_id, filename, options["revision"]))
        return str(folder / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.chdir(tmp_path)
    model = from_pretrained("owner/motionformer-tiny", revision="v1")
    assert calls == [("owner/motionformer-tiny", CONFIG_NAME, "v1"), ("owner/motionformer-tiny", WEIGHTS_NAME, "v1")]
    assert model.weights_info.dataset == "toy"


def test_unknown_names_are_a_file_not_found_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a Hugging Face Hub repository id"):
        from_pretrained("no such/folder name!", local_files_only=True, cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match=r"owner/absent: no such folder, and config.json could not be had"):
        from_pretrained("owner/absent", local_files_only=True, cache_dir=tmp_path / "cache")


def test_files_are_refused_with_what_to_use_instead(tmp_path):
    file = tmp_path / "weights.safetensors"
    file.write_bytes(b"")
    with pytest.raises(ValueError, match="is a file; save_pretrained writes a folder"):
        save_pretrained(_model(num_classes=5), file)
    with pytest.raises(ValueError, match="from_checkpoint reads single weight files"):
        from_pretrained(file)
