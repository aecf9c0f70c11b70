"""The optimizer's parameter groups and the learning-rate schedule, counted in optimizer steps."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["SCHEDULES", "build_optimizer", "build_scheduler", "lr_factor", "parameter_groups"]

SCHEDULES = ("steps", "cosine", "linear")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: ``weight_decay`` on weights, none on ``model.no_weight_decay()`` (biases, norms, embeddings)."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name in skip or param.dim() <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``parameter_groups(model, weight_decay)``."""
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr)


def lr_factor(step: int, *, total_steps: int, warmup_steps: float = 0.0, schedule: str = "cosine",
              milestones: Sequence[float] = (), gamma: float = 0.1, min_ratio: float = 0.0) -> float:
    """The learning rate at optimizer step ``step`` (from 0) as a multiple of the base rate.

    Linear warm-up from 0 over ``warmup_steps``, then ``schedule``: ``steps`` multiplies by ``gamma`` at each step of
    ``milestones``; ``cosine`` falls from 1 to ``min_ratio`` by ``total_steps``; ``linear`` falls in a straight line
    from 1 to ``min_ratio`` by ``total_steps``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "steps":
        return gamma ** sum(step >= milestone for milestone in milestones)
    if schedule == "linear":
        return min_ratio + (1.0 - min_ratio) * max(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: float = 0.0,
                    schedule: str = "cosine", milestones: Sequence[float] = (), gamma: float = 0.1,
                    min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that follows ``lr_factor`` (see there), stepped once per optimizer step; a ``schedule`` not in
    ``SCHEDULES`` raises ValueError here."""
    factor = functools.partial(lr_factor, total_steps=total_steps, warmup_steps=warmup_steps, schedule=schedule,
                               milestones=tuple(milestones), gamma=gamma, min_ratio=min_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
