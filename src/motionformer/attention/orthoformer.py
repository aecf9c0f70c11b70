"""Orthoformer (paper section 3.2, Algorithm 1): attention through R prototypes.

    P = MostOrthogonalSubset(Q, K, R);  Y = S(Q P^T / sqrt(D)) (S(P K^T / sqrt(D)) V)

Prototype selection draws c*R candidates at random from the queries and keys (``oversampling`` = c)
and keeps a greedy most-orthogonal subset: start from a random candidate, then repeatedly take the
candidate whose largest |cosine| to the prototypes chosen so far is smallest. The |cosine| of every
candidate pair is computed once and a running maximum per candidate is kept, so each of the R steps
is three small operations; the loop has no host-device synchronisation and selection runs without
gradients. Zero or tiny candidates (norm below ``1e-4`` times the largest candidate norm) are never
chosen; selection always runs in float32 or float64 with autocast off, so float16/bfloat16 inputs
cannot produce NaN there and choose the prototypes float32 would.

When R is at least the number of keys (per frame, for trajectory attention) the approximation has
nothing to save, and the exact attention is computed instead.
"""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F
from torch import Tensor

from motionformer.attention.common import at_least_float32, check_qkv, full_precision, head_scale, segment_means
from motionformer.attention.trajectory import exact_frame_attention

TINY_RELATIVE_NORM = 1e-4
# Running |cos| of the greedy selection's sentinel: above every real |cos| (at most 1), below the +inf of
# used candidates, so it is taken only when no valid candidate is left.
_SENTINEL = 2.0


class PrototypeSelection(str, enum.Enum):
    """Table 3b: how prototypes are chosen."""

    ORTHOGONAL = "orthogonal"
    RANDOM = "random"
    SEGMENT_MEANS = "segment_means"


class PrototypeSource(str, enum.Enum):
    """Where prototype candidates come from: the paper's queries and keys, or queries only (released code)."""

    QUERIES_AND_KEYS = "queries_and_keys"
    QUERIES = "queries"


def _check_num_prototypes(num_prototypes: int) -> None:
    if num_prototypes < 1:
        raise ValueError(f"num_prototypes must be >= 1, got {num_prototypes}")


def greedy_orthogonal_indices(candidates: Tensor, num_prototypes: int) -> Tensor:
    """Indices (..., R) of a greedy most-orthogonal subset of ``candidates`` (..., N, D), N >= R.

    Starts from the first valid (non-tiny) candidate, so callers shuffle candidates for a random start.
    The |cos| of every candidate pair is computed once (..., N, N); each greedy step is then three
    operations: take the candidate with the smallest running maximum, gather its |cos| row and update the
    running maximum. Runs in float32 at least, with autocast off.
    """
    with full_precision(candidates.device):
        unit, valid = _unit_candidates(at_least_float32(candidates))
        n = unit.shape[-2]
        # |cos| of all pairs, plus a sentinel index N taken only when every valid candidate is used:
        # (..., N+1, N+1); a picked candidate's own entry is +inf, so it is never picked again
        cos = torch.full((*unit.shape[:-2], n + 1, n + 1), _SENTINEL, dtype=unit.dtype, device=unit.device)
        cos[..., :n, :n] = (unit @ unit.transpose(-2, -1)).abs()
        cos.diagonal(dim1=-2, dim2=-1)[..., :n] = torch.inf
        # largest |cos| to the chosen set; +inf marks candidates that must not be picked
        running = torch.where(valid, 0.0, torch.inf).to(unit.dtype)
        running = torch.cat([running, torch.full_like(running[..., :1], _SENTINEL)], dim=-1)  # (..., N+1)
        first = valid.to(torch.uint8).argmax(dim=-1, keepdim=True)  # (..., 1): first valid (0 when none is)
        picks = [first]
        for _ in range(1, num_prototypes):
            row = cos.gather(-2, picks[-1][..., None].expand(*picks[-1].shape, n + 1))  # (..., 1, N+1)
            running = torch.maximum(running, row.squeeze(-2))
            picks.append(running.argmin(dim=-1, keepdim=True))
        index = torch.cat(picks, dim=-1)  # (..., R)
        # all valid candidates used up: repeat the first prototype rather than take a tiny one
        return torch.where(index == n, first, index)


def _unit_candidates(x: Tensor) -> tuple[Tensor, Tensor]:
    """Unit vectors of the candidates (zero for tiny ones) and the valid mask: (..., N, D), (..., N)."""
    norms = x.norm(dim=-1)  # (..., N)
    valid = norms > TINY_RELATIVE_NORM * norms.amax(dim=-1, keepdim=True)
    unit = torch.where(valid[..., None], x / norms.clamp_min(torch.finfo(x.dtype).tiny)[..., None], 0.0)
    return unit, valid


@torch.no_grad()
def select_prototypes(
    q: Tensor,
    k: Tensor,
    num_prototypes: int,
    *,
    selection: PrototypeSelection = PrototypeSelection.ORTHOGONAL,
    source: PrototypeSource = PrototypeSource.QUERIES_AND_KEYS,
    oversampling: int = 4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Choose R prototypes from q and k (..., N, D): returns (..., R, D), detached, in q's dtype.

    ``orthogonal`` and ``random`` draw ``oversampling * R`` candidates (all tokens if fewer), the
    same token positions for every batch entry; ``random`` keeps the first R of them.
    ``segment_means`` averages R contiguous segments of the candidate pool [queries; keys].
    """
    _check_num_prototypes(num_prototypes)
    selection = PrototypeSelection(selection)
    pool = q if PrototypeSource(source) is PrototypeSource.QUERIES else torch.cat([q, k], dim=-2)
    size = pool.shape[-2]
    if num_prototypes > size:
        raise ValueError(f"num_prototypes = {num_prototypes} exceeds the {size} candidate tokens")
    if selection is PrototypeSelection.SEGMENT_MEANS:
        return segment_means(pool, num_prototypes)
    num_candidates = min(size, max(oversampling, 1) * num_prototypes)
    order = torch.randperm(size, generator=generator, device=pool.device if generator is None
                           else generator.device)[:num_candidates].to(pool.device)
    candidates = pool.index_select(-2, order)  # (..., c*R, D)
    if selection is PrototypeSelection.RANDOM:
        return candidates[..., :num_prototypes, :]
    index = greedy_orthogonal_indices(candidates, num_prototypes)  # (..., R)
    return candidates.gather(-2, index[..., None].expand(*index.shape, candidates.shape[-1]))


def prototype_attention(q: Tensor, k: Tensor, v: Tensor, prototypes: Tensor) -> Tensor:
    """Algorithm 1, steps 2-4, for given prototypes (..., R, D): (..., N, D) -> (..., N, D)."""
    scale = head_scale(q.shape[-1])  # applied before the matmuls: half-precision logits cannot overflow
    omega1 = torch.softmax((q * scale) @ prototypes.transpose(-2, -1), dim=-1)  # (..., N, R)
    omega2 = torch.softmax((prototypes * scale) @ k.transpose(-2, -1), dim=-1)  # (..., R, Nk)
    return omega1 @ (omega2 @ v)


def orthoformer_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_prototypes: int = 64,
    *,
    selection: PrototypeSelection = PrototypeSelection.ORTHOGONAL,
    source: PrototypeSource = PrototypeSource.QUERIES_AND_KEYS,
    oversampling: int = 4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Orthoformer attention (Algorithm 1): (..., N, D) x3 -> (..., N, D).

    Exact attention when ``num_prototypes`` >= the number of keys.
    """
    check_qkv(q, k, v)
    _check_num_prototypes(num_prototypes)
    if num_prototypes >= k.shape[-2]:
        return F.scaled_dot_product_attention(q, k, v)
    prototypes = select_prototypes(q, k, num_prototypes, selection=selection, source=source,
                                   oversampling=oversampling, generator=generator)
    return prototype_attention(q, k, v, prototypes)


def orthoformer_frame_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_frames: int,
    *,
    num_prototypes: int = 128,
    shared: bool = True,
    selection: PrototypeSelection = PrototypeSelection.ORTHOGONAL,
    source: PrototypeSource = PrototypeSource.QUERIES_AND_KEYS,
    oversampling: int = 4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Orthoformer for trajectory attention's first stage: (B, H, T*S, D) x3 -> (B, H, T, T*S, D).

    Each frame keeps its own normalisation: S(P K_t'^T) is a softmax over the S keys of frame t'.
    ``shared`` (Table 3d, default): one prototype set for the whole clip, so S(Q P^T) is computed
    once. Otherwise every frame selects prototypes from its own tokens. Exact when R >= S.
    """
    _check_num_prototypes(num_prototypes)
    b, h, n, d = q.shape
    s = n // num_frames
    if num_prototypes >= s:
        return exact_frame_attention(q, k, v, num_frames)
    scale = head_scale(d)  # applied before the matmuls: half-precision logits cannot overflow
    k_frames = k.unflatten(2, (num_frames, s))  # (B, H, T, S, D)
    v_frames = v.unflatten(2, (num_frames, s))
    options = dict(selection=selection, source=source, oversampling=oversampling, generator=generator)
    if shared:
        prototypes = select_prototypes(q, k, num_prototypes, **options)  # (B, H, R, D)
        omega1 = torch.softmax((q * scale) @ prototypes.transpose(-2, -1), dim=-1)  # (B, H, N, R)
        # per-frame softmax over S: (B, H, 1, R, D) x (B, H, T, D, S) -> (B, H, T, R, S)
        omega2 = torch.softmax((prototypes * scale).unsqueeze(2) @ k_frames.transpose(-2, -1), dim=-1)
        summary = omega2 @ v_frames  # (B, H, T, R, D)
        # (B, H, N, R) x (B, H, R, T*D) -> (B, H, N, T, D) -> (B, H, T, N, D) as a view
        mixed = omega1 @ summary.permute(0, 1, 3, 2, 4).reshape(b, h, num_prototypes, num_frames * d)
        return mixed.view(b, h, n, num_frames, d).transpose(2, 3)
    q_frames = q.unflatten(2, (num_frames, s))
    prototypes = select_prototypes(q_frames, k_frames, num_prototypes, **options)  # (B, H, T, R, D)
    omega1 = torch.softmax((q * scale).unsqueeze(2) @ prototypes.transpose(-2, -1), dim=-1)  # (B, H, T, N, R)
    omega2 = torch.softmax((prototypes * scale) @ k_frames.transpose(-2, -1), dim=-1)  # (B, H, T, R, S)
    return omega1 @ (omega2 @ v_frames)  # (B, H, T, N, D)
