"""Transformer blocks (pre-norm, layer-norm eps 1e-6), parameter names as in the released checkpoints."""

from __future__ import annotations

from timm.layers import DropPath, Mlp
from torch import Tensor, nn


class Block(nn.Module):
    """x + attn(norm1(x)), then + mlp(norm2(x)) (paper eq. 1).

    ``attn`` is any module called as ``attn(x, num_frames)``. With ``timeattn`` the block is a
    divided space-time block: y = x + timeattn(norm3(x)); z = y + attn(norm1(y)); z + mlp(norm2(z)).
    """

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 timeattn: nn.Module | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attn
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        if timeattn is not None:
            self.norm3 = nn.LayerNorm(dim, eps=1e-6)
            self.timeattn = timeattn
        else:
            self.timeattn = None

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        """x: (B, 1 + T*S, C) -> (B, 1 + T*S, C)."""
        if self.timeattn is not None:
            x = x + self.drop_path(self.timeattn(self.norm3(x), num_frames))
        x = x + self.drop_path(self.attn(self.norm1(x), num_frames))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward_class_token(self, x: Tensor, num_frames: int) -> Tensor:
        """The class token of ``forward(x, num_frames)`` alone: (B, 1 + T*S, C) -> (B, 1, C).

        Only its attention row and MLP are computed (``attn.class_token``); a divided block still runs its time
        attention on every token, since the space attention's keys need them.
        """
        if self.timeattn is not None:
            x = x + self.drop_path(self.timeattn(self.norm3(x), num_frames))
        cls = x[:, :1] + self.drop_path(self.attn.class_token(self.norm1(x), num_frames))
        return cls + self.drop_path(self.mlp(self.norm2(cls)))
