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
    """For each micro-batch, the forward under ``autocast()`` and ``backward(loss)`` inside ``micro_batch(sync)``;
    ``step()`` after every ``accumulation`` of them.

    ``module`` is what the forward pass runs (a DDP wrapper under torchrun, possibly compiled; its gradient sync is
    skipped for all but the last micro-batch of a step); ``precision`` is a ``train.precision`` value
    (``resolve_precision``); fp16 adds a gradient scaler. ``clip_grad``: the largest gradient norm (None: no
    clipping). Nothing here waits for the device, except the fp16 scaler's check for infinite gradients.
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

    def micro_batch(self, sync: bool = True) -> contextlib.AbstractContextManager:
        """The context of one micro-batch's forward and backward; ``sync=False`` (every micro-batch of a step but
        the last) skips DDP's gradient all-reduce, which DDP decides in the forward pass."""
        return distributed.maybe_no_sync(self.module, sync)

    def backward(self, loss: Tensor) -> None:
        """Accumulate the gradients of one micro-batch's ``loss`` (divided by ``accumulation``, scaled in fp16)."""
        self.scaler.scale(loss / self.accumulation).backward()

    def step(self) -> Tensor | None:
        """Unscale, clip, step the optimizer and the schedule, clear the gradients; returns the gradient norm before
        clipping (a device tensor, not read here; None without clipping).

        The schedule does not advance when the fp16 scaler skipped the optimizer step (infinite gradients).
        """
        self.scaler.unscale_(self.optimizer)
        norm = None
        if self.clip_grad:
            norm = nn.utils.clip_grad_norm_(self.module.parameters(), self.clip_grad)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        skipped = scale is not None and self.scaler.get_scale() < scale  # the scale backs off only on a skip
        if self.scheduler is not None and not skipped:
            self.scheduler.step()
        return norm

    def load_scaler(self, state: dict) -> None:
        """Restore the gradient scaler from a checkpoint's ``state_dict()``; a run saved without a scaler (fp32,
        bf16) resumed in fp16 starts from a fresh scale, and a saved scale is ignored without fp16."""
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group (the one the next step uses)."""
        return self.optimizer.param_groups[0]["lr"]
