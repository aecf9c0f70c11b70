"""Slow references written straight from the paper's equations and algorithms.

They materialise every attention matrix and loop where the paper's notation loops, so they are easy to
check by eye. Tests compare each fast path against them in float64; ``benchmarks/attention.py`` times
``trajectory_attention_reference`` as "the straightforward implementation" (the released code's way:
the full (T*S) x (T*S) attention of each head, then ``proj_kv`` on all T x T*S trajectory tokens).
Shapes follow ``motionformer.attention.trajectory``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from motionformer.attention.common import head_scale
from motionformer.attention.trajectory import FrameAttention, TemporalProjections


def softmax_attention_reference(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Eq. 2: softmax(q k^T / sqrt(D)) v, the score matrix materialised. (..., N, D) -> (..., N, D)."""
    return torch.softmax(q @ k.transpose(-2, -1) * head_scale(q.shape[-1]), dim=-1) @ v


def frame_attention_reference(q: Tensor, k: Tensor, v: Tensor, num_frames: int) -> Tensor:
    """Eq. 4 as the released code does it: all-pairs scores, softmax within each key frame.

    q, k, v: (B, H, T*S, D) patch tokens. Returns (B, H, T, T*S, D).
    """
    n, d = q.shape[-2:]
    s = n // num_frames
    scores = (q @ k.transpose(-2, -1)) * head_scale(d)  # (B, H, N, N)
    attn = torch.softmax(scores.unflatten(-1, (num_frames, s)), dim=-1)  # (B, H, N, T, S)
    return torch.einsum("bhnts,bhtsd->bhtnd", attn, v.unflatten(2, (num_frames, s)))


def trajectory_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_frames: int,
    projections: TemporalProjections | None,
    *,
    frame_attention: FrameAttention = frame_attention_reference,
    average_over_time: bool = False,
    original_temporal_values: bool = False,
) -> Tensor:
    """Eq. 4-6 computed directly: (B, H, 1+T*S, D) x3 -> (B, 1+T*S, H*D), heads merged.

    Projects every trajectory token with ``proj_kv`` (eq. 5) and pools with eq. 6.
    """
    b, h, _, d = q.shape
    c = h * d
    t = num_frames
    cls_out = softmax_attention_reference(q[:, :, :1], k, v)  # (B, H, 1, D)
    traj = frame_attention(q[:, :, 1:], k[:, :, 1:], v[:, :, 1:], t)  # (B, H, T, N, D)
    n = traj.shape[3]
    s = n // t
    # merge heads: y~[b, i, t'] in R^C, (B, N, T, C)
    tokens = traj.permute(0, 3, 2, 1, 4).reshape(b, n, t, c)
    if average_over_time:
        pooled = tokens.mean(2)
    else:
        q_weight, q_bias, kv_weight, kv_bias = projections
        query_frame = torch.arange(n, device=q.device) // s  # reference frame t of query i = t*S + s
        reference_tokens = tokens[:, torch.arange(n, device=q.device), query_frame]  # (B, N, C)
        query = torch.nn.functional.linear(reference_tokens, q_weight, q_bias).view(b, n, h, d)
        kv = torch.nn.functional.linear(tokens, kv_weight, kv_bias)  # (B, N, T, 2C): all T*N tokens
        keys = kv[..., :c].reshape(b, n, t, h, d)
        values = tokens.view(b, n, t, h, d) if original_temporal_values else kv[..., c:].reshape(b, n, t, h, d)
        scores = torch.einsum("bnhd,bnthd->bnht", query, keys) * head_scale(d)
        weights = torch.softmax(scores, dim=-1)  # eq. 6: softmax over t'
        pooled = torch.einsum("bnht,bnthd->bnhd", weights, values).reshape(b, n, c)
    return torch.cat([cls_out.transpose(1, 2).reshape(b, 1, c), pooled], dim=1)


def divided_attention_reference(q: Tensor, k: Tensor, v: Tensor, num_frames: int, over_time: bool) -> Tensor:
    """One sub-layer of divided space-time attention (eq. 3), with the released class-token handling.

    Each patch query attends over the class key plus the patch keys of its group (same spatial
    location over time if ``over_time``, else same frame); the class query attends over all tokens.
    q, k, v: (B, H, 1+T*S, D) -> (B, H, 1+T*S, D). Loops over groups, as the equation reads.
    """
    n = q.shape[2] - 1
    s = n // num_frames
    out = torch.empty_like(q)
    out[:, :, :1] = softmax_attention_reference(q[:, :, :1], k, v)
    index = torch.arange(n, device=q.device) + 1
    groups = [index[loc::s] for loc in range(s)] if over_time else list(index.split(s))
    for group in groups:
        keys = torch.cat([k[:, :, :1], k[:, :, group]], dim=2)
        values = torch.cat([v[:, :, :1], v[:, :, group]], dim=2)
        out[:, :, group] = softmax_attention_reference(q[:, :, group], keys, values)
    return out


def greedy_orthogonal_reference(candidates: Tensor, num_prototypes: int, first: int = 0) -> Tensor:
    """Greedy most-orthogonal subset, the O(N R^2) way: each step recomputes every candidate's
    largest |cosine| to all prototypes chosen so far and takes the candidate where it is smallest.

    candidates: (N, D) without zero vectors. Returns (R,) indices, starting with ``first``.
    """
    unit = candidates / candidates.norm(dim=-1, keepdim=True)
    chosen = [first]
    for _ in range(1, num_prototypes):
        worst = (unit @ unit[chosen].T).abs().max(dim=-1).values  # (N,)
        worst[chosen] = float("inf")
        chosen.append(int(worst.argmin()))
    return torch.tensor(chosen)


def orthoformer_attention_reference(q: Tensor, k: Tensor, v: Tensor, prototypes: Tensor) -> Tensor:
    """Algorithm 1, steps 2-4, for given prototypes P (..., R, D): S(Q P^T) (S(P K^T) V)."""
    return softmax_attention_reference(q, prototypes, softmax_attention_reference(prototypes, k, v))


def iterative_inverse_reference(a: Tensor, iterations: int) -> Tensor:
    """The Nystromformer iterative Moore-Penrose inverse (Razavi et al.), one step per loop turn:
    Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4, from Z0 = A^T / (max col sum * max row sum)."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    col = a.abs().sum(-2).amax(-1)[..., None, None]
    row = a.abs().sum(-1).amax(-1)[..., None, None]
    z = a.transpose(-2, -1) / (col * row)
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def nystrom_attention_reference(q: Tensor, k: Tensor, v: Tensor, num_landmarks: int, iterations: int) -> Tensor:
    """Algorithm 2 with landmarks = means of R contiguous, equal segments (N divisible by R)."""
    d = q.shape[-1]
    pq = q.unflatten(-2, (num_landmarks, -1)).mean(-2)
    pk = k.unflatten(-2, (num_landmarks, -1)).mean(-2)
    omega1 = torch.softmax(q @ pk.transpose(-2, -1) * head_scale(d), dim=-1)
    omega2_inv = iterative_inverse_reference(torch.softmax(pq @ pk.transpose(-2, -1) * head_scale(d), -1),
                                             iterations)
    omega3 = torch.softmax(pq @ k.transpose(-2, -1) * head_scale(d), dim=-1)
    return omega1 @ (omega2_inv @ (omega3 @ v))


def performer_attention_reference(q: Tensor, k: Tensor, v: Tensor, projection: Tensor) -> Tensor:
    """FAVOR+ with positive features written out: A_ij = phi(q_i).phi(k_j), rows normalised, times V.

    phi(x) = exp(w.x' - |x'|^2 / 2) / sqrt(m) with x' = x / D^(1/4) and w the rows of ``projection``
    (m, D). The kernel matrix is materialised, as the definition reads.
    """
    d = q.shape[-1]
    m = projection.shape[0]

    def features(x: Tensor) -> Tensor:
        x = x * d ** -0.25
        return torch.exp(x @ projection.T - (x * x).sum(-1, keepdim=True) / 2) / m ** 0.5

    kernel = features(q) @ features(k).transpose(-2, -1)  # (..., N, N)
    return (kernel / kernel.sum(-1, keepdim=True)) @ v
