"""GPU fitness of the attention layers, shown on the CPU: fused-kernel eligibility and kernel launches per layer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from motionformer.attention import greedy_orthogonal_indices
from motionformer.layers import JointAttention, SpaceAttention, TimeAttention, TrajectoryAttention

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from launches import LaunchCounter, layer_launches

MODULES = {
    "joint": lambda dim, heads: JointAttention(dim, heads),
    "time": lambda dim, heads: TimeAttention(dim, heads),
    "space": lambda dim, heads: SpaceAttention(dim, heads),
    "trajectory": lambda dim, heads: TrajectoryAttention(dim, heads),
    "trajectory_original_values": lambda dim, heads: TrajectoryAttention(dim, heads, original_temporal_values=True),
    "trajectory_average": lambda dim, heads: TrajectoryAttention(dim, heads, temporal_pooling="average"),
    "trajectory_space_time": lambda dim, heads: TrajectoryAttention(dim, heads, normalization="space_time"),
    "orthoformer": lambda dim, heads: TrajectoryAttention(dim, heads, approx="orthoformer", num_prototypes=128),
    "nystrom": lambda dim, heads: TrajectoryAttention(dim, heads, approx="nystrom", num_prototypes=128),
    "performer": lambda dim, heads: TrajectoryAttention(dim, heads, approx="performer"),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_every_attention_runs_with_the_flash_kernel_only(name):
    """Forward and backward where only the fused flash kernel is allowed (it takes 4-D inputs only)."""
    module = MODULES[name](32, 4)
    x = torch.randn(2, 1 + 2 * 16, 32, requires_grad=True)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        module(x, 2).square().sum().backward()
    assert torch.isfinite(x.grad).all()


# Kernel-launching operations of one layer, forward plus backward, at ViT-B size (C = 768, 12 heads,
# 8 frames x 196 patches, batch 1), counted on the meta device. Upper bounds: a change that adds
# launches fails here. On the meta device scaled_dot_product_attention runs as its math decomposition
# (about 14 operations forward and backward), where a GPU launches its fused kernels.
PINNED_LAUNCHES = {
    "joint": 23,
    "time": 51,
    "space": 49,
    "trajectory": 71,
    "trajectory_original_values": 71,
    "trajectory_average": 49,
    "trajectory_space_time": 68,
    "orthoformer": 487,
    "nystrom": 317,
    "performer": 121,
}


@pytest.fixture(scope="module")
def vit_b_launches() -> dict[str, int]:
    return {name: layer_launches(build(768, 12)).total for name, build in MODULES.items()}


@pytest.mark.parametrize("name", list(MODULES))
def test_kernel_launches_per_layer_are_pinned(name, vit_b_launches):
    assert vit_b_launches[name] <= PINNED_LAUNCHES[name], vit_b_launches


def test_exact_trajectory_attention_adds_at_most_48_launches_to_joint(vit_b_launches):
    """Beyond joint attention's operations: the class token's attention, the frame attention's expand and the
    temporal stage (about 24 operations forward and backward, one query chunk)."""
    assert vit_b_launches["trajectory"] - vit_b_launches["joint"] <= 48, vit_b_launches


def test_greedy_selection_takes_three_operations_per_step():
    """R = 128 prototypes from 4R candidates per head, ViT-B's 12 heads: launches per additional step."""
    candidates = torch.empty(1, 12, 512, 64, device="meta")
    totals = []
    for num_prototypes in (64, 128):
        with LaunchCounter() as counter:
            greedy_orthogonal_indices(candidates, num_prototypes)
        totals.append(counter.total)
    assert (totals[1] - totals[0]) / 64 <= 3, totals
