"""Divided space-time attention (eq. 3, TimeSformer-style): attention over time, then over space.

Class-token handling as in the released checkpoints: each patch query attends over the keys of its
group (the same spatial location in every frame for time attention, the same frame for space
attention) plus the class token's key; the class token's own query attends over all tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from motionformer.attention.common import check_qkv, split_frames


def _grouped_attention(q: Tensor, k: Tensor, v: Tensor, num_frames: int, over_time: bool) -> Tensor:
    check_qkv(q, k, v)
    b, h, n, d = q.shape
    s = split_frames(n, num_frames)
    # class token and patches by one split each: its backward is a single cat
    (q_cls, q_patches), (k_cls, k_patches), (v_cls, v_patches) = (x.split([1, n - 1], dim=2) for x in (q, k, v))
    cls_out = F.scaled_dot_product_attention(q_cls, k, v)  # (B, H, 1, D)

    def groups(x: Tensor) -> Tensor:
        # (B, H, T*S, D) -> (B, H, T, S, D); over time: groups by location s -> (B, H, S, T, D)
        x = x.unflatten(2, (num_frames, s))
        return x.transpose(2, 3) if over_time else x

    q_g, k_g, v_g = groups(q_patches), groups(k_patches), groups(v_patches)
    num_groups = q_g.shape[2]
    # every group also sees the class key/value: (B, H, G, 1 + group size, D)
    k_g = torch.cat([k_cls[:, :, None].expand(b, h, num_groups, 1, d), k_g], dim=3)
    v_g = torch.cat([v_cls[:, :, None].expand(b, h, num_groups, 1, d), v_g], dim=3)
    # fused kernels take 4-D inputs only: groups join the head dim, (B, H, G, L, D) -> (B, H*G, L, D)
    out = F.scaled_dot_product_attention(q_g.flatten(1, 2), k_g.flatten(1, 2), v_g.flatten(1, 2))
    out = out.unflatten(1, (h, num_groups))  # (B, H, G, group size, D)
    if over_time:
        out = out.transpose(2, 3)
    return torch.cat([cls_out, out.reshape(b, h, n - 1, d)], dim=2)


def time_attention(q: Tensor, k: Tensor, v: Tensor, num_frames: int) -> Tensor:
    """Each patch attends over its own spatial location in every frame (plus the class key).

    q, k, v: (B, H, 1+T*S, D) -> (B, H, 1+T*S, D).
    """
    return _grouped_attention(q, k, v, num_frames, over_time=True)


def space_attention(q: Tensor, k: Tensor, v: Tensor, num_frames: int) -> Tensor:
    """Each patch attends over the patches of its own frame (plus the class key).

    q, k, v: (B, H, 1+T*S, D) -> (B, H, 1+T*S, D).
    """
    return _grouped_attention(q, k, v, num_frames, over_time=False)
