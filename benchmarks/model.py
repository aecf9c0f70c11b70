"""Benchmark the whole network: a Motionformer-B training step, this library's trajectory attention against the
straightforward computation.

Usage::

    python benchmarks/model.py [--json OUT] [--repeats N] [--quick] [--device cpu|cuda]

Prints one table and the targets met (on CUDA a second table, mixed precision); ``--json`` also writes every
number. ``--quick`` runs an 8x224 clip (frames x pixels) with 1 repeat instead of 16x224 with 3.

Rows: ``mformer_b`` (ViT-B, 16x224 clips, 2-frame tubelets: 8 x 196 tokens), batch 1, float32, one network
with one set of weights, run two ways: ours (``model(clip)``: this library's trajectory attention, the last block
computing the class token's path only) and the straightforward network (``reference=True`` trajectory attention:
the full (T*S) x (T*S) attention of every head, then ``proj_kv`` applied to all T x T*S trajectory tokens, like the
released code; and every token through the last block, ``forward_head(forward_features(clip))``).

Method:

- Training step: forward, cross-entropy loss against a fixed label, backward; gradients are zeroed in place
  after each step (outside the timed region); no optimizer step. The two training steps, the two inference
  passes and the matmul below run once each as warm-up, then each repeat runs all five, alternately, in one process
  (the first one rotating from repeat to repeat), so that other work on the machine slows all alike; the
  table reports medians. On CUDA the runs are timed with CUDA events.
- Activation memory (MB = 2**20 bytes): on CPU each variant runs in a fresh subprocess of this script, before
  this process has run anything big. The child builds the network, runs one step on a tiny clip (2x32) so that
  thread pools are started and the parameter gradients exist, then resets the resident-set-size high-water mark
  (``/proc/self/clear_refs``, Linux), runs one step and reports the high-water mark minus the resident set
  before the step. The high-water mark is ``VmHWM`` of ``/proc/self/status`` (what
  ``getrusage(RUSAGE_SELF).ru_maxrss`` reports for this process image; ``ru_maxrss`` itself also keeps the
  pre-``exec`` peak inherited from the parent and cannot be reset); elsewhere ``ru_maxrss`` without a reset.
  Children run with glibc's mmap threshold fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_``), so that freed large
  blocks are returned to the system at once and the RSS follows the live tensors. On CUDA:
  ``torch.cuda.max_memory_allocated`` during one step minus the memory allocated before it.
- Inference: each variant's forward only, no gradients (``inference_mode``), eval mode, batch 1, timed in the same
  alternating rounds; clips/s = 1 / median.
- Achieved FLOP/s of a training step: 3 x forward multiply-adds (the backward pass counted as twice the forward)
  x 2 FLOP per multiply-add / median step time, with the forward multiply-adds of each computation counted by
  ``FlopCounterMode`` on a meta copy of the network (with ``models.flops``' formulas for the CPU's fused
  attention), for each variant's own forward. Shown as a fraction of this machine's matrix-multiply rate
  measured in the same run: 2 n^3 FLOP / median time of a float32 n x n matmul (n = 2048 on CPU, 8192 on CUDA;
  each timed run does ``MATMUL_CALLS`` back to back).
- CUDA only: training throughput with bfloat16 autocast (float32 weights and gradients) and peak memory
  (``torch.cuda.max_memory_allocated``, weights and gradients included, no optimizer state) of ``mformer_b``,
  ``mformer_l`` and ``mformer_h`` at batch 4, ours.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from common import format_table, load_average, log, machine_info, optional, peak_rss_bytes, timed
from motionformer import create_model
from motionformer.models.flops import CUSTOM_FLOP_FORMULAS, set_reference_attention

MODEL = "mformer_b"
FRAMES, SIZE = 16, 224
QUICK_FRAMES, QUICK_SIZE = 8, 224
WARMUP_FRAMES, WARMUP_SIZE = 2, 32
DEFAULT_REPEATS = {"cpu": 3, "cuda": 10}
QUICK_REPEATS = {"cpu": 1, "cuda": 3}
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}
MATMUL_CALLS = 10  # matmuls per timed run
MIXED_MODELS = ("mformer_b", "mformer_l", "mformer_h")
MIXED_BATCH = 4
PAPER_MEMORY = "paper: 7.4 GB with exact trajectory attention, 3.6 GB with Orthoformer-128"
OURS, STRAIGHTFORWARD, MATMUL = "ours", "straightforward", "matmul"
INFERENCE = {OURS: "inference (ours)", STRAIGHTFORWARD: "inference (straightforward)"}
VARIANTS = (OURS, STRAIGHTFORWARD)
WEIGHT_SEED, DATA_SEED = 0, 1
MB, GIB = 2**20, 2**30
TARGET_SPEEDUP = 2.0
TARGET_MEMORY_RATIO = 0.5


# ----------------------------------------------------------------------------------------------------------
# Network and data


def build(name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(WEIGHT_SEED)
    return create_model(name).to(device).train()


def clip_and_labels(model: nn.Module, batch: int, num_frames: int, img_size: int,
                    device: torch.device) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(DATA_SEED)
    clip = torch.randn(batch, 3, num_frames, img_size, img_size, generator=generator)
    labels = torch.randint(0, model.num_classes, (batch,), generator=generator)
    return clip.to(device), labels.to(device)


def forward(model: nn.Module, clip: Tensor, variant: str = OURS) -> Tensor:
    """Logits of ``variant``: ours (``model(clip)``) or straightforward (reference attention, every token through
    the last block); switches the model's attention."""
    set_reference_attention(model, variant == STRAIGHTFORWARD)
    if variant == STRAIGHTFORWARD:
        return model.forward_head(model.forward_features(clip))
    return model(clip)


def training_step(model: nn.Module, clip: Tensor, labels: Tensor, dtype: torch.dtype | None = None,
                  variant: str = OURS) -> None:
    """Forward, cross-entropy loss, backward of ``variant``; under autocast to ``dtype`` if given."""
    with torch.autocast(clip.device.type, dtype=dtype, enabled=dtype is not None):
        loss = F.cross_entropy(forward(model, clip, variant), labels)
    loss.backward()


def forward_macs(variant: str, num_frames: int, img_size: int) -> int:
    """Multiply-adds of one forward of ``variant`` on a meta copy of the network (no arithmetic runs)."""
    with torch.device("meta"):
        model = create_model(MODEL).eval()
        clip = torch.zeros(1, 3, num_frames, img_size, img_size)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOP_FORMULAS) as counter:
        forward(model, clip, variant)
    return counter.get_total_flops() // 2


def warm_up_small(model: nn.Module, device: torch.device, variant: str = OURS) -> None:
    """One step on a tiny clip: starts thread pools and allocates the parameter gradients, then zeroes them."""
    training_step(model, *clip_and_labels(model, 1, WARMUP_FRAMES, WARMUP_SIZE, device), variant=variant)
    model.zero_grad(set_to_none=False)


# ----------------------------------------------------------------------------------------------------------
# Activation memory


def reset_peak_rss() -> bool:
    """Set the high-water mark to the current resident set (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def measure_memory_child(variant: str, num_frames: int, img_size: int) -> None:
    """Run in a fresh process: print {"activation_mb": ...} for one CPU training step of ``variant``."""
    device = torch.device("cpu")
    model = build(MODEL, device)
    clip, labels = clip_and_labels(model, 1, num_frames, img_size, device)
    warm_up_small(model, device, variant)
    gc.collect()
    reset = reset_peak_rss()
    baseline = peak_rss_bytes()
    training_step(model, clip, labels, variant=variant)
    peak = peak_rss_bytes()
    print(json.dumps({"activation_mb": (peak - baseline) / MB, "baseline_mb": baseline / MB, "peak_reset": reset}))


def memory_in_subprocess(variant: str, num_frames: int, img_size: int) -> float | None:
    command = [sys.executable, os.path.abspath(__file__), "--measure-memory", variant, str(num_frames),
               str(img_size)]
    # glibc: a fixed mmap threshold returns freed large blocks to the system at once, so the RSS follows the
    # live tensors; with the default, dynamic threshold freed memory is kept for reuse
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        log(f"memory measurement of {variant} failed:\n{result.stderr}")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["activation_mb"]


def cuda_step_memory(step: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(peak bytes allocated during one call of ``step``, that peak minus the bytes allocated before it)."""
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return peak, peak - before


# ----------------------------------------------------------------------------------------------------------
# Timing


def interleaved_times(model: nn.Module, clip: Tensor, labels: Tensor, repeats: int, device: torch.device
                      ) -> tuple[dict[str, list[float]], dict[str, tuple[float, float]]]:
    """Seconds of the training step and the inference of both variants and of one matmul, run alternately: one
    warm-up each, then ``repeats`` rounds running each once, the start rotating. On CUDA also (peak, activation)
    bytes of one training step of each variant."""
    n = MATMUL_SIZE[device.type]
    generator = torch.Generator().manual_seed(DATA_SEED)
    a, b = (torch.randn(n, n, generator=generator).to(device) for _ in range(2))

    def train(variant: str) -> Callable[[], None]:
        def step() -> None:
            training_step(model, clip, labels, variant=variant)

        return step

    def inference(variant: str) -> Callable[[], None]:
        def run() -> None:
            model.eval()
            with torch.inference_mode():
                forward(model, clip, variant)
            model.train()

        return run

    def matmuls() -> None:
        for _ in range(MATMUL_CALLS):
            torch.mm(a, b)

    runs = {OURS: train(OURS), STRAIGHTFORWARD: train(STRAIGHTFORWARD), INFERENCE[OURS]: inference(OURS),
            INFERENCE[STRAIGHTFORWARD]: inference(STRAIGHTFORWARD), MATMUL: matmuls}
    memory: dict[str, tuple[float, float]] = {}
    for key, run in runs.items():
        log(f"warm-up: {key}")
        run()
        model.zero_grad(set_to_none=False)
        if device.type == "cuda" and key in VARIANTS:
            memory[key] = cuda_step_memory(run, device)
            model.zero_grad(set_to_none=False)
    keys = list(runs)
    times: dict[str, list[float]] = {key: [] for key in keys}
    for repeat in range(repeats):
        for i in range(len(keys)):
            key = keys[(repeat + i) % len(keys)]
            log(f"repeat {repeat + 1}/{repeats}: {key}")
            times[key].append(timed(runs[key], device))
            model.zero_grad(set_to_none=False)
    times[MATMUL] = [seconds / MATMUL_CALLS for seconds in times[MATMUL]]
    set_reference_attention(model, False)
    return times, memory


def mixed_precision_training(name: str, repeats: int, device: torch.device) -> dict[str, Any]:
    """bfloat16-autocast training steps of a named model (ours) at ``MIXED_BATCH``: clips/s and peak memory."""
    model = build(name, device)
    clip, labels = clip_and_labels(model, MIXED_BATCH, model.num_frames, model.img_size, device)
    row: dict[str, Any] = {"model": name, "batch": MIXED_BATCH, "num_frames": model.num_frames,
                           "img_size": model.img_size}

    def step() -> None:
        training_step(model, clip, labels, torch.bfloat16)

    step()
    model.zero_grad(set_to_none=False)
    peak, activation = cuda_step_memory(step, device)
    model.zero_grad(set_to_none=False)
    times = []
    for _ in range(repeats):
        times.append(timed(step, device))
        model.zero_grad(set_to_none=False)
    median = statistics.median(times)
    row.update(times_s=times, time_s_median=median, clips_per_s=MIXED_BATCH / median, peak_memory_gib=peak / GIB,
               activation_gib=activation / GIB)
    return row


def mixed_precision_rows(names: Sequence[str], repeats: int, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        log(f"bfloat16 training: {name}")
        try:
            rows.append(mixed_precision_training(name, repeats, device))
        except torch.cuda.OutOfMemoryError:
            rows.append({"model": name, "batch": MIXED_BATCH, "error": "out of memory"})
        gc.collect()  # the failed run's tensors are freed with its traceback
        torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------------------------------------
# Reporting


def main_table(rows: list[dict[str, Any]], device: torch.device) -> str:
    memory = "act. mem (MB)"
    headers = ["variant", "fwd+bwd (s)", memory, "fwd GMACs", "achieved GFLOP/s", "of matmul rate"]
    cells = [[row["variant"], f"{row['time_s_median']:.2f}", optional(row["activation_mb"], ".0f"),
              f"{row['forward_macs'] / 1e9:.1f}", f"{row['achieved_flops'] / 1e9:.1f}",
              f"{row['fraction_of_matmul']:.0%}"] for row in rows]
    if device.type == "cuda":
        headers.insert(3, "peak mem (MB)")
        for cell, row in zip(cells, rows, strict=True):
            cell.insert(3, f"{row['peak_memory_mb']:.0f}")
    return format_table(headers, cells)


def mixed_table(rows: list[dict[str, Any]]) -> str:
    cells = []
    for row in rows:
        if "error" in row:
            cells.append([row["model"], str(row["batch"]), "-", row["error"], "-"])
            continue
        cells.append([row["model"], str(row["batch"]), f"{row['num_frames']}x{row['img_size']}",
                      f"{row['clips_per_s']:.2f}", f"{row['peak_memory_gib']:.2f}"])
    return format_table(["model", "batch", "input", "train clips/s", "peak mem (GiB)"], cells)


# ----------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="OUT", help="also write every number to this JSON file")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 3 on CPU, 10 on CUDA)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_FRAMES}x{QUICK_SIZE} clips, fewer repeats")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--measure-memory", nargs=3, metavar=("VARIANT", "FRAMES", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure_memory:
        variant, frames, size = args.measure_memory
        measure_memory_child(variant, int(frames), int(size))
        return 0

    device = torch.device(args.device)
    frames, size = (QUICK_FRAMES, QUICK_SIZE) if args.quick else (FRAMES, SIZE)
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)[device.type]
    machine = machine_info(device)
    header = (f"machine: {machine['cpu']} ({machine['cpu_count']} CPUs), torch {machine['torch']}, "
              f"{machine['torch_threads']} threads, device {device.type}"
              + (f" ({machine['gpu']})" if device.type == "cuda" else ""))
    if machine["load_average_at_start"] is not None:
        header += f"; load average {' '.join(map(str, machine['load_average_at_start']))}"
    print(header, flush=True)

    activation_mb: dict[str, float | None] = dict.fromkeys(VARIANTS)
    if device.type == "cpu":  # fresh processes, before this one has run anything big
        for variant in VARIANTS:
            log(f"memory of {variant} (subprocess)")
            activation_mb[variant] = memory_in_subprocess(variant, frames, size)

    model = build(MODEL, device)
    macs = {variant: forward_macs(variant, frames, size) for variant in VARIANTS}
    clip, labels = clip_and_labels(model, 1, frames, size, device)

    times, cuda_memory = interleaved_times(model, clip, labels, repeats, device)
    inference = {variant: statistics.median(times[INFERENCE[variant]]) for variant in VARIANTS}
    matmul = times[MATMUL]
    del model, clip, labels
    gc.collect()
    n = MATMUL_SIZE[device.type]
    matmul_rate = 2 * n**3 / statistics.median(matmul)

    rows = []
    for variant in VARIANTS:
        median = statistics.median(times[variant])
        achieved = 3 * macs[variant] * 2 / median
        row = {"variant": variant, "time_s_median": median, "times_s": times[variant],
               "forward_macs": macs[variant], "achieved_flops": achieved,
               "fraction_of_matmul": achieved / matmul_rate, "inference_s_median": inference[variant],
               "inference_times_s": times[INFERENCE[variant]]}
        if device.type == "cuda":
            peak, activation = cuda_memory[variant]
            row.update(peak_memory_mb=peak / MB, activation_mb=activation / MB)
        else:
            row["activation_mb"] = activation_mb[variant]
        rows.append(row)
    ours, straightforward = rows
    speedup = straightforward["time_s_median"] / ours["time_s_median"]
    memory_ratio = (ours["activation_mb"] / straightforward["activation_mb"]
                    if ours["activation_mb"] is not None and straightforward["activation_mb"] else None)
    inference_speedup = inference[STRAIGHTFORWARD] / inference[OURS]
    checks = [
        {"target": f"ours >= {TARGET_SPEEDUP:g}x faster than straightforward", "value": speedup,
         "met": speedup >= TARGET_SPEEDUP, "text": f"{speedup:.2f}x faster"},
        {"target": f"ours' inference >= {TARGET_SPEEDUP:g}x faster than straightforward", "value": inference_speedup,
         "met": inference_speedup >= TARGET_SPEEDUP, "text": f"{inference_speedup:.2f}x faster"},
        {"target": f"ours <= {TARGET_MEMORY_RATIO:g}x straightforward activation memory", "value": memory_ratio,
         "met": memory_ratio is not None and memory_ratio <= TARGET_MEMORY_RATIO,
         "text": optional(memory_ratio, ".2f", "x the memory")},
    ]

    mixed: list[dict[str, Any]] = []
    if device.type == "cuda":
        mixed = mixed_precision_rows(MIXED_MODELS[:1] if args.quick else MIXED_MODELS, repeats, device)
    machine["load_average_at_end"] = load_average()

    print(f"{MODEL}, batch 1, {frames}x{size} (frames x pixels), float32; training step = forward + cross-entropy "
          "+ backward;")
    print(f"repeats: {repeats}; training steps, inference and matmul timed alternately in one process; medians")
    print()
    print(main_table(rows, device))
    print()
    print(f"ours vs straightforward: {speedup:.2f}x faster"
          + ("" if memory_ratio is None else f", {memory_ratio:.2f}x the activation memory"))
    print(f"inference (forward only, no grad, batch 1): ours {1 / inference[OURS]:.3f} clips/s "
          f"({inference[OURS]:.2f} s per clip), straightforward {1 / inference[STRAIGHTFORWARD]:.3f} clips/s "
          f"({inference[STRAIGHTFORWARD]:.2f} s); {inference_speedup:.2f}x faster")
    print(f"matmul rate: {matmul_rate / 1e9:.1f} GFLOP/s ({n}x{n} float32, median of {len(matmul)} runs of "
          f"{MATMUL_CALLS}); achieved FLOP/s = 3 x forward multiply-adds x 2 FLOP per multiply-add / step time")
    if mixed:
        print()
        print(f"bfloat16 autocast training, ours, peak memory with weights and gradients ({PAPER_MEMORY})")
        print(mixed_table(mixed))
    print()
    print("targets:")
    for check in checks:
        print(f"  [{'met' if check['met'] else 'NOT MET'}] {check['target']}: {check['text']}")

    if args.json:
        report = {
            "machine": machine,
            "config": {"model": MODEL, "batch": 1, "num_frames": frames, "img_size": size, "repeats": repeats,
                       "device": device.type, "matmul_size": n,
                       "memory_method": "cuda max_memory_allocated" if device.type == "cuda"
                       else "subprocess peak RSS (VmHWM, reset before the step) minus the RSS before the step",
                       "achieved_flops_convention": "3 x forward multiply-adds x 2 FLOP per multiply-add / time"},
            "rows": rows,
            "inference": {variant: {"time_s_median": inference[variant], "clips_per_s": 1 / inference[variant]}
                          for variant in VARIANTS},
            "matmul": {"size": n, "times_s": matmul, "flops": matmul_rate},
            "mixed_precision": mixed,
            "targets": checks,
        }
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
