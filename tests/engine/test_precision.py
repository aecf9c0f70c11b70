"""Inference precision: which dtype fp32, bf16 and auto mean on a CPU, and that bf16 inference stays close."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from motionformer.engine import precision
from motionformer.engine.precision import autocast, cpu_flags, inference_dtype
from motionformer.inference import predict
from motionformer.models import InputSpec, WeightsInfo, create_model, save_model

CPU = torch.device("cpu")
CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 {extra}\nbogomips\t: 4000\n\nprocessor\t: 1\nflags\t\t: fpu\n"


def test_cpu_flags_reads_every_flags_line():
    assert cpu_flags(CPUINFO.format(extra="avx512_bf16")) == {"fpu", "sse2", "avx2", "avx512_bf16"}
    assert cpu_flags("model name\t: some cpu\n") == set()


@pytest.mark.parametrize(("extra", "native"), [("avx512_bf16", True), ("amx_bf16 amx_tile", True), ("avx512f", False)])
def test_native_bf16_from_cpuinfo(tmp_path, monkeypatch, extra, native):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO.format(extra=extra))
    monkeypatch.setattr(precision, "CPUINFO", info)
    precision.cpu_has_native_bf16.cache_clear()
    try:
        assert precision.cpu_has_native_bf16() is native
    finally:
        precision.cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize("native", [True, False])
def test_inference_dtype_on_the_cpu(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert inference_dtype("fp32", CPU) is None
    assert inference_dtype("bf16", CPU) is torch.bfloat16
    assert inference_dtype("auto", CPU) is (torch.bfloat16 if native else None)


def test_unknown_precision_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"precision='fp16'.*auto, fp32, bf16"):
        inference_dtype("fp16", CPU)


def test_bf16_inference_is_close_to_fp32():
    torch.manual_seed(0)
    model = create_model("mformer_tiny", img_size=32, num_frames=4, depth=2, num_classes=10).eval()
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        full = model(clip)
        with autocast(CPU, inference_dtype("bf16", CPU)):
            half = model(clip)
    assert half.dtype is torch.bfloat16
    assert not torch.equal(half.float(), full)
    assert ((half.float() - full).norm() / full.norm()).item() < 0.05


def test_predict_runs_at_the_precision_asked(tmp_path):
    frames = tmp_path / "video"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for number in range(1, 17):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(frames / f"{number:06d}.png")
    torch.manual_seed(0)
    model = create_model("mformer_tiny", img_size=32, num_frames=4, depth=2, num_classes=10)
    info = WeightsInfo(source="test", architecture=model.architecture, input=InputSpec(num_frames=4, crop_size=32))
    weights, _ = save_model(model, tmp_path / "m", info)
    full, half = (predict([frames], weights, device="cpu", precision=name)[0].scores[""] for name in ("fp32", "bf16"))
    assert full != half
    torch.testing.assert_close(torch.tensor(half), torch.tensor(full), rtol=0, atol=0.02)
