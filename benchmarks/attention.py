"""Benchmark the attention layers at ViT-B size: time, activation memory and error of the approximations.

Usage::

    python benchmarks/attention.py [--json OUT] [--repeats N] [--sizes 8x196,16x196] [--quick]
                                   [--device cpu|cuda]

Prints one table (plus a small second table for Orthoformer's prototype selection) and the targets met;
``--json`` also writes every number. ``--quick`` runs 8x196 only, with 2 repeats.

Rows, at each clip size T x S (frames x patches per frame), C = 768, 12 heads, batch 1:
joint space-time attention, divided attention (a ``TimeAttention`` followed by a ``SpaceAttention`` on its
output), exact trajectory attention (ours, and the straightforward ``reference=True`` computation that
materialises the (T*S) x (T*S) attention and projects all T x T*S trajectory tokens), and the approximations
of its first stage: Orthoformer with R = 16, 64, 128 prototypes, Nystrom with 128 landmarks and Performer
with 256 random features.

Method:

- Time: one forward plus backward (gradients for the parameters and the input tokens; the output gradient
  is a fixed random tensor). Every variant runs once as warm-up, then each repeat runs every variant once,
  interleaved in one process (the starting variant rotates from repeat to repeat), so that noise affects
  all variants alike: pairs are timed alternately in one process; the table reports medians. Defaults:
  5 repeats when T*S <= 8*196, else 3. On CUDA the runs are timed with CUDA events and the table shows ms.
- Activation memory (MB = 2**20 bytes): on CPU torch has no peak counter, so each variant runs in a fresh
  subprocess of this script. The child builds the module and inputs, runs one tiny clip (T=2, S=4) so that
  thread pools are started and the parameter gradients exist, then reads the process's resident-set-size
  high-water mark as the baseline, runs one forward plus backward, and reports the high-water mark minus
  the baseline. The high-water mark is ``VmHWM`` of ``/proc/self/status`` on Linux (the same quantity as
  ``getrusage(RUSAGE_SELF).ru_maxrss``, except that ``ru_maxrss`` also carries the parent's peak across
  ``exec``, which would hide the child's own peak); elsewhere ``ru_maxrss``. Children run with glibc's
  mmap threshold fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_``), so that freed tensors are returned to the
  system at once and the RSS follows the live tensors (with glibc's default, dynamic threshold, freed
  memory is kept for reuse and the figure varies by about 20% between runs). On CUDA the measurement runs
  in process: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the allocated
  memory before the run.
- Error: ||out - ref|| / ||ref|| of the layer output (float32, forward only), where ref is exact trajectory
  attention (ours). All trajectory variants load one state_dict, so they compute approximations of the
  same function; joint and divided attention are different functions and show "-". Orthoformer's random
  candidate draw is seeded the same way before every run.
- Kernel launches per layer: the kernel-launching aten operations of one forward plus backward, counted on
  the meta device (``launches.layer_launches``: views and allocations excluded). There
  ``scaled_dot_product_attention`` runs as its math decomposition (about 14 operations), where a GPU
  launches its fused kernels; the count does not depend on the machine or its load.
- Ratios: time and activation memory of each row divided by those of the straightforward trajectory row.

Weights and tokens: every ``nn.Linear`` weight is drawn from a normal with std 0.02 truncated at two
standard deviations, biases are zero (as in ViT). Tokens are clustered, not i.i.d.: each frame
is a 14 x 14 grid (for S = 196) cut into 4 x 4 regions, each region one of 16 random cluster centres
(standard normal, permuted at random over the regions), and the pattern moves one patch to the right per
frame, like a moving scene; each token is its centre plus noise of std 0.1, everything times 3, so token
norms are about 3 * sqrt(768) = 83. With std-0.02 projections a query-key logit q.k/sqrt(D) then has a
spread of roughly 0.02**2 * |x|**2 ~ 3 (a few units), so the spatial softmax is far from uniform; the
output states the measured spread and the mean largest attention weight.

Orthoformer selection (second table): for shared prototypes at T=8, S=196 with R=128 and oversampling
4 the candidate pool holds 512 queries/keys per head, D=64, 12 heads. The library's greedy selection
(``greedy_orthogonal_indices``: every pair's |cos| once, O(N^2 D), then three small operations per step
with one running maximum per candidate) is timed against the
O(N R^2 D) form written here (at each step, the largest |cos| of every candidate to all prototypes chosen
so far, recomputed by one batched matmul for all heads at once) and, for information, against
``greedy_orthogonal_reference`` looped over heads. Candidates are drawn from the projected clustered tokens.
The picks are compared in float64, where they must agree exactly; in float32 (the timed runs) the forms may
part ways at near-ties of the |cos| scores, and the script prints the float64 score gap where they first do.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from common import format_table, load_average, log, machine_info, optional, peak_rss_bytes, timed
from launches import layer_launches
from motionformer.attention import TemporalProjections, greedy_orthogonal_indices, trajectory_attention
from motionformer.attention.reference import greedy_orthogonal_reference, trajectory_attention_reference
from motionformer.layers import JointAttention, SpaceAttention, TimeAttention, TrajectoryAttention

DIM = 768
HEADS = 12
BATCH = 1
HEAD_DIM = DIM // HEADS
INIT_STD = 0.02
TOKEN_SCALE = 3.0
TOKEN_NOISE = 0.1
NUM_CLUSTERS = 16
WEIGHT_SEED = 0
TOKEN_SEED = 1
RUN_SEED = 2
DEFAULT_SIZES = ((8, 196), (16, 196))
QUICK_SIZES = ((8, 196),)
QUICK_REPEATS = 2
SELECTION_REPEATS = 20
QUICK_SELECTION_REPEATS = 5
SELECTION_FRAMES, SELECTION_PATCHES = 8, 196
SELECTION_PROTOTYPES = 128
SELECTION_OVERSAMPLING = 4
MB = 2**20
TIE_GAP = 1e-6  # float64 |cos| gap below which two float32 picks count as a rounding tie
STRAIGHTFORWARD = "straightforward"
OURS = "ours"
CORE_OURS, CORE_STRAIGHTFORWARD = "core_ours", "core_straightforward"
TARGET_SPEEDUP = 3.0
TARGET_MEMORY_RATIO = 0.5
TARGET_SELECTION_SPEEDUP = 3.0


@dataclass(frozen=True)
class Variant:
    key: str  # stable name: JSON rows and the --measure-memory child
    label: str
    kind: str  # "joint", "divided" or "trajectory"
    options: dict[str, Any] = field(default_factory=dict)  # TrajectoryAttention keyword arguments


VARIANTS = (
    Variant("joint", "joint", "joint"),
    Variant("divided", "divided (time + space)", "divided"),
    Variant(OURS, "trajectory, ours", "trajectory"),
    Variant(STRAIGHTFORWARD, "trajectory, straightforward", "trajectory", {"reference": True}),
    Variant("orthoformer16", "Orthoformer R=16", "trajectory", {"approx": "orthoformer", "num_prototypes": 16}),
    Variant("orthoformer64", "Orthoformer R=64", "trajectory", {"approx": "orthoformer", "num_prototypes": 64}),
    Variant("orthoformer128", "Orthoformer R=128", "trajectory",
            {"approx": "orthoformer", "num_prototypes": 128}),
    Variant("nystrom128", "Nystrom R=128", "trajectory", {"approx": "nystrom", "num_prototypes": 128}),
    Variant("performer256", "Performer m=256", "trajectory", {"approx": "performer", "num_random_features": 256}),
)
VARIANT_BY_KEY = {variant.key: variant for variant in VARIANTS}


# ----------------------------------------------------------------------------------------------------------
# Modules and inputs


class DividedAttention(nn.Module):
    """Both sub-layers of divided space-time attention: space attention applied to time attention's output."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.time = TimeAttention(dim, num_heads)
        self.space = SpaceAttention(dim, num_heads)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        return self.space(self.time(x, num_frames), num_frames)


def init_vit_(module: nn.Module) -> nn.Module:
    """ViT initialisation: linear weights ~ N(0, 0.02^2) truncated at two std, zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def trajectory_state_dict() -> dict[str, Tensor]:
    """The one set of weights every trajectory variant loads."""
    torch.manual_seed(WEIGHT_SEED)
    return init_vit_(TrajectoryAttention(DIM, HEADS)).state_dict()


def build_module(variant: Variant, state: dict[str, Tensor] | None = None) -> nn.Module:
    """The module of a variant, on CPU, with the benchmark's weights."""
    torch.manual_seed(WEIGHT_SEED)  # also fixes the Performer's random features
    if variant.kind == "joint":
        return init_vit_(JointAttention(DIM, HEADS))
    if variant.kind == "divided":
        return init_vit_(DividedAttention(DIM, HEADS))
    module = TrajectoryAttention(DIM, HEADS, **variant.options)
    missing, unexpected = module.load_state_dict(trajectory_state_dict() if state is None else state,
                                                 strict=False)
    parameters = dict(module.named_parameters())
    if unexpected or any(name in parameters for name in missing):
        raise RuntimeError(f"{variant.key}: weights do not fit (missing {missing}, unexpected {unexpected})")
    return module


def clustered_tokens(num_frames: int, tokens_per_frame: int, seed: int = TOKEN_SEED) -> Tensor:
    """Tokens (1, 1 + T*S, C): a 4 x 4 grid of cluster regions per frame, moving one patch right per frame.

    Frames are square grids when S is a square, else a single row of S patches.
    """
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(NUM_CLUSTERS, DIM, generator=generator)
    cluster_of_region = torch.randperm(NUM_CLUSTERS, generator=generator)
    width = math.isqrt(tokens_per_frame)
    if width * width != tokens_per_frame:
        width = tokens_per_frame
    height = tokens_per_frame // width
    bands = math.isqrt(NUM_CLUSTERS)
    patch = torch.arange(tokens_per_frame)
    row, col = patch // width, patch % width
    labels = torch.cat([
        cluster_of_region[(row * bands // height) * bands + ((col - t) % width) * bands // width]
        for t in range(num_frames)
    ])
    patches = centres[labels] + TOKEN_NOISE * torch.randn(labels.numel(), DIM, generator=generator)
    cls = torch.randn(1, DIM, generator=generator)
    return (TOKEN_SCALE * torch.cat([cls, patches])).unsqueeze(0).expand(BATCH, -1, -1).contiguous()


def inputs(num_frames: int, tokens_per_frame: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Input tokens (requiring gradient) and a fixed output gradient."""
    x = clustered_tokens(num_frames, tokens_per_frame).to(device).requires_grad_()
    generator = torch.Generator().manual_seed(RUN_SEED)
    grad_out = torch.randn(x.shape, generator=generator).to(device)
    return x, grad_out


def forward_backward(module: nn.Module, x: Tensor, grad_out: Tensor, num_frames: int) -> None:
    torch.manual_seed(RUN_SEED)  # Orthoformer draws its candidates from the global generator
    module(x, num_frames).backward(grad_out)


@torch.no_grad()
def attention_spread(state: dict[str, Tensor], x: Tensor, num_frames: int) -> dict[str, float]:
    """Row std of the within-frame logits q.k/sqrt(D) and the mean largest weight of their softmax."""
    module = TrajectoryAttention(DIM, HEADS).to(x.device)
    module.load_state_dict(state)
    q, k, _ = module.qkv(x).unflatten(-1, (3, HEADS, HEAD_DIM)).permute(2, 0, 3, 1, 4)  # (B, H, N, D)
    # patch tokens by frame: (B, H, T, S, D)
    q, k = (y[:, :, 1:].unflatten(2, (num_frames, -1)) for y in (q, k))
    logits = q @ k.transpose(-2, -1) * HEAD_DIM**-0.5  # (B, H, T, S, S): queries and keys of one frame
    return {"logit_row_std": logits.std(-1).mean().item(),
            "max_weight": logits.softmax(-1).amax(-1).mean().item(),
            "uniform_weight": 1.0 / logits.shape[-1]}


# ----------------------------------------------------------------------------------------------------------
# Activation memory


def measure_memory_child(key: str, num_frames: int, tokens_per_frame: int) -> None:
    """Run in a fresh process: print {"activation_mb": ...} for one CPU forward + backward."""
    module = build_module(VARIANT_BY_KEY[key])
    x, grad_out = inputs(num_frames, tokens_per_frame, torch.device("cpu"))
    small, small_grad = inputs(2, 4, torch.device("cpu"))
    forward_backward(module, small, small_grad, 2)  # start thread pools, allocate parameter gradients
    del small, small_grad
    gc.collect()
    baseline = peak_rss_bytes()
    forward_backward(module, x, grad_out, num_frames)
    peak = peak_rss_bytes()
    print(json.dumps({"activation_mb": (peak - baseline) / MB, "baseline_mb": baseline / MB}))


def memory_in_subprocess(key: str, num_frames: int, tokens_per_frame: int) -> float | None:
    command = [sys.executable, os.path.abspath(__file__), "--measure-memory", key, str(num_frames),
               str(tokens_per_frame)]
    # glibc: a fixed mmap threshold returns freed tensors to the system at once, so the RSS follows the live
    # tensors; with the default dynamic threshold the figure wanders by +-20% from run to run
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "131072")}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        log(f"memory measurement of {key} at {num_frames}x{tokens_per_frame} failed:\n{result.stderr}")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["activation_mb"]


def cuda_activation_mb(module: nn.Module, x: Tensor, grad_out: Tensor, num_frames: int) -> float:
    gc.collect()
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    baseline = torch.cuda.memory_allocated(x.device)
    forward_backward(module, x, grad_out, num_frames)
    torch.cuda.synchronize(x.device)
    return (torch.cuda.max_memory_allocated(x.device) - baseline) / MB


# ----------------------------------------------------------------------------------------------------------
# Timing


def interleaved_times(runs: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                      progress: str = "") -> dict[str, list[float]]:
    """One warm-up per entry, then ``repeats`` rounds running every entry once, rotating the start."""
    keys = list(runs)
    for key in keys:
        runs[key]()
    times: dict[str, list[float]] = {key: [] for key in keys}
    for repeat in range(repeats):
        if progress:
            log(f"{progress}: repeat {repeat + 1}/{repeats}")
        for i in range(len(keys)):
            key = keys[(repeat + i) % len(keys)]
            times[key].append(timed(runs[key], device))
    return times


# ----------------------------------------------------------------------------------------------------------
# One clip size


def benchmark_size(num_frames: int, tokens_per_frame: int, repeats: int, device: torch.device,
                   memory: dict[str, float | None]
                   ) -> tuple[list[dict[str, Any]], dict[str, float], dict[str, Any]]:
    size = f"{num_frames}x{tokens_per_frame}"
    state = trajectory_state_dict()
    modules = {variant.key: build_module(variant, state).to(device) for variant in VARIANTS}
    x, grad_out = inputs(num_frames, tokens_per_frame, device)
    spread = attention_spread(state, x.detach(), num_frames)
    launches = {variant.key: layer_launches(build_module(variant, state), num_frames, tokens_per_frame).total
                for variant in VARIANTS}

    log(f"{size}: errors")
    outputs: dict[str, Tensor] = {}
    with torch.no_grad():
        for variant in VARIANTS:
            if variant.kind == "trajectory":
                torch.manual_seed(RUN_SEED)
                outputs[variant.key] = modules[variant.key](x, num_frames)
    exact = outputs[OURS]
    errors = {key: ((out - exact).norm() / exact.norm()).item() for key, out in outputs.items()}
    del outputs, exact

    runs = {key: (lambda m=module: forward_backward(m, x, grad_out, num_frames)) for key, module in modules.items()}
    runs.update(core_runs(modules[OURS], x, num_frames))
    if device.type == "cuda":
        for key, module in modules.items():  # warm-up first, so kernels and parameter gradients exist
            runs[key]()
            memory[key] = cuda_activation_mb(module, x, grad_out, num_frames)
    times = interleaved_times(runs, repeats, device, progress=f"{size}: timing")

    rows = []
    core = {key: statistics.median(times.pop(key)) for key in (CORE_OURS, CORE_STRAIGHTFORWARD)}
    base_time = statistics.median(times[STRAIGHTFORWARD])
    base_memory = memory.get(STRAIGHTFORWARD)
    for variant in VARIANTS:
        median = statistics.median(times[variant.key])
        mem = memory.get(variant.key)
        rows.append({
            "size": size, "num_frames": num_frames, "tokens_per_frame": tokens_per_frame,
            "variant": variant.key, "label": variant.label, "kind": variant.kind, "options": variant.options,
            "time_s_median": median, "time_s_min": min(times[variant.key]), "times_s": times[variant.key],
            "repeats": repeats,
            "activation_mb": mem,
            "kernel_launches": launches[variant.key],
            "relative_error": errors.get(variant.key),
            "time_ratio_vs_straightforward": median / base_time,
            "memory_ratio_vs_straightforward": mem / base_memory if mem is not None and base_memory else None,
        })
    core_row = {"size": size, "time_s_median_ours": core[CORE_OURS],
                "time_s_median_straightforward": core[CORE_STRAIGHTFORWARD],
                "speedup": core[CORE_STRAIGHTFORWARD] / core[CORE_OURS], "repeats": repeats}
    return rows, spread, core_row


def core_runs(module: TrajectoryAttention, x: Tensor, num_frames: int) -> dict[str, Callable[[], object]]:
    """Forward + backward of eq. 4-6 alone, the pure functions on fixed q, k, v: ours and straightforward."""
    with torch.no_grad():
        heads = module.num_heads
        q, k, v = module.qkv(x).unflatten(-1, (3, heads, -1)).permute(2, 0, 3, 1, 4)  # (B, H, N, D) each
    q, k, v = (t.contiguous().requires_grad_() for t in (q, k, v))
    projections = TemporalProjections(module.proj_q.weight, module.proj_q.bias, module.proj_kv.weight,
                                      module.proj_kv.bias)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(RUN_SEED)).to(x.device)

    def run(fn: Callable[..., Tensor]) -> None:
        (fn(q, k, v, num_frames, projections) * grad).sum().backward()

    return {CORE_OURS: lambda: run(trajectory_attention),
            CORE_STRAIGHTFORWARD: lambda: run(trajectory_attention_reference)}


# ----------------------------------------------------------------------------------------------------------
# Orthoformer prototype selection


@torch.no_grad()
def greedy_orthogonal_quadratic(candidates: Tensor, num_prototypes: int) -> Tensor:
    """Greedy most-orthogonal subset, O(N R^2 D), batched: (..., N, D) -> (..., R) indices, starting at 0.

    Every step recomputes each candidate's largest |cos| to all prototypes chosen so far with one matmul.
    """
    unit = candidates / candidates.norm(dim=-1, keepdim=True)
    batch, num_candidates, dim = unit.shape[:-2], unit.shape[-2], unit.shape[-1]
    picks = torch.zeros(*batch, num_prototypes, dtype=torch.long, device=unit.device)
    used = torch.zeros(*batch, num_candidates, dtype=torch.bool, device=unit.device)
    used[..., 0] = True
    for step in range(1, num_prototypes):
        chosen = unit.gather(-2, picks[..., :step, None].expand(*batch, step, dim))  # (..., step, D)
        worst = (unit @ chosen.transpose(-2, -1)).abs().amax(-1).masked_fill(used, math.inf)  # (..., N)
        pick = worst.argmin(-1)
        picks[..., step] = pick
        used.scatter_(-1, pick[..., None], True)
    return picks


def selection_candidates(device: torch.device) -> Tensor:
    """(H, c*R, D) candidates: a random draw from the projected queries and keys of the clustered clip."""
    module = TrajectoryAttention(DIM, HEADS)
    module.load_state_dict(trajectory_state_dict())
    x = clustered_tokens(SELECTION_FRAMES, SELECTION_PATCHES)
    with torch.no_grad():
        q, k, _ = module.qkv(x).unflatten(-1, (3, HEADS, HEAD_DIM)).permute(2, 0, 3, 1, 4)
    pool = torch.cat([q[0, :, 1:], k[0, :, 1:]], dim=-2)  # (H, 2*T*S, D)
    generator = torch.Generator().manual_seed(RUN_SEED)
    order = torch.randperm(pool.shape[-2], generator=generator)[:SELECTION_OVERSAMPLING * SELECTION_PROTOTYPES]
    return pool[:, order].contiguous().to(device)


def divergence_gap(candidates: Tensor, picks: Tensor, other: Tensor) -> float:
    """Largest float64 gap, over heads where two pick sequences differ, between the |cos| scores (to the
    shared prefix) of the two candidates picked at the first differing step: tiny means a rounding tie."""
    unit = candidates.double() / candidates.double().norm(dim=-1, keepdim=True)
    gap = 0.0
    for head in (picks != other).any(-1).nonzero().flatten().tolist():
        step = int((picks[head] != other[head]).nonzero()[0])
        prefix = picks[head, :step]
        score = (unit[head] @ unit[head, prefix].T).abs().amax(-1)  # (N,)
        gap = max(gap, abs(score[picks[head, step]] - score[other[head, step]]).item())
    return gap


def benchmark_selection(repeats: int, device: torch.device) -> dict[str, Any]:
    candidates = selection_candidates(device)
    r = SELECTION_PROTOTYPES

    def reference_loop(pool: Tensor) -> Tensor:
        return torch.stack([greedy_orthogonal_reference(head, r) for head in pool])

    forms: dict[str, Callable[[], Tensor]] = {
        "fast": lambda: greedy_orthogonal_indices(candidates, r),
        "quadratic": lambda: greedy_orthogonal_quadratic(candidates, r),
        "reference_loop": lambda: reference_loop(candidates),
    }
    with torch.inference_mode():
        picks = {name: form().cpu() for name, form in forms.items()}
        times = interleaved_times(forms, repeats, device)
        wide = candidates.double()  # float64: no rounding ties, so the picks must agree exactly
        fast64 = greedy_orthogonal_indices(wide, r).cpu()
        quadratic64 = greedy_orthogonal_quadratic(wide, r).cpu()
        reference64 = reference_loop(wide).cpu()
    medians = {name: statistics.median(values) for name, values in times.items()}
    heads = candidates.shape[0]

    def heads_same(a: Tensor, b: Tensor) -> int:
        return int((a == b).all(-1).sum())

    return {
        "candidates_shape": list(candidates.shape), "num_prototypes": r, "repeats": repeats,
        "time_s_median": medians, "times_s": times,
        "speedup_vs_quadratic": medians["quadratic"] / medians["fast"],
        "speedup_vs_reference_loop": medians["reference_loop"] / medians["fast"],
        "heads": heads,
        "float32_heads_same_as_quadratic": heads_same(picks["fast"], picks["quadratic"]),
        "float32_heads_same_as_reference_loop": heads_same(picks["fast"], picks["reference_loop"]),
        "float32_largest_tie_gap": divergence_gap(candidates.cpu(), picks["fast"], picks["quadratic"]),
        "float64_heads_same_as_quadratic": heads_same(fast64, quadratic64),
        "float64_heads_same_as_reference_loop": heads_same(fast64, reference64),
        "same_indices": heads_same(fast64, quadratic64) == heads == heads_same(fast64, reference64),
    }


# ----------------------------------------------------------------------------------------------------------
# Reporting


def format_time(seconds: float, device: torch.device) -> str:
    return f"{seconds * 1e3:.2f}" if device.type == "cuda" else f"{seconds:.3f}"


def main_table(rows: list[dict[str, Any]], device: torch.device) -> str:
    unit = "ms" if device.type == "cuda" else "s"
    headers = ["T x S", "variant", f"fwd+bwd ({unit})", "act. mem (MB)", "launches", "rel. error", "time/sf",
               "mem/sf"]
    cells = []
    for row in rows:
        error = "exact ref" if row["variant"] == OURS else optional(row["relative_error"], ".2e")
        cells.append([
            row["size"], row["label"], format_time(row["time_s_median"], device),
            optional(row["activation_mb"], ".0f"), str(row["kernel_launches"]), error,
            optional(row["time_ratio_vs_straightforward"], ".2f", "x"),
            optional(row["memory_ratio_vs_straightforward"], ".2f", "x"),
        ])
    return format_table(headers, cells, left_columns=2)


def selection_table(selection: dict[str, Any], device: torch.device) -> str:
    unit = "ms"
    medians = selection["time_s_median"]
    labels = {"fast": "greedy_orthogonal_indices, O(N^2 D)",
              "quadratic": "batched O(N R^2 D) form",
              "reference_loop": "greedy_orthogonal_reference, per head"}
    cells = [[name, labels[name], f"{medians[name] * 1e3:.2f}", f"{medians[name] / medians['fast']:.2f}x"]
             for name in ("fast", "quadratic", "reference_loop")]
    return format_table(["form", "implementation", f"time ({unit})", "time/fast"], cells, left_columns=2)


def target_checks(rows: list[dict[str, Any]], selection: dict[str, Any], core_rows: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    checks = []
    for core in core_rows:
        checks.append({"target": f"eq. 4-6 alone: ours >= {TARGET_SPEEDUP:g}x faster than straightforward",
                       "size": core["size"], "value": core["speedup"], "met": core["speedup"] >= TARGET_SPEEDUP,
                       "text": f"{core['speedup']:.2f}x faster"})
    by_size: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_size.setdefault(row["size"], {})[row["variant"]] = row
    for size, variants in by_size.items():
        ours, ortho = variants[OURS], variants["orthoformer128"]
        speedup = 1.0 / ours["time_ratio_vs_straightforward"]
        checks.append({"target": f"ours >= {TARGET_SPEEDUP:g}x faster than straightforward", "size": size,
                       "value": speedup, "met": speedup >= TARGET_SPEEDUP, "text": f"{speedup:.2f}x faster"})
        memory = ours["memory_ratio_vs_straightforward"]
        checks.append({"target": f"ours <= {TARGET_MEMORY_RATIO:g}x straightforward activation memory",
                       "size": size, "value": memory, "met": memory is not None and memory <= TARGET_MEMORY_RATIO,
                       "text": optional(memory, ".2f", "x memory")})
        ratio = ortho["time_s_median"] / ours["time_s_median"]
        checks.append({"target": "Orthoformer-128 faster than exact ours", "size": size, "value": ratio,
                       "met": ratio < 1.0, "text": f"{ratio:.2f}x the time of ours"})
    speedup = selection["speedup_vs_quadratic"]
    checks.append({"target": f"selection >= {TARGET_SELECTION_SPEEDUP:g}x faster than O(N R^2)",
                   "size": f"{SELECTION_FRAMES}x{SELECTION_PATCHES}", "value": speedup,
                   "met": speedup >= TARGET_SELECTION_SPEEDUP, "text": f"{speedup:.2f}x faster"})
    return checks


# ----------------------------------------------------------------------------------------------------------
# Command line


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        frames, _, patches = item.strip().lower().partition("x")
        if not (frames.isdigit() and patches.isdigit()) or int(frames) < 1 or int(patches) < 1:
            raise argparse.ArgumentTypeError(f"sizes are TxS pairs like 8x196,16x196; got {item!r}")
        sizes.append((int(frames), int(patches)))
    return sizes


def default_repeats(num_frames: int, tokens_per_frame: int) -> int:
    return 5 if num_frames * tokens_per_frame <= 8 * 196 else 3


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="OUT", help="also write every number to this JSON file")
    parser.add_argument("--repeats", type=int, help="timed rounds per size (default 5 at T*S <= 8*196, else 3)")
    parser.add_argument("--sizes", type=parse_sizes, help="comma-separated TxS clip sizes (default 8x196,16x196)")
    parser.add_argument("--quick", action="store_true", help=f"8x196 only, {QUICK_REPEATS} repeats")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--measure-memory", nargs=3, metavar=("VARIANT", "T", "S"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure_memory:
        key, frames, patches = args.measure_memory
        measure_memory_child(key, int(frames), int(patches))
        return 0

    device = torch.device(args.device)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    repeats = {size: args.repeats or (QUICK_REPEATS if args.quick else default_repeats(*size)) for size in sizes}
    machine = machine_info(device)
    header = (f"machine: {machine['cpu']} ({machine['cpu_count']} CPUs), torch {machine['torch']}, "
              f"{machine['torch_threads']} threads, device {device.type}"
              + (f" ({machine['gpu']})" if device.type == "cuda" else ""))
    if machine["load_average_at_start"] is not None:
        header += f"; load average {' '.join(map(str, machine['load_average_at_start']))}"
    print(header, flush=True)

    memory: dict[tuple[int, int], dict[str, float | None]] = {size: {} for size in sizes}
    if device.type == "cpu":  # fresh processes, before this one has run anything big
        for size in sizes:
            for variant in VARIANTS:
                log(f"{size[0]}x{size[1]}: memory of {variant.key}")
                memory[size][variant.key] = memory_in_subprocess(variant.key, *size)

    rows, spreads, core_rows = [], {}, []
    for size in sizes:
        size_rows, spreads[f"{size[0]}x{size[1]}"], core_row = benchmark_size(*size, repeats[size], device,
                                                                               memory[size])
        rows.extend(size_rows)
        core_rows.append(core_row)
        gc.collect()
    log("selection")
    selection = benchmark_selection(QUICK_SELECTION_REPEATS if args.quick else SELECTION_REPEATS, device)
    checks = target_checks(rows, selection, core_rows)
    machine["load_average_at_end"] = load_average()

    for size, spread in spreads.items():
        print(f"attention at {size}: within-frame logit row std {spread['logit_row_std']:.2f}, mean largest "
              f"weight {spread['max_weight']:.3f} (uniform {spread['uniform_weight']:.4f})")
    print(f"repeats: {', '.join(f'{t}x{s}: {n}' for (t, s), n in repeats.items())}; "
          "pairs are timed alternately in one process; medians reported; sf = straightforward trajectory")
    print()
    print(main_table(rows, device))
    print()
    for row in rows:
        if row["variant"] == OURS:
            memory_ratio = row["memory_ratio_vs_straightforward"]
            memory_text = "" if memory_ratio is None else f", {memory_ratio:.2f}x the activation memory"
            print(f"ours vs straightforward at {row['size']}: {1 / row['time_ratio_vs_straightforward']:.2f}x "
                  f"faster{memory_text} (whole layer: qkv, eq. 4-6, proj)")
    for core in core_rows:
        print(f"eq. 4-6 alone (fixed q, k, v; temporal projections included) at {core['size']}: ours "
              f"{format_time(core['time_s_median_ours'], device)}, straightforward "
              f"{format_time(core['time_s_median_straightforward'], device)}: {core['speedup']:.2f}x faster")
    print()
    print(f"Orthoformer prototype selection: candidates {tuple(selection['candidates_shape'])} (heads, c*R, D), "
          f"R = {selection['num_prototypes']}, {selection['repeats']} repeats, medians")
    print(selection_table(selection, device))
    print(f"same indices as the fast form (heads of {selection['heads']}): float64 "
          f"{selection['float64_heads_same_as_quadratic']} (O(N R^2)), "
          f"{selection['float64_heads_same_as_reference_loop']} (reference); float32 "
          f"{selection['float32_heads_same_as_quadratic']} (O(N R^2)), "
          f"{selection['float32_heads_same_as_reference_loop']} (reference)"
          + (f"; float32 picks first differ where the |cos| scores differ by "
             f"{selection['float32_largest_tie_gap']:.1e}"
             + (" (rounding ties)" if selection["float32_largest_tie_gap"] < TIE_GAP else " (NOT rounding ties)")
             if selection["float32_heads_same_as_quadratic"] < selection["heads"] else ""))
    print()
    print("targets:")
    for check in checks:
        print(f"  [{'met' if check['met'] else 'NOT MET'}] {check['target']} at {check['size']}: {check['text']}")

    if args.json:
        report = {
            "machine": machine,
            "config": {"dim": DIM, "heads": HEADS, "batch": BATCH, "sizes": [f"{t}x{s}" for t, s in sizes],
                       "repeats": {f"{t}x{s}": n for (t, s), n in repeats.items()}, "device": device.type,
                       "init_std": INIT_STD, "token_scale": TOKEN_SCALE, "token_noise": TOKEN_NOISE,
                       "num_clusters": NUM_CLUSTERS, "memory_method": "cuda max_memory_allocated"
                       if device.type == "cuda" else "subprocess peak RSS (VmHWM) minus baseline"},
            "attention_spread": spreads,
            "rows": rows,
            "eq4_6_only": core_rows,
            "selection": selection,
            "targets": checks,
        }
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
