"""What a GPU user gets, checked in one run of a few minutes: fused kernels, precision, host syncs, throughput,
and a mixed-precision training that checkpoints and resumes.

Usage::

    python benchmarks/gpu_check.py [--json OUT] [--tiny] [--device cuda|cpu] [--skip-compile] [--budget-s 270]

Sections (each row of the table says ``ok``, ``FAIL`` or ``skipped`` with why; the JSON holds every number):

1. ``kernels``: every attention module (joint, space, time, trajectory exact / Orthoformer / Nystrom / Performer)
   forward and backward under ``sdpa_kernel([FLASH_ATTENTION])`` and ``sdpa_kernel([EFFICIENT_ATTENTION])`` in
   bf16 and fp32: which fused kernels each one reaches (flash takes half precision only).
2. ``parity``: each module's output and input gradient in fp32 (TF32 off) and under bf16 autocast against the same
   module in float64: max |difference| / max |float64 value|, below 1e-4 (fp32) and 2e-2 (bf16).
3. ``syncs``: a depth-2 ``mformer_b`` training step (uint8 clips normalised on the device, bf16 autocast, loss,
   backward, clipping, AdamW, schedule) under ``torch.cuda.set_sync_debug_mode("error")``: any host-device
   synchronisation raises.
4. ``throughput``: ``mformer_b`` batch 4 at 16x224 in bf16 for exact trajectory, joint, divided and Orthoformer-128
   attention: training clips/s (forward, backward, AdamW step), inference clips/s, peak memory of a training step,
   CUDA kernels per training step and the GPU busy fraction (kernel time / step time) from ``torch.profiler``;
   then the same with ``torch.compile`` (unless ``--skip-compile``).
5. ``training``: ``motionformer train synthetic-tiny`` on generated videos: 5 bf16 steps that checkpoint every step,
   resumed to 10, then resumed in fp16 (``train.resume=override``) to 15 and checked for finite losses.

``--tiny`` shrinks every size (width 64, 4x32 clips, batch 2) so that the script runs end to end on a CPU in a
minute, CUDA-only measurements reported as skipped: a check of the script itself, not of a GPU. ``--budget-s``:
sections that would start after this many seconds are skipped (the compiled throughput rows first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from common import format_table, log, machine_info
from motionformer import create_model
from motionformer.data.transforms import normalize_clips
from motionformer.engine.optim import build_optimizer, build_scheduler
from motionformer.engine.step import TrainStep
from motionformer.layers import JointAttention, SpaceAttention, TimeAttention, TrajectoryAttention

MODULES: dict[str, Callable[[int, int], nn.Module]] = {
    "joint": lambda dim, heads: JointAttention(dim, heads),
    "space": lambda dim, heads: SpaceAttention(dim, heads),
    "time": lambda dim, heads: TimeAttention(dim, heads),
    "trajectory": lambda dim, heads: TrajectoryAttention(dim, heads),
    "orthoformer-128": lambda dim, heads: TrajectoryAttention(dim, heads, approx="orthoformer", num_prototypes=128),
    "nystrom-128": lambda dim, heads: TrajectoryAttention(dim, heads, approx="nystrom", num_prototypes=128),
    "performer": lambda dim, heads: TrajectoryAttention(dim, heads, approx="performer"),
}
MODEL_ATTENTIONS = {"trajectory": {}, "joint": {"attention": "joint"}, "divided": {"attention": "divided"},
                    "orthoformer-128": {"approx": "orthoformer", "num_prototypes": 128}}
FUSED = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}
PARITY_LIMITS = {"fp32": 1e-4, "bf16": 2e-2}
FULL = dict(dim=768, heads=12, frames=8, per_frame=196, batch=2, model_frames=16, img=224, model_batch=4, steps=10)
TINY = dict(dim=64, heads=2, frames=4, per_frame=16, batch=2, model_frames=4, img=32, model_batch=2, steps=3)
TINY_MODEL = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=2)
SEED = 0
GIB = 2**30


class Budget:
    """Seconds since the start, and whether a section may still start."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.monotonic(), seconds

    def left(self) -> bool:
        return time.monotonic() - self.start < self.seconds


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _tokens(size: dict[str, int], device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    generator = torch.Generator().manual_seed(SEED)
    tokens = torch.randn(size["batch"], 1 + size["frames"] * size["per_frame"], size["dim"], generator=generator)
    return tokens.to(device=device, dtype=dtype)


def _module(name: str, size: dict[str, int], device: torch.device) -> nn.Module:
    torch.manual_seed(SEED)
    return MODULES[name](size["dim"], size["heads"]).to(device)


def _forward_backward(module: nn.Module, x: Tensor, frames: int, dtype: str) -> tuple[Tensor, Tensor]:
    """(output, input gradient) of one forward and backward with a fixed output gradient."""
    x = x.detach().requires_grad_()
    with _autocast(x.device, dtype):
        out = module(x, frames)
    grad = torch.cos(torch.arange(out.numel(), device=x.device, dtype=torch.float64)).view_as(out)
    out.backward(grad.to(out.dtype))
    return out.detach().double(), x.grad.double()


def check_kernels(size: dict[str, int], device: torch.device) -> list[dict[str, Any]]:
    """Which fused kernels every attention module reaches, forward and backward, per dtype."""
    rows = []
    for name in MODULES:
        module = _module(name, size, device)
        for dtype in ("bf16", "fp32"):
            row: dict[str, Any] = {"section": "kernels", "module": name, "dtype": dtype}
            for kernel, backend in FUSED.items():
                try:
                    with sdpa_kernel([backend]):
                        _forward_backward(module, _tokens(size, device), size["frames"], dtype)
                    row[kernel] = True
                except RuntimeError as error:
                    row[kernel], row[f"{kernel}_error"] = False, str(error).splitlines()[0][:160]
            row["ok"] = row["flash"] or row["efficient"]  # CUDA's flash takes half precision only
            rows.append(row)
    return rows


def _relative(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def check_parity(size: dict[str, int], device: torch.device) -> list[dict[str, Any]]:
    """Each module in fp32 (TF32 off) and bf16 autocast against itself in float64, forward and backward."""
    rows = []
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for name in MODULES:
            module = _module(name, size, device)
            out64, grad64 = _forward_backward(module.double(), _tokens(size, device, torch.float64), size["frames"],
                                              "fp32")
            module.float()
            for dtype, limit in PARITY_LIMITS.items():
                out, grad = _forward_backward(module, _tokens(size, device), size["frames"], dtype)
                errors = {"forward": _relative(out, out64), "backward": _relative(grad, grad64)}
                rows.append({"section": "parity", "module": name, "dtype": dtype, **errors, "limit": limit,
                             "ok": max(errors.values()) < limit})
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return rows


def _model(attention: str, tiny: bool, device: torch.device, **overrides: Any) -> nn.Module:
    torch.manual_seed(SEED)
    arguments = {**(TINY_MODEL if tiny else {}), **MODEL_ATTENTIONS[attention], **overrides}
    return create_model("mformer_tiny" if tiny else "mformer_b", num_classes=400, **arguments).to(device)


def _training(model: nn.Module, device: torch.device, dtype: str) -> Callable[[Tensor, Tensor], None]:
    """One optimizer step of ``model`` on (uint8 clip, labels), as the engine takes it."""
    optimizer = build_optimizer(model, 1e-4, 0.05)
    scheduler = build_scheduler(optimizer, total_steps=1000, warmup_steps=10, schedule="cosine")
    step = TrainStep(model, optimizer, scheduler, device=device, precision=dtype, clip_grad=1.0)

    def run(clip: Tensor, labels: Tensor) -> None:
        video = normalize_clips(clip, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        with step.micro_batch():
            with step.autocast():
                logits = model(video)
            step.backward(F.cross_entropy(logits.float(), labels))
        step.step()

    return run


def _clip(size: dict[str, int], device: torch.device, batch: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    clip = torch.randint(0, 256, (batch, 3, size["model_frames"], size["img"], size["img"]), dtype=torch.uint8,
                         generator=generator)
    return clip.to(device), torch.randint(400, (batch,), generator=generator).to(device)


def check_syncs(size: dict[str, int], tiny: bool, device: torch.device) -> list[dict[str, Any]]:
    """A depth-2 model's training step under ``set_sync_debug_mode("error")``."""
    row: dict[str, Any] = {"section": "syncs", "module": "mformer_b depth 2", "dtype": "bf16"}
    if device.type != "cuda":
        return [{**row, "ok": None, "note": "skipped: CUDA only"}]
    step = _training(_model("trajectory", tiny, device, depth=2), device, "bf16")
    clip, labels = _clip(size, device, 2)
    for _ in range(2):  # warm-up: lazy initialisation may synchronise once
        step(clip, labels)
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(clip, labels)
        row.update(ok=True, note="no synchronisation")
    except RuntimeError as error:
        row.update(ok=False, note=f"synchronised: {str(error).splitlines()[0][:160]}",
                   where=traceback.format_exc(limit=-4))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return [row]


def _median_seconds(run: Callable[[], None], device: torch.device, steps: int) -> float:
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        begin = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def _profile(run: Callable[[], None], device: torch.device) -> tuple[int, float]:
    """(CUDA kernels launched by one ``run``, kernel time / wall time of it)."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize(device)
    begin = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - begin
    kernels = [event for event in prof.events() if event.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(getattr(event, "device_time", getattr(event, "cuda_time", 0.0)) for event in kernels) / 1e6
    return len(kernels), min(busy / wall, 1.0)


def throughput_row(attention: str, size: dict[str, int], tiny: bool, device: torch.device,
                   compiled: bool) -> dict[str, Any]:
    """Training and inference clips/s, peak memory, kernels per step and busy fraction of one model."""
    model = _model(attention, tiny, device)
    runner = torch.compile(model) if compiled else model
    batch, steps = size["model_batch"], size["steps"]
    clip, labels = _clip(size, device, batch)
    train = _training(runner, device, "bf16")
    row: dict[str, Any] = {"section": "throughput", "module": attention, "dtype": "bf16", "compile": compiled}
    for _ in range(3 if compiled else 2):
        train(clip, labels)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row["train_clips_per_s"] = batch / _median_seconds(lambda: train(clip, labels), device, steps)
    if device.type == "cuda":  # weights, gradients and AdamW's state included
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / GIB
        row["kernels_per_step"], row["busy_fraction"] = _profile(lambda: train(clip, labels), device)
    video = normalize_clips(clip, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    def infer() -> None:
        with torch.inference_mode(), _autocast(device, "bf16"):
            runner(video)

    runner.eval()
    for _ in range(2):
        infer()
    row["inference_clips_per_s"] = batch / _median_seconds(infer, device, steps)
    row["ok"] = True
    return row


def check_training(device: torch.device, tiny: bool) -> list[dict[str, Any]]:
    """5 bf16 steps checkpointed every step, resumed to 10, then resumed in fp16 to 15."""
    from motionformer.data.synthetic import generate
    from motionformer.engine.checkpoint import load_checkpoint
    from motionformer.engine.config import load_config
    from motionformer.engine.train import train

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root, output = Path(folder) / "data", Path(folder) / "run"
        generate(root, num_videos=40, size=32, frames=16, seed=SEED, plain=True, workers=1)
        plan = [("bf16", 5, "auto"), ("bf16", 10, "auto"), ("fp16", 15, "override")]
        for precision, steps, resume in plan:
            row: dict[str, Any] = {"section": "training", "module": "synthetic-tiny", "dtype": precision,
                                   "steps": steps}
            if precision == "fp16" and device.type != "cuda":
                rows.append({**row, "ok": None, "note": "skipped: fp16 needs CUDA"})
                continue
            overrides = [f"data.root={root}", f"output_dir={output}", f"train.precision={precision}",
                         f"train.device={device.type}", f"train.max_steps={steps}", "train.checkpoint_every=1",
                         f"train.resume={resume}", "train.eval_every=0", "train.test_at_end=false",
                         "data.batch_size=4", "data.workers=2", "train.log_every=1"]
            begin = time.perf_counter()
            try:
                train(load_config("synthetic-tiny", overrides))
                last = load_checkpoint(output / "checkpoints" / "last.pt")
                finite = all(torch.isfinite(value).all() for value in last["model"].values())
                row.update(ok=last["step"] == steps and finite, reached=last["step"], finite=finite)
            except Exception as error:  # the table reports it; the other sections still run
                row.update(ok=False, note=f"{type(error).__name__}: {str(error)[:160]}")
            row["seconds"] = time.perf_counter() - begin
            rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per row: section, module, dtype, verdict and its numbers."""
    lines = []
    for row in rows:
        verdict = {True: "ok", False: "FAIL", None: "skipped"}[row.get("ok")]
        details = ", ".join(f"{key}={_cell(value)}" for key, value in row.items()
                            if key not in ("section", "module", "dtype", "ok", "where") and not key.endswith("_error"))
        lines.append([row["section"], row["module"], row.get("dtype", "-"), verdict, details])
    return format_table(["section", "module", "dtype", "result", "numbers"], lines, left_columns=5)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="OUT", help="also write every row to this JSON file")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a check of the script itself, on any device")
    parser.add_argument("--skip-compile", action="store_true", help="no torch.compile throughput rows")
    parser.add_argument("--budget-s", type=float, default=270.0, help="start no section after this many seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device, size, budget = torch.device(args.device), TINY if args.tiny else FULL, Budget(args.budget_s)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as train does for fp32
    sections: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = [
        ("kernels", lambda: check_kernels(size, device)),
        ("parity", lambda: check_parity(size, device)),
        ("syncs", lambda: check_syncs(size, args.tiny, device)),
        *((f"throughput {name}", lambda name=name: [throughput_row(name, size, args.tiny, device, False)])
          for name in MODEL_ATTENTIONS),
        ("training", lambda: check_training(device, args.tiny)),
        *((f"throughput {name} compiled", lambda name=name: [throughput_row(name, size, args.tiny, device, True)])
          for name in ([] if args.skip_compile else MODEL_ATTENTIONS)),
    ]
    rows: list[dict[str, Any]] = []
    for name, run in sections:
        if not budget.left():
            rows.append({"section": name.split()[0], "module": name, "ok": None, "note": "skipped: time budget"})
            continue
        log(f"{name} ({time.monotonic() - budget.start:.0f} s)")
        try:
            rows += run()
        except Exception as error:  # one broken section must not hide the others
            rows.append({"section": name.split()[0], "module": name, "ok": False,
                         "note": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"})
            log(traceback.format_exc())
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(table(rows))
    result = {"machine": machine_info(device), "tiny": args.tiny, "seconds": time.monotonic() - budget.start,
              "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0 if all(row.get("ok") is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
