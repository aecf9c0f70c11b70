"""One job of the motion benchmark: train one arm with one seed through the engine's loop, and measure it."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from motionformer.engine.memory import step_memory_bytes
from motionformer.engine.metrics import model_accuracy
from motionformer.engine.optim import build_optimizer, build_scheduler
from motionformer.engine.step import TrainStep
from motionformer.models.flops import count_flops
from motionformer.models.motionformer import count_parameters
from motionformer_experiments.motion.arms import NUM_CLASSES, Arm, Budget, build_model, render_batch, validation_set

__all__ = ["train_arm", "training_memory"]


def training_memory(model: nn.Module, video: Tensor, labels: Tensor, device: torch.device | None = None) -> int:
    """Bytes of one training step of ``model`` on a batch (``step_memory_bytes``)."""
    return step_memory_bytes(model, lambda: F.cross_entropy(model(video), labels), device or video.device)


def _train_step(budget: Budget, model: nn.Module, device: torch.device) -> TrainStep:
    """AdamW, warm-up then cosine to 0 over the budget's steps, gradient clipping."""
    optimizer = build_optimizer(model, budget.lr, budget.weight_decay)
    scheduler = build_scheduler(optimizer, total_steps=budget.steps, warmup_steps=budget.warmup * budget.steps,
                                schedule="cosine")
    return TrainStep(model, optimizer, scheduler, device=device, clip_grad=budget.clip_grad)


def _batches(arm: Arm, budget: Budget, seed: int, device: torch.device) -> Callable[[], tuple[Tensor, Tensor]]:
    """Fresh training clips and labels on every call: the same stream, in the same order, for every arm of a seed."""
    stream = np.random.default_rng([seed, 1])
    frame_rng = np.random.default_rng([seed, 2])

    def batch() -> tuple[Tensor, Tensor]:
        labels = stream.integers(NUM_CLASSES, size=budget.batch_size)
        video = render_batch(arm, budget, labels, stream.integers(2**31, size=budget.batch_size), frame_rng)
        return video.to(device), torch.from_numpy(labels).to(device)

    return batch


def _loss_curve(losses: list[float]) -> dict[str, list[float]]:
    """The training loss in (at most) 20 consecutive bins: the step each bin ends at, and its mean."""
    bins = np.array_split(np.array(losses), min(20, len(losses)))
    return {"steps": np.cumsum([len(b) for b in bins]).tolist(), "mean_loss": [round(float(b.mean()), 4) for b in bins]}


def train_arm(arm: Arm, budget: Budget, seed: int, device: str = "cpu", threads: int = 1) -> dict[str, Any]:
    """Train one arm with one seed; returns its measurements (``top1`` in [0, 1])."""
    torch.set_num_threads(threads)
    device_ = torch.device(device)
    begin = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model(arm, budget).to(device_)
    step = _train_step(budget, model, device_)
    batch = _batches(arm, budget, seed, device_)
    video, labels = batch()
    memory = training_memory(model, video, labels, device_)
    step_times, losses = [], []
    for index in range(budget.steps):
        if index:
            video, labels = batch()
        start = time.perf_counter()
        loss = F.cross_entropy(model(video), labels, label_smoothing=budget.label_smoothing)
        step.backward(loss)
        step.step()
        losses.append(loss.item())
        if device_.type == "cuda":
            torch.cuda.synchronize(device_)
        step_times.append(time.perf_counter() - start)
        if not math.isfinite(losses[-1]):
            raise RuntimeError(f"{arm.group}/{arm.name} seed {seed}: the loss is {losses[-1]} at step {index}")
    val_video, val_labels = validation_set(arm, budget)
    tail = losses[-max(1, len(losses) // 10):]
    return {
        "group": arm.group, "name": arm.name, "seed": seed,
        "top1": model_accuracy(model, val_video, val_labels, batch_size=50, device=device_),
        "final_train_loss": sum(tail) / len(tail), "loss_curve": _loss_curve(losses),
        "params": count_parameters(model), "macs": count_flops(model),
        "memory_bytes": memory, "step_seconds": statistics.median(step_times),
        "wall_seconds": time.perf_counter() - begin,
    }
