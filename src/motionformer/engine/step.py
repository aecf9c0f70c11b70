"""One optimizer step of a training loop, in pieces: autocast, scaled backward with accumulation, clipping, the
optimizer and the schedule. ``Trainer`` steps through it, and so does any loop of one's own (the paper's experiment
harnesses do)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from motionformer.engine import distributed
from motionformer.engine.precision import autocast, resolve_precision

__all__ = ["TrainStep"]


class TrainStep:
    """Forward under ``autocast()``, then ``backward(loss)`` for each micro-batch and ``step()`` after every
    ``accumulation`` of them.

    ``module`` is what the forward pass runs (a DDP wrapper under torchrun; its gradient sync is skipped for all but
    the last micro-batch of a step); ``precision`` is a ``train.precision`` value (``resolve_precision``); fp16 adds a
    gradient scaler. ``clip_grad``: the largest gradient norm (None: no clipping).
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *, device: torch.device,
                 precision: str = "fp32", accumulation: int = 1, clip_grad: float | None = None):
        if accumulation < 1:
            raise ValueError(f"accumulation must be at least 1, got {accumulation}")
        self.module, self.optimizer, self.scheduler = module, optimizer, scheduler
        self.device, self.accumulation, self.clip_grad = device, accumulation, clip_grad
        self.autocast_dtype, use_scaler = resolve_precision(precision, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context of the forward pass (nothing in fp32)."""
        return autocast(self.device, self.autocast_dtype)

    def backward(self, loss: Tensor, *, sync: bool = True) -> None:
        """Accumulate the gradients of one micro-batch's ``loss`` (divided by ``accumulation``, scaled in fp16);
        ``sync=False`` skips DDP's all-reduce (every micro-batch of a step but the last)."""
        with distributed.maybe_no_sync(self.module, sync):
            self.scaler.scale(loss / self.accumulation).backward()

    def step(self) -> float:
        """Unscale, clip, step the optimizer and the schedule, clear the gradients; returns the gradient norm before
        clipping (NaN without clipping)."""
        self.scaler.unscale_(self.optimizer)
        norm = float("nan")
        if self.clip_grad:
            norm = float(nn.utils.clip_grad_norm_(self.module.parameters(), self.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        return norm

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group (the one the next step uses)."""
        return self.optimizer.param_groups[0]["lr"]
