"""The model zoo: entries, loading by name, and downloads from a local HTTP server (no test touches the network)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import threading
import types
from pathlib import Path

import pytest
import torch

from motionformer.cli import main
from motionformer.data.synthetic import generate
from motionformer.engine.build import input_spec, load_finetune
from motionformer.engine.config import load_config
from motionformer.models import Motionformer, TrajectoryOptions, WeightsInfo, create_model, from_checkpoint, zoo
from tests.models.test_weights import _released_cfg, _write_released

FILES = {  # the authors' released files (released-protocol.md) and their top-1 (action top-1 for Epic-Kitchens)
    "k400_joint_224_16x4.pyth": 79.2, "k400_divided_224_16x4.pyth": 78.5, "k400_motionformer_224_16x4.pyth": 79.7,
    "k400_motionformer_336_16x8.pyth": 81.1, "k400_motionformer_224_32x3.pyth": 80.2,
    "k600_motionformer_224_16x4.pyth": 81.6, "k600_motionformer_336_16x8.pyth": 82.7,
    "k600_motionformer_224_32x3.pyth": 82.2, "ssv2_joint_224_16x4.pyth": 64.0, "ssv2_divided_224_16x4.pyth": 64.2,
    "ssv2_motionformer_224_16x4.pyth": 66.5, "ssv2_motionformer_336_16x4.pyth": 67.1,
    "ssv2_motionformer_224_32x3.pyth": 68.1, "ek_motionformer_224_16x4.pyth": 43.1,
    "ek_motionformer_336_16x4.pyth": 44.5, "ek_motionformer_224_32x3.pyth": 44.1,
}
TINY = dict(img_size=32, patch_size=16, num_frames=4, embed_dim=32, depth=2, num_heads=2)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv(zoo.HOME_VARIABLE, str(folder))
    return folder


@pytest.fixture
def released_file(tmp_path) -> tuple[Path, Motionformer]:
    """A tiny Kinetics-style checkpoint in the released format."""
    model = Motionformer(**TINY, num_classes=5, trajectory=TrajectoryOptions(original_temporal_values=True))
    path = tmp_path / "served" / "k400_motionformer_224_16x4.pyth"
    path.parent.mkdir()
    _write_released(path, model, _released_cfg())
    return path, model


@pytest.fixture
def server(released_file, monkeypatch):
    """An HTTP server on 127.0.0.1 serving the folder of ``released_file``; downloads are pointed at it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(released_file[0].parent))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(zoo.URL_VARIABLE, f"http://127.0.0.1:{httpd.server_address[1]}/")
    yield httpd
    httpd.shutdown()
    thread.join()


def test_one_entry_per_released_file():
    entries = [member.value for member in zoo.ReleasedWeights]
    assert {entry.file: entry.accuracy.get("top1", entry.accuracy.get("action_top1")) for entry in entries} == FILES
    assert len({entry.name for entry in entries}) == 16
    for entry in entries:
        assert entry.url == f"{zoo.RELEASE_URL}/{entry.file}"
        spec = entry.input
        frames, crop = entry.file.removesuffix(".pyth").split("_")[-2:][::-1]
        assert (spec.crop_size, f"{spec.num_frames}x{spec.sampling_rate}") == (int(crop), frames)
        ssv2, epic = entry.file.startswith("ssv2"), entry.file.startswith("ek")
        assert spec.channel_order == ("bgr" if ssv2 or epic else "rgb")
        assert (spec.sampling, spec.num_clips, spec.num_crops) == (("segments", 1, 3) if ssv2 else ("clips", 10, 3))
        expected = {"k400": 400, "k600": 600, "ssv2": 174}.get(entry.file[:4])
        names = spec.class_names
        assert ({k: len(v) for k, v in names.items()} == {"verb": 97, "noun": 300}) if epic else len(names) == expected
    assert zoo.get_weights("K400_MFORMER_B") is zoo.ReleasedWeights.K400_MFORMER_B.value


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match="did you mean k400_mformer_l, k400_mformer_b"):
        zoo.get_weights("k400_mformer")


@pytest.mark.parametrize("name", zoo.list_weights())
def test_each_preset_tests_its_released_weights_as_the_authors_did(name):
    """``motionformer test NAME checkpoint=NAME`` feeds the weights their own sampling, frames, stride, crop,
    views and channel order."""
    entry = zoo.get_weights(name)
    weights = types.SimpleNamespace(weights_info=WeightsInfo(source=name, architecture={}, input=entry.input))
    config = load_config(name)
    spec = input_spec(config, weights)
    expected = entry.input
    if expected.sampling == "segments":  # a stride means nothing to segments
        expected = dataclasses.replace(expected, sampling_rate=spec.sampling_rate)
    assert spec == expected and config.model.name == entry.architecture


def test_absent_file_names_the_url_and_the_path(home):
    with pytest.raises(FileNotFoundError) as error:
        from_checkpoint("ssv2_mformer_b")
    path = home / "ssv2_motionformer_224_16x4.pyth"
    assert f"download {zoo.RELEASE_URL}/ssv2_motionformer_224_16x4.pyth and put it at {path}" in str(error.value)
    assert "motionformer weights download ssv2_mformer_b" in str(error.value)
    assert not home.exists()  # nothing downloaded unless asked


def test_names_load_from_the_weights_folder_and_finetune(home, released_file):
    path, source = released_file
    home.mkdir()
    (home / path.name).write_bytes(path.read_bytes())
    model = from_checkpoint("k400_mformer_b")
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(model(x), source.eval()(x), rtol=0, atol=0)
    target = create_model("mformer_tiny", num_classes=7, **TINY)
    report = load_finetune(target, "k400_mformer_b")
    assert set(report["new"]) == {"head.weight", "head.bias"} and target.source_input.channel_order == "rgb"


def test_download_writes_the_file_and_its_sha256(home, released_file, server, capsys):
    path, source = released_file
    model = from_checkpoint("k400_mformer_b", download=True)
    stored = home / path.name
    assert stored.read_bytes() == path.read_bytes()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (home / f"{path.name}.sha256").read_text() == f"{digest}  {path.name}\n"
    assert zoo.recorded_sha256("k400_mformer_b") == digest
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(model(x), source.eval()(x), rtol=0, atol=0)
    stored.unlink()
    assert main(["weights", "download", "k400_mformer_b"]) == 0
    assert capsys.readouterr().out.strip() == f"{stored}  sha256 {digest}"


def test_failed_download_names_the_url_and_the_path_and_leaves_nothing(home, server):
    with pytest.raises(ConnectionError) as error:
        zoo.download_weights("k600_mformer_b")  # the server does not have it: 404
    path = home / "k600_motionformer_224_16x4.pyth"
    assert f"{zoo.get_weights('k600_mformer_b').url} (HTTP Error 404" in str(error.value)
    assert str(error.value).endswith(f"put it at {path}")
    assert list(home.iterdir()) == []


def test_weights_command_marks_the_files_present(home, released_file, capsys):
    home.mkdir()
    (home / released_file[0].name).write_bytes(released_file[0].read_bytes())
    assert main(["weights"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"weights folder: {home} (set MOTIONFORMER_HOME to change it)"
    rows = {line.split()[0]: line for line in lines[2:]}
    assert len(rows) == 16 and rows["k400_mformer_b"].endswith("yes") and rows["k600_mformer_b"].endswith("-")
    assert "16 segments, 224px, 1x3 views, BGR" in rows["ssv2_mformer_b"] and "66.5 / 90.1" in rows["ssv2_mformer_b"]
    assert "action 43.1, noun 56.5" in rows["epic_mformer_b"]


def test_predict_and_test_take_a_zoo_name(home, tmp_path, capsys):
    model = Motionformer(**TINY, num_classes=10, trajectory=TrajectoryOptions(original_temporal_values=True))
    home.mkdir()
    _write_released(home / "k400_motionformer_224_16x4.pyth", model, _released_cfg(classes=10))
    generate(tmp_path / "data", num_videos=10, size=32, frames=8, workers=1)
    video = next((tmp_path / "data" / "videos").rglob("*.mp4"))
    assert main(["predict", str(video), "--checkpoint", "k400_mformer_b", "--json", "--device", "cpu"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["video"] == str(video) and len(answer["scores"][""]) == 10
    output = tmp_path / "test"
    assert main(["test", "k400_mformer_b", "checkpoint=k400_mformer_b", f"data.root={tmp_path / 'data'}",
                 "data.format=csv", "data.val=train.csv", f"output_dir={output}", "data.workers=0", "eval.num_clips=2",
                 "eval.confusion=false", "train.device=cpu"]) == 0
    assert json.loads((output / "test_metrics.json").read_text())["videos"] == 10
