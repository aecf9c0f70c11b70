"""Performer attention (FAVOR+, positive orthogonal random features), generic and for trajectory attention.

    phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m),  x' = x / D^(1/4),   A ~ phi(Q) phi(K)^T (row-normalised)

W (m x D) holds orthogonal random features: blocks of D orthonormal rows (QR of a Gaussian matrix),
each row rescaled to the norm of an independent Gaussian vector. Exponents are stabilised by
subtracting a maximum that cancels between numerator and denominator (per query row; per frame
for keys). Everything is computed in float32 at least, with autocast off (autocast would run the
matmuls in half precision), so float16/bfloat16 inputs neither overflow nor lose the features' accuracy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from motionformer.attention.common import at_least_float32, check_qkv, full_precision


def orthogonal_random_features(num_features: int, head_dim: int, *, generator: torch.Generator | None = None,
                               device: torch.device | str | None = None,
                               dtype: torch.dtype = torch.float32) -> Tensor:
    """A (num_features, head_dim) FAVOR+ projection matrix."""
    if num_features < 1:
        raise ValueError(f"num_features must be >= 1, got {num_features}")
    blocks = []
    for _ in range(-(-num_features // head_dim)):
        gaussian = torch.randn(head_dim, head_dim, generator=generator, dtype=torch.float64)
        ortho, _ = torch.linalg.qr(gaussian)
        blocks.append(ortho.T)
    rows = torch.cat(blocks)[:num_features]
    norms = torch.randn(num_features, head_dim, generator=generator, dtype=torch.float64).norm(dim=-1)
    return (rows * norms[:, None]).to(device=device, dtype=dtype)


def _log_features(x: Tensor, projection: Tensor) -> Tensor:
    """log phi(x) up to the constant -log(sqrt(m)): (..., N, D) -> (..., N, m), float32 or wider."""
    x = at_least_float32(x) * x.shape[-1] ** -0.25
    return x @ projection.to(x.dtype).T - (x * x).sum(-1, keepdim=True) / 2


def query_features(q: Tensor, projection: Tensor) -> Tensor:
    """phi(q) with each row divided by its own largest term (cancels in the row normalisation)."""
    logits = _log_features(q, projection)
    return torch.exp(logits - logits.amax(-1, keepdim=True).detach())


def key_features(k: Tensor, projection: Tensor, dims: tuple[int, ...]) -> Tensor:
    """phi(k) divided by the largest term over ``dims`` (keys that share one normalisation)."""
    logits = _log_features(k, projection)
    return torch.exp(logits - logits.amax(dim=dims, keepdim=True).detach())


def _nonzero(denominator: Tensor) -> Tensor:
    """Guard the row normaliser against underflow to zero (a 0/0 would otherwise give NaN)."""
    return denominator.clamp_min(torch.finfo(denominator.dtype).tiny)


def performer_attention(q: Tensor, k: Tensor, v: Tensor, projection: Tensor) -> Tensor:
    """FAVOR+ attention: (..., N, D) x3 -> (..., N, D), linear in N. ``projection``: (m, D)."""
    check_qkv(q, k, v)
    with full_precision(q.device):
        return _performer(q, k, v, projection).to(v.dtype)


def _performer(q: Tensor, k: Tensor, v: Tensor, projection: Tensor) -> Tensor:
    """``performer_attention`` in float32 or wider (autocast off)."""
    phi_q = query_features(q, projection)  # (..., N, m)
    phi_k = key_features(k, projection, dims=(-2, -1))  # (..., Nk, m)
    context = phi_k.transpose(-2, -1) @ v.to(phi_k.dtype)  # (..., m, D)
    numerator = phi_q @ context  # (..., N, D)
    denominator = phi_q @ phi_k.sum(-2).unsqueeze(-1)  # (..., N, 1)
    return numerator / _nonzero(denominator)


def performer_frame_attention(q: Tensor, k: Tensor, v: Tensor, num_frames: int, *, projection: Tensor
                              ) -> Tensor:
    """Performer for trajectory attention's first stage: (B, H, T*S, D) x3 -> (B, H, T, T*S, D).

    The kernel of each query is normalised separately over the S keys of every frame (eq. 4).
    """
    with full_precision(q.device):
        return _performer_frames(q, k, v, num_frames, projection).to(v.dtype)


def _performer_frames(q: Tensor, k: Tensor, v: Tensor, num_frames: int, projection: Tensor) -> Tensor:
    """``performer_frame_attention`` in float32 or wider (autocast off)."""
    b, h, n, d = q.shape
    s = n // num_frames
    phi_q = query_features(q, projection)  # (B, H, N, m)
    phi_k = key_features(k.unflatten(2, (num_frames, s)), projection, dims=(-2, -1))  # (B, H, T, S, m)
    v_frames = v.unflatten(2, (num_frames, s)).to(phi_k.dtype)  # (B, H, T, S, D)
    context = phi_k.transpose(-2, -1) @ v_frames  # (B, H, T, m, D)
    m = context.shape[-2]
    # (B, H, N, m) x (B, H, m, T*D) -> (B, H, N, T, D)
    numerator = (phi_q @ context.permute(0, 1, 3, 2, 4).reshape(b, h, m, num_frames * d)).view(
        b, h, n, num_frames, d)
    denominator = phi_q @ phi_k.sum(-2).transpose(-2, -1)  # (B, H, N, m) x (B, H, m, T) -> (B, H, N, T)
    return (numerator / _nonzero(denominator).unsqueeze(-1)).transpose(2, 3)
