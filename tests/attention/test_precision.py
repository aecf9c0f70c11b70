"""Half precision: autocast keeps the float32 sections float32, and logits are scaled before they can overflow."""

from __future__ import annotations

import pytest
import torch

from motionformer.attention import (
    TemporalProjections,
    iterative_pinv,
    nystrom_frame_attention,
    orthoformer_frame_attention,
    orthogonal_random_features,
    performer_frame_attention,
    select_prototypes,
    space_time_frame_attention,
    temporal_attention,
)
from tests.conftest import clustered

FRAMES, PER_FRAME, HEAD_DIM = 4, 64, 32


def _rel_error(approx, exact):
    return ((approx.float() - exact).norm() / exact.norm()).item()


def _qkv(scale: float = 1.0):
    """Clustered float32 q, k, v: (2, 3, T*S, D)."""
    n = FRAMES * PER_FRAME
    return tuple(scale * clustered(2, 3, num_tokens=n, dim=HEAD_DIM, num_clusters=12, dtype=torch.float32,
                                   seed=seed) for seed in range(3))


def test_pseudo_inverse_under_autocast_is_the_float32_one():
    a = torch.softmax(clustered(2, 3, num_tokens=48, dim=48, dtype=torch.float32), dim=-1)
    exact = iterative_pinv(a)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = iterative_pinv(a)
    assert under_autocast.dtype == torch.float32
    assert _rel_error(under_autocast, exact) < 1e-6


def test_performer_under_autocast_is_the_float32_one():
    q, k, v = _qkv()
    projection = orthogonal_random_features(64, HEAD_DIM, generator=torch.Generator().manual_seed(0))
    exact = performer_frame_attention(q, k, v, FRAMES, projection=projection)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = performer_frame_attention(q, k, v, FRAMES, projection=projection)
    assert _rel_error(under_autocast, exact) < 1e-6


@pytest.mark.parametrize("shared", [True, False])
def test_orthoformer_under_autocast_selects_the_float32_prototypes(shared):
    q, k, v = _qkv()
    exact = select_prototypes(q, k, 16, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = select_prototypes(q, k, 16, generator=torch.Generator().manual_seed(0))
        out = orthoformer_frame_attention(q, k, v, FRAMES, num_prototypes=16, shared=shared,
                                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(under_autocast, exact)
    reference = orthoformer_frame_attention(q, k, v, FRAMES, num_prototypes=16, shared=shared,
                                            generator=torch.Generator().manual_seed(0))
    # the attention matmuls themselves run in bfloat16 (8 bits of mantissa: about 0.4 % per rounding)
    assert _rel_error(out, reference) < 2e-2


def test_nystrom_under_autocast_is_the_float32_one():
    q, k, v = _qkv()
    exact = nystrom_frame_attention(q, k, v, FRAMES, num_landmarks=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = nystrom_frame_attention(q, k, v, FRAMES, num_landmarks=16)
    assert _rel_error(under_autocast, exact) < 1e-6


FIRST_STAGES = {
    "orthoformer": lambda q, k, v: orthoformer_frame_attention(q, k, v, FRAMES, num_prototypes=16,
                                                               generator=torch.Generator().manual_seed(0)),
    "space_time": lambda q, k, v: space_time_frame_attention(q, k, v, FRAMES),
}


# Half-precision logits near 1e4 are rounded to steps of 8 after the scale, which reorders near ties of the
# softmax: 5 % is what float16 can deliver here (measured: 0.4 % to 3.5 %); before the fix the result was NaN.
HALF_TOLERANCE = 5e-2


def _large(*shape: int, seed: int) -> torch.Tensor:
    """Gaussian entries of std 2, times 30: q.k of two such D = 32 vectors reaches about 1e5."""
    return 30 * 2 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(FIRST_STAGES))
def test_large_logits_do_not_overflow_in_float16(name):
    """Inputs x30: q.k exceeds float16's 65504 before the 1/sqrt(D) scale, q.k / sqrt(D) does not."""
    q, k, v = (_large(2, 3, FRAMES * PER_FRAME, HEAD_DIM, seed=seed) for seed in range(3))
    assert (q @ k.transpose(-2, -1)).abs().max() > torch.finfo(torch.float16).max
    fn = FIRST_STAGES[name]
    exact = fn(q, k, v)
    with torch.autocast("cpu", dtype=torch.float16):
        half = fn(q, k, v)
    assert torch.isfinite(half).all()
    assert _rel_error(half, exact) < HALF_TOLERANCE


def test_large_temporal_logits_do_not_overflow_in_float16():
    """The temporal stage in float16 with trajectory tokens x30: its logits exceed 65504 before the scale."""
    c = 3 * HEAD_DIM
    g = torch.Generator().manual_seed(0)
    trajectories = _large(2, 3, FRAMES, FRAMES * PER_FRAME, HEAD_DIM, seed=3)
    projections = TemporalProjections(*(torch.randn(*shape, generator=g) / c ** 0.5
                                        for shape in [(c, c), (c,), (2 * c, c), (2 * c,)]))
    exact = temporal_attention(trajectories, projections)
    half = temporal_attention(trajectories.half(), projections)
    assert torch.isfinite(half).all()
    assert _rel_error(half, exact) < HALF_TOLERANCE


def test_nystrom_with_large_inputs_stays_float32_under_float16_autocast():
    """Inputs x30 around a common offset (segment-mean landmarks stay large): q.k reaches about 2e5."""
    q, k, v = (_large(2, 3, FRAMES * PER_FRAME, HEAD_DIM, seed=seed) for seed in range(3))
    q, k = q + 40.0, k + 40.0
    assert (q @ k.transpose(-2, -1)).abs().max() > torch.finfo(torch.float16).max
    exact = nystrom_frame_attention(q, k, v, FRAMES, num_landmarks=16)
    with torch.autocast("cpu", dtype=torch.float16):
        half = nystrom_frame_attention(q, k, v, FRAMES, num_landmarks=16)
    assert torch.isfinite(half).all()
    assert _rel_error(half, exact) < 1e-6
