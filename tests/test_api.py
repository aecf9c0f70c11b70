"""The one-call entry points at the package's top level: ``motionformer.predict`` and ``motionformer.extract``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import motionformer
from motionformer.extraction import extract as extract_video
from motionformer.inference import TimelineWindow, VideoPrediction, predict_timeline
from motionformer.inference import predict as predict_videos
from motionformer.models import InputSpec, Motionformer, TrajectoryOptions, WeightsInfo, create_model, save_model

from .data.conftest import make_video
from .models.test_zoo import TINY as ZOO_TINY
from .models.test_zoo import _released_cfg, _write_released

NAMES = [f"class {i}" for i in range(10)]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    model = create_model("mformer_tiny", num_classes=10, img_size=32, patch_size=8, num_frames=4, embed_dim=32,
                         depth=2, num_heads=2)
    info = WeightsInfo(source="test", architecture=model.architecture,
                       input=InputSpec(num_frames=4, crop_size=32, sampling_rate=2, num_clips=2, class_names=NAMES))
    weights = save_model(model, root / "tiny", info)[0]
    return make_video(root / "a.mp4", 40, size=(40, 32)), make_video(root / "b.mp4", 60, size=(40, 32)), weights


def test_predict_gives_class_names_and_probabilities(files):
    first, second, weights = files
    answer = motionformer.predict(first, weights, top_k=3, device="cpu")
    assert isinstance(answer, VideoPrediction) and answer.video == str(first)
    assert sum(answer.scores[""]) == pytest.approx(1.0, abs=1e-5)
    assert [name for name, _ in answer.top[""]] == [NAMES[i] for i in
                                                   torch.tensor(answer.scores[""]).topk(3).indices.tolist()]
    both = motionformer.predict([first, second], weights, device="cpu")
    assert both == predict_videos([first, second], weights, device="cpu")


def test_predict_with_a_window_gives_the_timeline(files):
    first, _, weights = files
    timeline = motionformer.predict(first, weights, window=0.5, stride=0.25, device="cpu")
    assert all(isinstance(window, TimelineWindow) for window in timeline) and len(timeline) == 4  # 40 frames: 1.33 s
    assert timeline == list(predict_timeline([first], weights, window=0.5, stride=0.25, device="cpu"))
    with pytest.raises(ValueError, match=r"stride=1\.0 needs a window"):
        motionformer.predict(first, weights, stride=1.0)


def test_extract_gives_the_features_tensor(files):
    first, _, weights = files
    features = motionformer.extract(first, weights, feature="cls", device="cpu")
    assert features.features.shape == (1, 32) and features.times is None
    torch.testing.assert_close(features.features, extract_video(first, weights, feature="cls", device="cpu").features,
                               rtol=0, atol=0)


def test_predict_takes_a_model_zoo_name(files, tmp_path, monkeypatch):
    first, _, _ = files
    monkeypatch.setenv("MOTIONFORMER_HOME", str(tmp_path))
    model = Motionformer(**ZOO_TINY, num_classes=10, trajectory=TrajectoryOptions(original_temporal_values=True))
    _write_released(tmp_path / "k400_motionformer_224_16x4.pyth", model, _released_cfg(classes=10))
    answer = motionformer.predict(first, "k400_mformer_b", top_k=2, device="cpu")
    assert len(answer.scores[""]) == 10 and sum(answer.scores[""]) == pytest.approx(1.0, abs=1e-5)
    assert motionformer.extract(first, "k400_mformer_b", device="cpu").features.shape == (1, model.embed_dim)


def test_importing_the_package_does_not_load_inference():
    code = "import sys, motionformer; print(sorted(m for m in sys.modules if m.startswith('motionformer.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "motionformer.inference" not in loaded and "motionformer.extraction" not in loaded
