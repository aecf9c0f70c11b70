"""Mixed precision: which autocast dtype a ``train.precision`` setting means on a device, and the context."""

from __future__ import annotations

import contextlib

import torch


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


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; nothing (full precision) when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
