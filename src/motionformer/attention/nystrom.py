"""Nystrom attention (Nystromformer; paper Algorithm 2), generic and for trajectory attention.

    P_q, P_k = SegmentMeans(Q, K, R)
    Y = S(Q P_k^T) IterativeInverse(S(P_q P_k^T), n_iter) (S(P_q K^T) V)        (scaled by 1/sqrt(D))

The landmarks are means of R contiguous segments of the sequence; when N is not a multiple of R the
first N % R segments hold one token more. The pseudo-inverse is the 6-step iteration of the
Nystromformer paper. When R is at least the number of keys the exact attention is computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from motionformer.attention.common import at_least_float32, check_qkv, full_precision, head_scale, segment_means
from motionformer.attention.trajectory import exact_frame_attention


def iterative_pinv(a: Tensor, iterations: int = 6) -> Tensor:
    """Approximate Moore-Penrose inverse of the square matrices ``a`` (..., R, R).

    Z0 = A^T / (max column sum * max row sum), then Z <- Z (13 I - AZ (15 I - AZ (7 I - AZ))) / 4.
    For a row-stochastic A this converges to the pseudo-inverse. Computed in float32 at least, with
    autocast off (run in bfloat16 it differs from float32's by about 1 % on a 48 x 48 softmax kernel).
    """
    with full_precision(a.device):
        a = at_least_float32(a)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        scale = a.abs().sum(-2).amax(-1) * a.abs().sum(-1).amax(-1)  # (...)
        z = a.transpose(-2, -1) / scale[..., None, None]
        for _ in range(iterations):
            az = a @ z
            z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
        return z


def _landmark_kernels(q: Tensor, k_landmarks_from: Tensor, num_landmarks: int, iterations: int
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """Scaled query landmarks P_q / sqrt(D) (..., R, D), S(Q P_k^T) (..., N, R) and the inverse (..., R, R).

    Queries are scaled before the matmuls, so the logits stay as small as the softmax sees them.
    """
    q = q * head_scale(q.shape[-1])
    q_landmarks = segment_means(q, num_landmarks)
    k_landmarks = segment_means(k_landmarks_from, num_landmarks)
    omega1 = torch.softmax(q @ k_landmarks.transpose(-2, -1), dim=-1)
    kernel = torch.softmax(q_landmarks @ k_landmarks.transpose(-2, -1), dim=-1)
    return q_landmarks, omega1, iterative_pinv(kernel, iterations)


def nystrom_attention(q: Tensor, k: Tensor, v: Tensor, num_landmarks: int = 128, *, iterations: int = 6
                      ) -> Tensor:
    """Nystrom attention: (..., N, D) x3 -> (..., N, D); exact when ``num_landmarks`` >= the key count.

    Computed in float32 at least, with autocast off: the pseudo-inverse amplifies half-precision rounding
    of the kernels (and its products can exceed float16's range).
    """
    check_qkv(q, k, v)
    if num_landmarks < 1:
        raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
    if num_landmarks >= k.shape[-2] or num_landmarks > q.shape[-2]:
        return F.scaled_dot_product_attention(q, k, v)
    with full_precision(q.device):
        q32, k32, v32 = (at_least_float32(x) for x in (q, k, v))
        q_landmarks, omega1, omega2_inv = _landmark_kernels(q32, k32, num_landmarks, iterations)
        omega3 = torch.softmax(q_landmarks @ k32.transpose(-2, -1), dim=-1)  # (..., R, N)
        return (omega1 @ (omega2_inv @ (omega3 @ v32))).to(v.dtype)


def nystrom_frame_attention(q: Tensor, k: Tensor, v: Tensor, num_frames: int, *, num_landmarks: int = 128,
                            iterations: int = 6) -> Tensor:
    """Nystrom for trajectory attention's first stage: (B, H, T*S, D) x3 -> (B, H, T, T*S, D).

    Landmarks are segment means over the whole clip (shared by all frames); the key-side kernel
    S(P_q K_t'^T) is normalised over the S keys of each frame t', as eq. 4 asks. Exact when R >= S.
    Computed in float32 at least, with autocast off, as ``nystrom_attention``.
    """
    if num_landmarks < 1:
        raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
    n = q.shape[-2]
    if num_landmarks >= n // num_frames:
        return exact_frame_attention(q, k, v, num_frames)
    with full_precision(q.device):
        return _nystrom_frames(*(at_least_float32(x) for x in (q, k, v)), num_frames, num_landmarks,
                               iterations).to(v.dtype)


def _nystrom_frames(q: Tensor, k: Tensor, v: Tensor, num_frames: int, num_landmarks: int, iterations: int
                    ) -> Tensor:
    """``nystrom_frame_attention`` for R < S, in the inputs' precision."""
    b, h, n, d = q.shape
    s = n // num_frames
    q_landmarks, omega1, omega2_inv = _landmark_kernels(q, k, num_landmarks, iterations)
    k_frames = k.unflatten(2, (num_frames, s))  # (B, H, T, S, D)
    v_frames = v.unflatten(2, (num_frames, s))
    # (B, H, 1, R, D) x (B, H, T, D, S) -> (B, H, T, R, S), softmax within each frame
    omega3 = torch.softmax(q_landmarks.unsqueeze(2) @ k_frames.transpose(-2, -1), dim=-1)
    summary = omega2_inv.unsqueeze(2) @ (omega3 @ v_frames)  # (B, H, T, R, D)
    # (B, H, N, R) x (B, H, R, T*D) -> (B, H, N, T, D) -> (B, H, T, N, D) as a view
    mixed = omega1 @ summary.permute(0, 1, 3, 2, 4).reshape(b, h, num_landmarks, num_frames * d)
    return mixed.view(b, h, n, num_frames, d).transpose(2, 3)
