"""Shared test helpers: seeded generators and clustered (non-i.i.d.) token clouds."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def clustered(*batch: int, num_tokens: int, dim: int, num_clusters: int = 6, spread: float = 0.1,
              scale: float = 2.0, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    """Tokens (*batch, num_tokens, dim) drawn around a few random centres: real attention is peaky."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(*batch, num_clusters, dim, generator=g, dtype=dtype) * scale
    labels = torch.randint(num_clusters, (*batch, num_tokens), generator=g)
    points = torch.gather(centres, -2, labels[..., None].expand(*labels.shape, dim))
    return points + spread * torch.randn(*batch, num_tokens, dim, generator=g, dtype=dtype)
