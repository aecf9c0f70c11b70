"""Benchmark inference of Motionformer-B per clip on the CPU: float32, bfloat16 autocast, and the straightforward
network.

Usage::

    python benchmarks/inference.py [--json OUT] [--clips N] [--frames F] [--size S] [--threads T]

Prints one table; ``--json`` also writes every number, the per-clip times and top-1 classes.

Rows: ``mformer_b`` (ViT-B, 16x224 clips by default: 8 x 196 tokens), batch 1, eval mode, ``inference_mode``, one
network with fixed random weights (seed 0):

- ``fp32``: this library's computation in float32;
- ``bf16``: the same under CPU autocast to bfloat16 (``--precision bf16``; ``auto`` picks it only where the CPU
  has native bf16 matrix instructions, AVX512-BF16 or AMX-BF16; the table says whether this one has);
- ``straightforward``: ``reference=True`` trajectory attention (the full (T*S) x (T*S) attention of every head,
  then ``proj_kv`` on all T x T*S trajectory tokens, like the released code), float32.

Method: ``--clips`` random clips (normal noise, seed 1), one at a time. Every variant first runs once on a tiny
clip (2x32) to start thread pools. Then for each clip all three variants run once, in an order that rotates from
clip to clip, so that other work on the machine slows all alike; ms per clip is the median over clips, clips/s its
inverse. Peak memory (MB = 2**20 bytes) is the largest rise of the resident set during one forward over the clips:
the high-water mark (``VmHWM``) is reset before each run (``/proc/self/clear_refs``, Linux) and the resident set
before the run subtracted; glibc returns freed large blocks at once (``mallopt`` mmap threshold 128 KiB), so the
resident set follows the live tensors. "resident MB with the model" is the whole process's resident set once the
model is built, before any clip.
Agreement: the fraction of clips whose top-1 class equals float32's, and the largest relative error
||logits - fp32|| / ||fp32|| over the clips. With random weights the logits of different classes lie close
together (the median top-1 margin of float32 is reported), so bf16 disagrees more often than with trained weights.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import statistics
from typing import Any

import torch
from torch import Tensor, nn

from common import format_table, log, machine_info, peak_rss_bytes, timed
from model import reset_peak_rss
from motionformer import create_model
from motionformer.engine.precision import cpu_has_native_bf16, inference_dtype
from motionformer.models.flops import set_reference_attention

MODEL = "mformer_b"
FP32, BF16, STRAIGHTFORWARD = "fp32", "bf16", "straightforward"
VARIANTS = (FP32, BF16, STRAIGHTFORWARD)
WEIGHT_SEED, DATA_SEED = 0, 1
WARMUP_FRAMES, WARMUP_SIZE = 2, 32
M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES = -3, 128 * 1024  # glibc mallopt parameter and value
MB = 2**20
CPU = torch.device("cpu")


def return_freed_memory() -> None:
    """glibc: a fixed mmap threshold returns freed large blocks to the system at once (no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def resident_bytes() -> int:
    """The current resident set (``VmRSS``, Linux); 0 where unknown."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def forward(model: nn.Module, clip: Tensor, variant: str) -> Tensor:
    """Float32 logits (1, classes) of one clip by ``variant``."""
    set_reference_attention(model, variant == STRAIGHTFORWARD)
    dtype = torch.bfloat16 if variant == BF16 else None
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        return model(clip).float()


def measured(model: nn.Module, clip: Tensor, variant: str) -> tuple[float, float, Tensor]:
    """(seconds, rise of the resident set in bytes, logits) of one forward."""
    reset_peak_rss()
    before = resident_bytes()
    logits: list[Tensor] = []
    seconds = timed(lambda: logits.append(forward(model, clip, variant)), CPU)
    return seconds, max(0, peak_rss_bytes() - before), logits[0]


def run(num_clips: int, frames: int, size: int) -> dict[str, Any]:
    """Times, memory and logits of every variant on ``num_clips`` clips."""
    torch.manual_seed(WEIGHT_SEED)
    model = create_model(MODEL).eval()
    resident_mb = resident_bytes() / MB
    for variant in VARIANTS:
        forward(model, torch.randn(1, 3, WARMUP_FRAMES, WARMUP_SIZE, WARMUP_SIZE), variant)
    generator = torch.Generator().manual_seed(DATA_SEED)
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    memory: dict[str, list[float]] = {v: [] for v in VARIANTS}
    logits: dict[str, list[Tensor]] = {v: [] for v in VARIANTS}
    for index in range(num_clips):
        clip = torch.randn(1, 3, frames, size, size, generator=generator)
        for variant in VARIANTS[index % 3:] + VARIANTS[:index % 3]:
            time_s, rise, out = measured(model, clip, variant)
            seconds[variant].append(time_s)
            memory[variant].append(rise / MB)
            logits[variant].append(out[0])
            log(f"clip {index + 1}/{num_clips} {variant}: {time_s * 1e3:.0f} ms, {rise / MB:.0f} MB")
    return {"seconds": seconds, "memory_mb": memory, "resident_mb": resident_mb, "logits": logits}


def summary(measurements: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per variant: median ms per clip, clips/s, peak MB, top-1 agreement with fp32 and largest relative error."""
    reference = torch.stack(measurements["logits"][FP32])  # (clips, classes)
    rows = {}
    for variant in VARIANTS:
        logits = torch.stack(measurements["logits"][variant])
        median = statistics.median(measurements["seconds"][variant])
        errors = (logits - reference).norm(dim=-1) / reference.norm(dim=-1)
        rows[variant] = {"ms_per_clip": median * 1e3, "clips_per_s": 1 / median,
                         "peak_mb": max(measurements["memory_mb"][variant]),
                         "top1_agreement": (logits.argmax(-1) == reference.argmax(-1)).float().mean().item(),
                         "max_relative_error": errors.max().item()}
    return rows


def table(rows: dict[str, dict[str, float]]) -> str:
    headers = ["variant", "ms/clip", "clips/s", "peak MB", "top-1 = fp32", "rel. error vs fp32"]
    cells = [[name, f"{row['ms_per_clip']:.0f}", f"{row['clips_per_s']:.4f}", f"{row['peak_mb']:.0f}",
              f"{row['top1_agreement']:.1%}", f"{row['max_relative_error']:.1e}"] for name, row in rows.items()]
    return format_table(headers, cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=None, help="also write every number to this file")
    parser.add_argument("--clips", type=int, default=32, help="random clips (each runs every variant once)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    return_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    measurements = run(args.clips, args.frames, args.size)
    rows = summary(measurements)
    reference = torch.stack(measurements["logits"][FP32])
    margin = reference.topk(2, dim=-1).values.diff(dim=-1).abs().median().item()
    auto = inference_dtype("auto", CPU)
    print(f"{MODEL}, {args.frames}x{args.size} clips, batch 1, {args.clips} clips, {torch.get_num_threads()} threads; "
          f"native bf16 on this CPU: {cpu_has_native_bf16()} (--precision auto = {'bf16' if auto else 'fp32'}); "
          f"resident MB with the model {measurements['resident_mb']:.0f}; median fp32 top-1 margin {margin:.2e}")
    print(table(rows))
    if args.json:
        record = {"machine": machine_info(CPU), "model": MODEL, "frames": args.frames, "size": args.size,
                  "clips": args.clips, "native_bf16": cpu_has_native_bf16(), "auto": "bf16" if auto else "fp32",
                  "resident_mb": measurements["resident_mb"], "fp32_median_top1_margin": margin, "rows": rows,
                  "seconds": measurements["seconds"], "memory_mb": measurements["memory_mb"],
                  "top1": {v: [int(x.argmax()) for x in measurements["logits"][v]] for v in VARIANTS}}
        with open(args.json, "w") as file:
            json.dump(record, file, indent=2)


if __name__ == "__main__":
    main()
