"""The small Transformer of the Long Range Arena comparison, with pluggable attention.

The setup of the Nystromformer LRA code, which the paper's Table 5 used: token plus learned position embeddings,
2 pre-norm layers of width 64 with 2 heads of 32 channels and a feed-forward width of 128 (GELU), a final LayerNorm,
mean pooling over the real (non-padding) tokens and a two-layer classifier. ``attention``:

* ``exact``: softmax attention (``scaled_dot_product_attention``, fused), padding keys masked out;
  ``exact-unfused`` the same function computed as softmax(Q K^T / sqrt(d)) V with the N x N map in memory;
* ``orthoformer-R``: Algorithm 1 with R most-orthogonal prototypes (``orthoformer_attention``);
* ``nystrom-R``: Nystrom attention with R landmarks (segment means, 6 pseudo-inverse iterations);
* ``performer-M``: FAVOR+ with M orthogonal random features (drawn once, a buffer).

The approximations take no mask: as in the Nystromformer code, queries, keys and values are zero at padding
positions, so a padding key has logit 0 (and adds nothing to the values); Orthoformer never picks a zero vector as a
prototype.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from motionformer.attention import (
    nystrom_attention,
    orthoformer_attention,
    orthogonal_random_features,
    performer_attention,
)

__all__ = ["ATTENTIONS", "LRAModel", "SequenceAttention", "parse_attention"]

ATTENTIONS = ("exact", "orthoformer-64", "orthoformer-128", "nystrom-128", "performer-256")
_NAME = re.compile(r"^(exact-unfused|exact|orthoformer|nystrom|performer)(?:-(\d+))?$")
_DEFAULT_SIZE = {"orthoformer": 64, "nystrom": 128, "performer": 256}


def parse_attention(name: str) -> tuple[str, int | None]:
    """``orthoformer-64`` -> ("orthoformer", 64); ``exact`` -> ("exact", None). ValueError names a bad name."""
    match = _NAME.match(name)
    if not match or (match[1].startswith("exact") and match[2]):
        raise ValueError(f"unknown attention {name!r}: expected exact, orthoformer-R, nystrom-R or performer-M "
                         f"(e.g. {', '.join(ATTENTIONS)})")
    kind, size = match[1], match[2]
    if kind.startswith("exact"):
        return kind, None
    size = int(size) if size else _DEFAULT_SIZE[kind]
    if size < 1:
        raise ValueError(f"attention {name!r}: the size must be at least 1")
    return kind, size


class SequenceAttention(nn.Module):
    """Multi-head attention over (B, N, C) tokens with a (B, N) bool mask of real tokens."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, attention: str = "exact"):
        super().__init__()
        self.kind, self.size = parse_attention(attention)
        self.num_heads, self.head_dim = num_heads, head_dim
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim)
        self.proj = nn.Linear(num_heads * head_dim, dim)
        if self.kind == "performer":
            self.register_buffer("projection", orthogonal_random_features(self.size, head_dim), persistent=True)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]
        if self.kind == "exact":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        elif self.kind == "exact-unfused":  # the (N, N) attention map in memory, as the paper's exact row had
            logits = q @ k.transpose(-2, -1) * self.head_dim ** -0.5
            if attn_mask is not None:
                logits = logits.masked_fill(~attn_mask, float("-inf"))
            out = torch.softmax(logits, dim=-1) @ v
        else:
            if mask is not None:
                keep = mask[:, None, :, None].to(q.dtype)
                q, k, v = q * keep, k * keep, v * keep
            if self.kind == "orthoformer":
                out = orthoformer_attention(q, k, v, self.size)
            elif self.kind == "nystrom":
                out = nystrom_attention(q, k, v, self.size)
            else:
                out = performer_attention(q, k, v, self.projection)
        return self.proj(out.transpose(1, 2).flatten(2))


class _Layer(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int, hidden: int, dropout: float, attention: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SequenceAttention(dim, num_heads, head_dim, attention)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask))
        return x + self.drop(self.mlp(self.norm2(x)))


class LRAModel(nn.Module):
    """Token ids (B, N) (0 is padding when ``padding``) -> logits (B, classes)."""

    def __init__(self, *, vocab_size: int, num_classes: int, max_length: int, attention: str = "exact",
                 dim: int = 64, depth: int = 2, num_heads: int = 2, head_dim: int = 32, hidden: int = 128,
                 dropout: float = 0.1, padding: bool = True):
        super().__init__()
        self.max_length, self.padding, self.attention = max_length, padding, attention
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_length, dim)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(_Layer(dim, num_heads, head_dim, hidden, dropout, attention) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.shape[1] > self.max_length:
            raise ValueError(f"{tokens.shape[1]} tokens exceed the model's max_length {self.max_length}")
        mask = tokens != 0 if self.padding else None
        if mask is not None and bool(mask.all()):  # once per batch, not per layer: no padding, no mask
            mask = None
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.drop(self.embed(tokens) + self.position(positions))
        for layer in self.layers:
            x = layer(x, mask)
        x = self.norm(x)
        if mask is None:
            pooled = x.mean(1)
        else:
            weights = mask.to(x.dtype).unsqueeze(-1)
            pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(pooled)
