"""The video transformer of the paper (section 3.3): ViT blocks over space-time tokens.

Parameter names follow the authors' released checkpoints (``cls_token``, ``pos_embed``, ``temp_embed``,
``patch_embed``, ``patch_embed_3d``, ``blocks.N.*``, ``norm``, ``pre_logits.fc``, ``head`` or
``head0``/``head1``), so their state dicts load as they are.

Unlike the released code, ``forward`` always returns logits, never softmax probabilities: one tensor
(B, total classes) whatever the number of heads; ``split_heads(logits, model.heads)`` names its parts.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from motionformer.layers import (
    Block,
    JointAttention,
    SpaceAttention,
    TimeAttention,
    TrajectoryAttention,
    TrajectoryOptions,
)


class AttentionType(str, enum.Enum):
    """The attention of every block (paper Table 4)."""

    TRAJECTORY = "trajectory"
    JOINT = "joint"
    DIVIDED = "divided"


class PosEmbed(str, enum.Enum):
    """Separate space and time position embeddings (the paper's default) or one joint space-time table."""

    SEPARATE = "separate"
    JOINT = "joint"


class PatchEmbed2D(nn.Module):
    """Square tokens: a Conv2d with kernel = stride = patch size, applied to every frame."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, F, H, W) -> (B, F, h, w, C)."""
        b, c, f, h, w = x.shape
        y = self.proj(x.transpose(1, 2).reshape(b * f, c, h, w))  # (B*F, C, h, w)
        return y.unflatten(0, (b, f)).permute(0, 1, 3, 4, 2)


class PatchEmbed3D(nn.Module):
    """Cubic tokens (tubelets): a Conv3d with kernel = stride = (tubelet, patch, patch)."""

    def __init__(self, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, F, H, W) -> (B, T, h, w, C) with T = F / tubelet."""
        return self.proj(x).permute(0, 2, 3, 4, 1)


def resize_grid(table: Tensor, size: Sequence[int]) -> Tensor:
    """Interpolate an embedding table laid out on a grid (*grid, C) to ``size``: bicubic in 2-D,
    linear in 1-D, trilinear in 3-D (align_corners=False). Returns ``table`` itself when sizes match."""
    if tuple(table.shape[:-1]) == tuple(size):
        return table
    mode = {1: "linear", 2: "bicubic", 3: "trilinear"}[len(size)]
    grid = table.movedim(-1, 0).unsqueeze(0)  # (1, C, *grid)
    return F.interpolate(grid.float(), size=tuple(size), mode=mode, align_corners=False)[0].movedim(0, -1).to(
        table.dtype)


class Motionformer(nn.Module):
    """A video transformer with trajectory, joint or divided space-time attention.

    Input: (B, 3, frames, H, W), normalised as the weights expect (mean = std = 0.5 for the paper's
    models). H and W must be multiples of ``patch_size`` and ``frames`` a multiple of
    ``tubelet_size``; other sizes than the model's own work: spatial position embeddings are resized
    bicubically, temporal ones linearly.

    ``pos_embed_size`` is the crop the position table was made for (default ``img_size``); the released
    336-pixel models store the 224-pixel table and resize it at run time.
    ``heads``: {name: classes} for several classifiers (Epic-Kitchens: {"verb": 97, "noun": 300},
    stored as ``head0``, ``head1``); ``forward`` then returns their logits side by side, and ``model.heads``
    (always a dict; ``{"": num_classes}`` for one head) says which columns belong to which head.
    ``trajectory``: how trajectory attention computes (used only with ``attention="trajectory"``).
    ``model.architecture`` holds the keyword arguments as plain JSON values: ``Motionformer(**arguments)``
    rebuilds the network once ``trajectory`` is made a ``TrajectoryOptions`` again (``create_model`` and the
    weight loaders do that).
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        tubelet_size: int = 2,
        num_frames: int = 16,
        in_chans: int = 3,
        num_classes: int = 400,
        heads: dict[str, int] | None = None,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        attention: AttentionType | str = AttentionType.TRAJECTORY,
        pos_embed: PosEmbed | str = PosEmbed.SEPARATE,
        pos_embed_size: int | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        pre_logits: bool = True,
        trajectory: TrajectoryOptions | None = None,
    ):
        trajectory = trajectory or TrajectoryOptions()
        if not isinstance(trajectory, TrajectoryOptions):
            raise TypeError(f"trajectory must be a TrajectoryOptions, got {type(trajectory).__name__} "
                            "(TrajectoryOptions.from_dict makes one from a dict)")
        architecture = {name: value for name, value in locals().items() if name not in ("self", "__class__")}
        super().__init__()
        # the keyword arguments as JSON values, enough to rebuild this network
        self.architecture = {**architecture, "trajectory": trajectory.to_dict()}
        self.trajectory = trajectory
        if img_size % patch_size:
            raise ValueError(f"img_size = {img_size} is not a multiple of patch_size = {patch_size}")
        if num_frames % tubelet_size:
            raise ValueError(f"num_frames = {num_frames} is not a multiple of tubelet_size = {tubelet_size}")
        self.attention = AttentionType(attention)
        self.pos_embed_mode = PosEmbed(pos_embed)
        self.img_size, self.patch_size, self.tubelet_size = img_size, patch_size, tubelet_size
        self.num_frames, self.embed_dim, self.num_features = num_frames, embed_dim, embed_dim
        self.token_frames = num_frames // tubelet_size
        self.grad_checkpointing = False
        grid = (pos_embed_size or img_size) // patch_size
        self.pos_grid = (grid, grid)

        self.patch_embed = PatchEmbed2D(patch_size, in_chans, embed_dim)
        if tubelet_size > 1:
            self.patch_embed_3d = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
            # with tubelets the 2D embedding is unused: kept (frozen) for released checkpoints and ViT init
            self.patch_embed.requires_grad_(False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if self.pos_embed_mode is PosEmbed.SEPARATE:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
            self.temp_embed = nn.Parameter(torch.zeros(1, self.token_frames, embed_dim))
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.token_frames * grid * grid, embed_dim))

        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear in depth
        self.blocks = nn.ModuleList([self._block(rate, num_heads, qkv_bias, mlp_ratio, trajectory) for rate in rates])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.pre_logits = nn.Sequential()
        if pre_logits:
            self.pre_logits.add_module("fc", nn.Linear(embed_dim, embed_dim))
            self.pre_logits.add_module("act", nn.Tanh())
        self.head_drop = nn.Dropout(drop_rate)
        self.heads: dict[str, int] = {}
        self.reset_classifier(num_classes, heads)
        self._init_weights()

    # ------------------------------------------------------------------ set-up

    def _block(self, drop_path: float, num_heads: int, qkv_bias: bool, mlp_ratio: float,
               trajectory: TrajectoryOptions) -> Block:
        """One transformer block with the model's attention."""
        dim = self.embed_dim
        if self.attention is AttentionType.TRAJECTORY:
            return Block(dim, TrajectoryAttention(dim, num_heads, qkv_bias, trajectory), mlp_ratio, drop_path)
        if self.attention is AttentionType.JOINT:
            return Block(dim, JointAttention(dim, num_heads, qkv_bias), mlp_ratio, drop_path)
        return Block(dim, SpaceAttention(dim, num_heads, qkv_bias), mlp_ratio, drop_path,
                     timeattn=TimeAttention(dim, num_heads, qkv_bias))

    def _init_weights(self) -> None:
        for param in (self.cls_token, self.pos_embed, getattr(self, "temp_embed", None)):
            if param is not None:
                nn.init.trunc_normal_(param, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def reset_classifier(self, num_classes: int, heads: dict[str, int] | None = None) -> None:
        """Replace the classifier: one head of ``num_classes`` (0 for none: ``forward`` returns pre-logits), or
        named ``heads`` (``head0``, ``head1`` ...). ``num_classes`` becomes the total over heads."""
        for name in ("head", *(f"head{i}" for i in range(len(self.heads)))):
            if hasattr(self, name):
                delattr(self, name)
        self.architecture.update(num_classes=num_classes, heads=dict(heads) if heads else None)
        if heads:
            self.heads = dict(heads)
            for i, classes in enumerate(heads.values()):
                self.add_module(f"head{i}", nn.Linear(self.embed_dim, classes))
        else:
            self.heads = {"": num_classes} if num_classes > 0 else {}
            self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.num_classes = sum(self.heads.values())

    def no_weight_decay(self) -> set[str]:
        """Parameters that get no weight decay: embeddings and the class token (norms and biases too)."""
        skip = {"cls_token", "pos_embed", "temp_embed"}
        return {name for name, p in self.named_parameters() if name in skip or p.dim() <= 1}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them."""
        self.grad_checkpointing = enable

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (the Hugging Face Hub layout) to ``directory``."""
        from motionformer.models.hub import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **download: Any) -> Motionformer:
        """A model from a ``save_pretrained`` folder or a Hub repository id (``models.hub.from_pretrained``)."""
        from motionformer.models.hub import from_pretrained

        return from_pretrained(name_or_path, **download)

    # ------------------------------------------------------------------ forward

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(f"expected a clip (B, {self.patch_embed.proj.in_channels}, frames, H, W), "
                             f"got shape {tuple(x.shape)}")
        _, _, frames, height, width = x.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"input size {height}x{width} is not a multiple of the patch size {self.patch_size}")
        if frames % self.tubelet_size:
            raise ValueError(f"{frames} frames is not a multiple of the tubelet size {self.tubelet_size}")

    def embed(self, x: Tensor) -> tuple[Tensor, int]:
        """Tokens with position embeddings: (B, 3, F, H, W) -> ((B, 1 + T*S, C), T)."""
        self._check_input(x)
        patches = self.patch_embed_3d(x) if self.tubelet_size > 1 else self.patch_embed(x)  # (B, T, h, w, C)
        b, t, h, w, c = patches.shape
        if self.pos_embed_mode is PosEmbed.SEPARATE:
            space = resize_grid(self.pos_embed[0, 1:].view(*self.pos_grid, c), (h, w))  # (h, w, C)
            time = resize_grid(self.temp_embed[0], (t,))  # (T, C)
            patches = patches + space + time[:, None, None]
        else:
            table = self.pos_embed[0, 1:].view(self.token_frames, *self.pos_grid, c)
            patches = patches + resize_grid(table, (t, h, w))
        cls = self.cls_token + self.pos_embed[:, :1]
        return torch.cat([cls.expand(b, -1, -1), patches.reshape(b, t * h * w, c)], dim=1), t

    def _run_block(self, block: Callable[[Tensor, int], Tensor], tokens: Tensor, frames: int) -> Tensor:
        """``block(tokens, frames)``, its activations recomputed in the backward pass with grad checkpointing."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, tokens, frames, use_reentrant=False)
        return block(tokens, frames)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, F, H, W) -> normalised tokens (B, 1 + T*S, C)."""
        tokens, frames = self.embed(x)
        for block in self.blocks:
            tokens = self._run_block(block, tokens, frames)
        return self.norm(tokens)

    def forward_class_token(self, x: Tensor) -> Tensor:
        """(B, 3, F, H, W) -> the normalised class token (B, 1, C) of ``forward_features``, the last block computing
        the class token's row only (its attention over all tokens and its MLP): 200.5 instead of 216.5 GMAC for
        ``mformer_b`` at 16x224 (``FlopCounterMode``)."""
        tokens, frames = self.embed(x)
        if not len(self.blocks):
            return self.norm(tokens[:, :1])
        for block in self.blocks[:-1]:
            tokens = self._run_block(block, tokens, frames)
        return self.norm(self._run_block(self.blocks[-1].forward_class_token, tokens, frames))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Class token -> pre-logits (Linear + tanh) -> logits (B, total classes), the heads side by side."""
        x = self.head_drop(self.pre_logits(x[:, 0]))
        if pre_logits:
            return x
        if hasattr(self, "head"):
            return self.head(x)
        return torch.cat([getattr(self, f"head{i}")(x) for i in range(len(self.heads))], dim=-1)

    def unused_by_logits(self) -> list[str]:
        """Names of the parameters ``forward``'s logits do not depend on: those of the last block's attention
        besides ``qkv`` and ``proj`` (trajectory attention's ``proj_q`` and ``proj_kv``, which only patch tokens
        use). They get no gradient in training (DDP must be told)."""
        if not len(self.blocks):
            return []
        last = len(self.blocks) - 1
        return [f"blocks.{last}.attn.{name}" for name, _ in self.blocks[-1].attn.named_parameters()
                if not name.startswith(("qkv.", "proj."))]

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, F, H, W) -> logits (B, total classes). Never probabilities.

        Equals ``forward_head(forward_features(x))`` up to rounding, through ``forward_class_token``.
        """
        return self.forward_head(self.forward_class_token(x))

    @torch.no_grad()
    def trajectory_attention_maps(self, x: Tensor, query: tuple[int, int, int], layers: Sequence[int] | None = None
                                  ) -> dict[int, Tensor]:
        """Eq. 4 weights that one query token pays to every frame (Fig. 4), per trajectory layer.

        query: (token frame t, row, column) on the token grid. Returns {layer: (B, heads, T, h, w)}.
        """
        if self.attention is not AttentionType.TRAJECTORY:
            raise ValueError(f"attention maps need trajectory attention, this model uses {self.attention.value}")
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        t_query, row, col = query
        tokens, frames = self.embed(x)
        if not (0 <= t_query < frames and 0 <= row < h and 0 <= col < w):
            raise ValueError(f"query {query} is outside the token grid {frames}x{h}x{w}")
        wanted = set(range(len(self.blocks)) if layers is None else layers)
        maps = {}
        for index, block in enumerate(self.blocks):
            if index in wanted:
                attn = block.attn.spatial_attention_map(block.norm1(tokens), frames, (t_query * h + row) * w + col)
                maps[index] = attn.unflatten(-1, (h, w))
            tokens = block(tokens, frames)
        return maps


def split_heads(logits: Tensor, heads: Mapping[str, int]) -> dict[str, Tensor]:
    """{head name: its logits (..., classes)} from the model's output (..., total classes) and ``model.heads``."""
    total = sum(heads.values())
    if logits.shape[-1] != total:
        raise ValueError(f"logits have {logits.shape[-1]} columns but the heads {dict(heads)} have {total} classes")
    return dict(zip(heads, logits.split(list(heads.values()), dim=-1), strict=True))


def load_strict(model: nn.Module, state: Mapping[str, Tensor], source: object) -> None:
    """``model.load_state_dict(state)``, or a ValueError naming ``source`` and every missing, unexpected or
    mis-shaped tensor."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    parts = [f"{kind} {names[:8]}" for kind, names in
             (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if names]
    if parts:
        raise ValueError(f"{source}: the config does not match the tensors: " + "; ".join(parts))
    model.load_state_dict(state)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (the released K400 Motionformer has 109,144,720 including the unused 2-D patch
    embedding)."""
    return sum(p.numel() for p in model.parameters())

