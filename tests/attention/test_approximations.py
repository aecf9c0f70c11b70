"""Orthoformer, Nystrom and Performer against Algorithms 1-2 and the FAVOR+ definition, float64."""

from __future__ import annotations

import pytest
import torch

from motionformer.attention import (
    PrototypeSelection,
    PrototypeSource,
    greedy_orthogonal_indices,
    iterative_pinv,
    nystrom_attention,
    nystrom_frame_attention,
    orthoformer_attention,
    orthoformer_frame_attention,
    orthogonal_random_features,
    performer_attention,
    performer_frame_attention,
    select_prototypes,
)
from motionformer.attention.orthoformer import prototype_attention
from motionformer.attention.reference import (
    frame_attention_reference,
    greedy_orthogonal_reference,
    iterative_inverse_reference,
    nystrom_attention_reference,
    orthoformer_attention_reference,
    performer_attention_reference,
    softmax_attention_reference,
)
from tests.conftest import clustered


def _rel_error(approx, exact):
    return ((approx - exact).norm() / exact.norm()).item()


# ---------------------------------------------------------------- prototype selection


def test_fast_greedy_selection_equals_quadratic_greedy():
    cands = torch.randn(3, 40, 6, dtype=torch.float64)
    fast = greedy_orthogonal_indices(cands, 12)
    for row in range(3):
        assert fast[row].tolist() == greedy_orthogonal_reference(cands[row], 12).tolist()


def test_orthogonal_prototypes_are_more_orthogonal_than_random():
    q = clustered(2, 3, num_tokens=200, dim=16, num_clusters=20, dtype=torch.float32)
    k = clustered(2, 3, num_tokens=200, dim=16, num_clusters=20, dtype=torch.float32, seed=1)

    def abs_cos(p):  # off-diagonal |cos| between prototypes: (mean, mean over sets of the largest)
        u = torch.nn.functional.normalize(p, dim=-1)
        r = p.shape[-2]
        gram = (u @ u.transpose(-2, -1)).abs() - torch.eye(r)
        return (gram.sum((-2, -1)) / (r * (r - 1))).mean().item(), gram.amax((-2, -1)).mean().item()

    g = torch.Generator().manual_seed(0)
    ortho = abs_cos(select_prototypes(q, k, 16, generator=g))
    rand = abs_cos(select_prototypes(q, k, 16, selection=PrototypeSelection.RANDOM, generator=g))
    assert ortho[0] < rand[0]
    assert ortho[1] < 0.8 * rand[1], (ortho, rand)


def test_selection_is_deterministic_with_a_seeded_generator():
    q, k = torch.randn(2, 2, 50, 8), torch.randn(2, 2, 50, 8)
    first = select_prototypes(q, k, 10, generator=torch.Generator().manual_seed(7))
    again = select_prototypes(q, k, 10, generator=torch.Generator().manual_seed(7))
    other = select_prototypes(q, k, 10, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_prototypes_come_from_queries_and_keys_or_queries_only():
    q = torch.randn(1, 1, 30, 4) + 100.0  # queries and keys in disjoint regions
    k = torch.randn(1, 1, 30, 4) - 100.0
    both = select_prototypes(q, k, 8, oversampling=8, generator=torch.Generator().manual_seed(0))
    only_q = select_prototypes(q, k, 8, source=PrototypeSource.QUERIES, generator=torch.Generator().manual_seed(0))
    assert (both.sum(-1) > 0).any() and (both.sum(-1) < 0).any()
    assert (only_q.sum(-1) > 0).all()
    means = select_prototypes(q, k, 2, selection="segment_means")
    torch.testing.assert_close(means[0, 0], torch.stack([q[0, 0].mean(0), k[0, 0].mean(0)]))


def test_zero_and_tiny_candidates_never_become_prototypes():
    cands = torch.randn(2, 20, 5)
    cands[:, ::2] = 0.0
    cands[:, 1::4] *= 1e-9
    picks = greedy_orthogonal_indices(cands, 8)
    norms = cands.norm(dim=-1).gather(-1, picks)
    assert (norms > 1e-3).all()
    # fewer valid candidates than prototypes: the first prototype repeats instead
    picks = greedy_orthogonal_indices(cands, 12)
    assert (cands.norm(dim=-1).gather(-1, picks) > 1e-3).all()
    # nothing valid at all: still no NaN downstream
    zeros = torch.zeros(1, 1, 10, 4, dtype=torch.float16)
    out = orthoformer_attention(zeros, zeros, torch.randn(1, 1, 10, 4, dtype=torch.float16), 3)
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------- Orthoformer


def test_orthoformer_is_algorithm_1():
    q = clustered(2, 2, num_tokens=60, dim=8)
    k = clustered(2, 2, num_tokens=60, dim=8, seed=1)
    v = torch.randn(2, 2, 60, 8, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    out = orthoformer_attention(q, k, v, 10, generator=g)
    protos = select_prototypes(q, k, 10, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, orthoformer_attention_reference(q, k, v, protos))
    torch.testing.assert_close(prototype_attention(q, k, v, protos), out)


def test_orthoformer_falls_back_to_exact_attention():
    q, k, v = (torch.randn(1, 2, 12, 4, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(orthoformer_attention(q, k, v, 12), softmax_attention_reference(q, k, v))
    torch.testing.assert_close(orthoformer_frame_attention(q, k, v, 3, num_prototypes=4),
                               frame_attention_reference(q, k, v, 3))


def test_orthoformer_error_falls_as_prototypes_grow():
    """Table 3c trend on clustered tokens: more prototypes, closer to exact attention."""
    q = clustered(1, 4, num_tokens=512, dim=16, num_clusters=48, spread=0.3)
    k = clustered(1, 4, num_tokens=512, dim=16, num_clusters=48, spread=0.3, seed=1)
    v = torch.randn(1, 4, 512, 16, dtype=torch.float64)
    exact = softmax_attention_reference(q, k, v)
    errors = []
    for r in (8, 32, 128):
        runs = [_rel_error(orthoformer_attention(q, k, v, r, generator=torch.Generator().manual_seed(s)), exact)
                for s in range(3)]
        errors.append(sum(runs) / len(runs))
    assert errors[0] > errors[1] > errors[2], errors


@pytest.mark.parametrize("shared", [True, False])
def test_orthoformer_frame_attention_is_algorithm_1_per_frame(shared):
    t, s = 3, 10
    q = clustered(1, 2, num_tokens=t * s, dim=6)
    k = clustered(1, 2, num_tokens=t * s, dim=6, seed=1)
    v = torch.randn(1, 2, t * s, 6, dtype=torch.float64)
    out = orthoformer_frame_attention(q, k, v, t, num_prototypes=4, shared=shared,
                                      generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    if shared:
        protos = select_prototypes(q, k, 4, generator=gen)
    else:
        protos = select_prototypes(q.unflatten(2, (t, s)), k.unflatten(2, (t, s)), 4, generator=gen)
    for frame in range(t):
        sl = slice(frame * s, (frame + 1) * s)
        p = protos if shared else protos[:, :, frame]
        expected = orthoformer_attention_reference(q, k[:, :, sl], v[:, :, sl], p)
        torch.testing.assert_close(out[:, :, frame], expected)


# ---------------------------------------------------------------- Nystrom


def test_iterative_pinv_matches_reference_and_inverts():
    a = torch.softmax(torch.randn(3, 8, 8, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(iterative_pinv(a, 6), iterative_inverse_reference(a, 6))
    torch.testing.assert_close(iterative_pinv(a, 30), torch.linalg.inv(a), rtol=1e-6, atol=1e-6)


def test_nystrom_is_algorithm_2():
    q, k, v = (torch.randn(2, 2, 48, 8, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(nystrom_attention(q, k, v, 8), nystrom_attention_reference(q, k, v, 8, 6))


def test_nystrom_frame_attention_normalises_per_frame():
    t, s, r = 4, 12, 6
    q, k, v = (torch.randn(1, 2, t * s, 5, dtype=torch.float64) for _ in range(3))
    out = nystrom_frame_attention(q, k, v, t, num_landmarks=r)
    pq = q.unflatten(2, (r, -1)).mean(3)
    pk = k.unflatten(2, (r, -1)).mean(3)
    scale = 5 ** -0.5
    omega1 = torch.softmax(q @ pk.transpose(-2, -1) * scale, -1)
    inv = iterative_inverse_reference(torch.softmax(pq @ pk.transpose(-2, -1) * scale, -1), 6)
    for frame in range(t):
        sl = slice(frame * s, (frame + 1) * s)
        omega3 = torch.softmax(pq @ k[:, :, sl].transpose(-2, -1) * scale, -1)
        torch.testing.assert_close(out[:, :, frame], omega1 @ inv @ omega3 @ v[:, :, sl])
    # constant values are reproduced exactly in every frame, up to the inverse's accuracy
    ones = torch.ones_like(v)
    assert (nystrom_frame_attention(q, k, ones, t, num_landmarks=r) - 1).abs().max() < 1e-2


def test_nystrom_uneven_segments():
    q, k, v = (torch.randn(1, 1, 50, 4, dtype=torch.float64) for _ in range(3))
    out = nystrom_attention(q, k, v, 7)
    assert out.shape == q.shape and torch.isfinite(out).all()


# ---------------------------------------------------------------- Performer


def test_random_features_are_orthogonal_within_blocks():
    w = orthogonal_random_features(20, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert w.shape == (20, 8)
    block = torch.nn.functional.normalize(w[:8], dim=-1)
    torch.testing.assert_close(block @ block.T, torch.eye(8, dtype=torch.float64))


def test_performer_matches_favor_definition():
    q, k, v = (torch.randn(2, 2, 30, 8, dtype=torch.float64) for _ in range(3))
    w = orthogonal_random_features(64, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(performer_attention(q, k, v, w), performer_attention_reference(q, k, v, w))


def test_performer_frame_attention_normalises_per_frame():
    t, s = 3, 7
    q, k, v = (torch.randn(1, 2, t * s, 8, dtype=torch.float64) for _ in range(3))
    w = orthogonal_random_features(32, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = performer_frame_attention(q, k, v, t, projection=w)
    for frame in range(t):
        sl = slice(frame * s, (frame + 1) * s)
        torch.testing.assert_close(out[:, :, frame], performer_attention_reference(q, k[:, :, sl], v[:, :, sl], w))


def test_performer_approaches_softmax_with_many_features():
    q, k, v = (0.5 * torch.randn(1, 1, 64, 8, dtype=torch.float64) for _ in range(3))
    exact = softmax_attention_reference(q, k, v)
    errors = [_rel_error(performer_attention(q, k, v, orthogonal_random_features(
        m, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)), exact) for m in (8, 128, 4096)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.15, errors


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn", [lambda q: orthoformer_attention(q, q, q, 0),
                                lambda q: select_prototypes(q, q, 0),
                                lambda q: orthoformer_frame_attention(q, q, q, 2, num_prototypes=0),
                                lambda q: nystrom_attention(q, q, q, 0)])
def test_non_positive_prototype_counts_are_rejected(fn):
    with pytest.raises(ValueError, match="0"):
        fn(torch.randn(1, 1, 8, 4))
