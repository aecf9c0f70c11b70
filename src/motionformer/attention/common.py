"""Shape checks and small helpers shared by the attention functions."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor


def head_scale(head_dim: int) -> float:
    """The softmax temperature 1/sqrt(head_dim) used by every attention in the paper."""
    return 1.0 / math.sqrt(head_dim)


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """A context with autocast off on ``device``, so that operations on float32 tensors stay float32.

    Autocast casts every matmul to its half dtype, ``.float()`` inputs included: sections that must
    compute in float32 run inside this context and cast their inputs with ``at_least_float32``.
    """
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 when it is float16 or bfloat16, else unchanged (float64 stays float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def split_frames(num_tokens: int, num_frames: int) -> int:
    """Spatial tokens per frame S for ``num_tokens = 1 + num_frames * S`` (class token first).

    Raises ValueError naming both numbers when the patch tokens do not divide into frames.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    patches = num_tokens - 1
    if patches < num_frames or patches % num_frames:
        raise ValueError(
            f"token count {num_tokens} is not 1 + num_frames * S: {num_tokens} - 1 = {patches} "
            f"is not a positive multiple of num_frames = {num_frames}"
        )
    return patches // num_frames


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    """Raise ValueError unless q, k, v are (..., N, D) with matching batch dims, head dim and key count."""
    if q.dim() < 3 or k.dim() != q.dim() or v.dim() != q.dim():
        raise ValueError(f"q, k, v must be (..., N, D) of equal rank, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] or q.shape[:-2] != k.shape[:-2]:
        raise ValueError(f"incompatible q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")


def segment_means(x: Tensor, num_segments: int) -> Tensor:
    """Means of ``num_segments`` contiguous, near-equal segments along dim -2: (..., N, D) -> (..., R, D).

    When N is not a multiple of R the first N % R segments hold one token more (as ``tensor_split``).
    """
    n = x.shape[-2]
    if not 1 <= num_segments <= n:
        raise ValueError(f"num_segments must be in [1, {n}] for {n} tokens, got {num_segments}")
    if n % num_segments == 0:
        # (..., R, N/R, D) -> (..., R, D)
        return x.unflatten(-2, (num_segments, n // num_segments)).mean(-2)
    # one matmul with the (R, N) averaging matrix; segment r starts at r*q + min(r, N % R)
    size, longer = divmod(n, num_segments)
    segment = torch.arange(num_segments, device=x.device)[:, None]  # (R, 1)
    start = segment * size + segment.clamp(max=longer)
    lengths = size + (segment < longer).long()
    token = torch.arange(n, device=x.device)  # (N,)
    inside = (token >= start) & (token < start + lengths)  # (R, N)
    return (inside / lengths).to(x.dtype) @ x
