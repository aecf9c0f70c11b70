"""What a GPU user relies on, shown on the CPU: one all-reduce per accumulated step, the schedule and the fp16
scaler, the class-token-only last block, uint8 clips normalised on the device, and torch.compile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from motionformer import create_model
from motionformer.data.transforms import normalize_clips, seeded, train_transform
from motionformer.engine import distributed
from motionformer.engine.optim import build_scheduler
from motionformer.engine.precision import allow_tf32
from motionformer.engine.step import TrainStep

CPU = torch.device("cpu")
TINY = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo process group of one process (this one), torn down afterwards."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _all_reduces_per_step(accumulation: int, steps: int, motionformer: bool = False) -> list[int]:
    """All-reduces DDP issues (counted by a comm hook) in each optimizer step of a TrainStep, for a small MLP or a
    tiny Motionformer (wrapped as the trainer wraps it)."""
    torch.manual_seed(0)
    if motionformer:
        model = create_model("mformer_tiny", **{**TINY, "num_classes": 3})
        ddp = distributed.wrap(model, distributed.DistributedContext(0, 2, 0, CPU), ignore=model.unused_by_logits())
        inputs = (2, 3, 4, 32, 32)
    else:
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        ddp, inputs = nn.parallel.DistributedDataParallel(model), (4, 6)
    calls = []

    def counting(state, bucket):
        calls.append(bucket.index())
        return _done(bucket.buffer())  # one process: the sum is the buffer itself

    ddp.register_comm_hook(None, counting)
    step = TrainStep(ddp, torch.optim.SGD(ddp.parameters(), lr=0.1), device=CPU, accumulation=accumulation)
    counts = []
    for _ in range(steps):
        before = len(calls)
        for index in range(accumulation):
            with step.micro_batch(sync=index == accumulation - 1):
                loss = F.cross_entropy(ddp(torch.randn(inputs)), torch.randint(3, inputs[:1]))
                step.backward(loss)
        step.step()
        counts.append(len(calls) - before)
    return counts


def _done(value: torch.Tensor) -> torch.futures.Future:
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(value)
    return future


def test_accumulation_under_ddp_all_reduces_once_per_optimizer_step(one_process_group):
    assert _all_reduces_per_step(accumulation=4, steps=3) == [1, 1, 1]  # one bucket, once per step
    assert _all_reduces_per_step(accumulation=1, steps=2) == [1, 1]
    # the last block's patch-only weights get no gradient: DDP ignores them instead of failing
    assert _all_reduces_per_step(accumulation=4, steps=2, motionformer=True) == [1, 1]


def _linear_step(scheduler_steps: int = 4) -> tuple[nn.Module, TrainStep]:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = build_scheduler(optimizer, total_steps=scheduler_steps, warmup_steps=2, schedule="linear")
    step = TrainStep(model, optimizer, scheduler, device=CPU)
    step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)  # the fp16 scaler, here on the CPU
    return model, step


def test_the_schedule_does_not_advance_when_the_scaler_skips_the_step():
    model, step = _linear_step()
    weights = model.weight.detach().clone()
    with step.micro_batch():
        step.backward(model(torch.ones(1, 3)).sum() * float("inf"))
    step.step()
    assert torch.equal(model.weight, weights)  # the optimizer step was skipped ...
    assert step.lr == pytest.approx(0.5) and step.scaler.get_scale() == 2.0**7  # ... and so was the schedule
    with step.micro_batch():
        step.backward(model(torch.ones(1, 3)).sum())
    step.step()
    assert not torch.equal(model.weight, weights) and step.lr == pytest.approx(1.0)


def test_a_run_saved_without_a_scaler_resumes_with_one_and_the_reverse():
    _, fp16 = _linear_step()
    fp16.load_scaler({})  # a bf16 / fp32 checkpoint: a fresh scale
    assert fp16.scaler.get_scale() == 2.0**8
    saved = torch.amp.GradScaler("cpu", init_scale=4.0).state_dict()
    fp16.load_scaler(saved)
    assert fp16.scaler.get_scale() == 4.0
    plain = TrainStep(nn.Linear(3, 2), torch.optim.SGD(nn.Linear(3, 2).parameters(), lr=1.0), device=CPU)
    plain.load_scaler(saved)  # an fp16 checkpoint resumed in fp32 / bf16: the scale is unused
    assert not plain.scaler.is_enabled()


def test_clipping_leaves_the_norm_on_the_device_unread():
    model, step = _linear_step()
    step.clip_grad = 1.0
    with step.micro_batch():
        step.backward(model(torch.ones(1, 3)).sum())
    norm = step.step()
    assert isinstance(norm, torch.Tensor) and norm.dim() == 0 and float(norm) > 0


@pytest.mark.parametrize("attention, options", [
    ("trajectory", {}),
    # Orthoformer's first block differs by ~5e-8 from one call to the next even in float64: one block only
    ("trajectory", {"approx": "orthoformer", "num_prototypes": 4, "depth": 1}),
    ("trajectory", {"temporal_pooling": "average"}),
    ("trajectory", {"reference": True}),
    ("joint", {}),
    ("divided", {}),
])
def test_logits_from_the_class_token_path_equal_the_full_last_block_in_float64(attention, options):
    model = create_model("mformer_tiny", **{**TINY, **options}, attention=attention, drop_path_rate=0.3).double()
    clip = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    model.eval()
    full = model.forward_head(model.forward_features(clip))
    torch.testing.assert_close(model(clip), full, rtol=1e-12, atol=1e-12)
    model.train()  # drop path draws the same masks in both
    trained = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(1)
    fast = model(clip)
    fast_grads = torch.autograd.grad(fast.square().sum(), trained, allow_unused=True)
    torch.manual_seed(1)
    full = model.forward_head(model.forward_features(clip))
    full_grads = torch.autograd.grad(full.square().sum(), trained, allow_unused=True)
    torch.testing.assert_close(fast, full, rtol=1e-12, atol=1e-12)
    for a, b in zip(fast_grads, full_grads, strict=True):
        if b is None or a is None:
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_class_token_path_works_with_grad_checkpointing():
    model = create_model("mformer_tiny", **TINY).double()
    clip = torch.randn(1, 3, 4, 32, 32, dtype=torch.float64)
    expected = model(clip)
    model.set_grad_checkpointing()
    logits = model(clip)
    logits.sum().backward()
    torch.testing.assert_close(logits, expected)
    assert model.blocks[-1].attn.qkv.weight.grad is not None


def test_uint8_clips_normalised_on_the_device_equal_the_workers_float_clips():
    frames = torch.randint(0, 256, (4, 40, 48, 3), dtype=torch.uint8)
    arguments = dict(crop_size=32, scale_range=(32, 40), color_jitter=True, mean=(0.45, 0.4, 0.5),
                     std=(0.225, 0.25, 0.2))
    floats = seeded(train_transform(**arguments), 3)(frames)
    raw = seeded(train_transform(**arguments, normalize=False), 3)(frames)
    assert raw.dtype == torch.uint8 and raw.shape == floats.shape == (3, 4, 32, 32)
    assert torch.equal(normalize_clips(raw[None], arguments["mean"], arguments["std"])[0], floats)
    with pytest.raises(ValueError, match=r"random_erasing=0\.25 needs normalize=True"):
        train_transform(crop_size=32, scale_range=(32, 40), random_erasing=0.25, normalize=False)


def test_tf32_is_only_switched_on_for_cuda():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    allow_tf32(CPU)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.slow  # inductor compiles C++ kernels: minutes on 2 cores
def test_a_block_compiles_without_graph_breaks_and_the_compiled_model_matches_eager():
    torch.manual_seed(0)
    model = create_model("mformer_tiny", **TINY)
    clip, labels = torch.randn(2, 3, 4, 32, 32), torch.tensor([1, 3])
    tokens, frames = model.embed(clip)
    explanation = torch._dynamo.explain(model.blocks[0])(tokens, frames)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    torch._dynamo.reset()
    eager = F.cross_entropy(model(clip), labels)
    eager_grad = torch.autograd.grad(eager, model.blocks[0].attn.qkv.weight)[0]
    compiled = torch.compile(model)
    loss = F.cross_entropy(compiled(clip), labels)
    grad = torch.autograd.grad(loss, model.blocks[0].attn.qkv.weight)[0]
    torch.testing.assert_close(loss, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-4, atol=1e-6)


GPU_CHECK = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_the_gpu_check_script_parses_its_arguments():
    done = subprocess.run([sys.executable, str(GPU_CHECK), "--help"], capture_output=True, text=True, timeout=120,
                          cwd=GPU_CHECK.parent)
    assert done.returncode == 0 and "--tiny" in done.stdout and "--budget-s" in done.stdout


@pytest.mark.slow  # about a minute on 2 cores
def test_the_gpu_check_script_runs_end_to_end_at_tiny_sizes_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(GPU_CHECK), "--tiny", "--device", "cpu", "--skip-compile", "--json",
                           str(out)], capture_output=True, text=True, timeout=600, cwd=GPU_CHECK.parent,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {row["section"] for row in rows} == {"kernels", "parity", "syncs", "throughput", "training"}
    assert not [row for row in rows if row["ok"] is False]
    skipped = {(row["section"], row.get("dtype")) for row in rows if row["ok"] is None}
    assert skipped == {("syncs", "bf16"), ("training", "fp16")}  # CUDA only
