"""Mixed precision: which autocast dtype a ``train.precision`` or inference precision setting means on a device,
and the context."""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

INFERENCE_PRECISIONS = ("auto", "fp32", "bf16")
# /proc/cpuinfo flags of native bf16 matrix instructions (x86: AVX512-BF16 dot products, AMX tiles)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, whether a gradient scaler is needed)."""
    if precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return (torch.bfloat16 if bf16 else None), False
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if device.type != "cuda":
        raise ValueError("train.precision=fp16 needs a GPU; on the CPU use fp32 or bf16")
    return torch.float16, True


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of a ``/proc/cpuinfo`` text (the ``flags`` lines of x86 Linux)."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, values = line.partition(":")
        if key.strip() == "flags":
            flags.update(values.split())
    return flags


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX-BF16).

    Reads ``/proc/cpuinfo`` (Linux); elsewhere asks PyTorch's own CPU check. Without such instructions bf16
    matrix products are emulated and run slower than fp32.
    """
    try:
        return bool(cpu_flags(CPUINFO.read_text()) & set(BF16_CPU_FLAGS))
    except OSError:
        check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        return bool(check and check())


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of inference at ``precision`` (``INFERENCE_PRECISIONS``) on ``device``; None is fp32.

    ``auto``: bf16 on a CPU with native bf16 matrix instructions and on a GPU that supports bf16, else fp32.
    ``bf16`` is honoured on any CPU (emulated, slower, where the instructions are missing); ValueError on a
    GPU without bf16 or for an unknown value.
    """
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {', '.join(INFERENCE_PRECISIONS)}")
    if precision == "fp32":
        return None
    supported = {"cuda": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
                 "cpu": cpu_has_native_bf16()}.get(device.type, False)
    if precision == "bf16":
        if device.type == "cuda" and not supported:
            raise ValueError(f"precision=bf16: the GPU {device} does not support bf16; use fp32")
        if device.type == "cpu" and not supported:
            log.warning("this CPU has no native bf16 matrix instructions (%s): bf16 is emulated and slower than "
                        "fp32", " or ".join(BF16_CPU_FLAGS))
        return torch.bfloat16
    return torch.bfloat16 if supported else None


def allow_tf32(device: torch.device) -> None:
    """Let float32 matrix products and convolutions on a CUDA ``device`` use TF32 tensor cores (10-bit mantissa
    inputs, float32 accumulation; several times faster on Ampere and later). Nothing on other devices."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; nothing (full precision) when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
