"""The memory of one training step: ``max_memory_allocated`` on CUDA, the tensors autograd keeps on the CPU."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["step_memory_bytes", "training_memory_bytes"]


def _parameter_bytes(model: nn.Module, trainable: bool) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad == trainable)


def training_memory_bytes(model: nn.Module, loss: Callable[[], Tensor]) -> int:
    """Bytes held by one training step of ``model`` with AdamW, on the CPU where torch has no peak-memory counter:
    the tensors autograd keeps for the backward pass at the end of the forward pass ``loss()`` (distinct storages,
    parameters excluded), plus the parameters, their gradients and the two AdamW moments (frozen parameters once).
    Runs ``loss().backward()`` once and leaves no gradients behind. The peak of a real step is close to this: the
    backward pass frees saved tensors as it goes.
    """
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        value = loss()
    value.backward()
    model.zero_grad(set_to_none=True)
    return sum(saved.values()) + 4 * _parameter_bytes(model, True) + _parameter_bytes(model, False)


def step_memory_bytes(model: nn.Module, loss: Callable[[], Tensor], device: torch.device) -> int:
    """Bytes of one AdamW training step of ``model`` on ``device``, measured by running ``loss().backward()`` once
    (no gradients are left behind, the weights do not change).

    On CUDA: the peak of ``max_memory_allocated`` over the forward and backward pass, plus the two AdamW moments of
    the trainable parameters (the optimizer allocates them at its first step). On the CPU: ``training_memory_bytes``.
    """
    if device.type != "cuda":
        return training_memory_bytes(model, loss)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    loss().backward()
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) + 2 * _parameter_bytes(model, True)
