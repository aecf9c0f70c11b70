"""Joint space-time attention (eq. 2): plain softmax attention over all 1 + T*S tokens."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from motionformer.attention.common import check_qkv


def joint_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(D)) v over every key: (..., N, D) x3 -> (..., N, D), fused where available."""
    check_qkv(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)
