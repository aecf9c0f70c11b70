"""The memory of one training step on CPU, where torch has no peak-memory counter."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["training_memory_bytes"]


def training_memory_bytes(model: nn.Module, loss: Callable[[], Tensor]) -> int:
    """Bytes held by one training step of ``model`` with AdamW: the tensors autograd keeps for the backward pass at
    the end of the forward pass ``loss()`` (distinct storages, parameters excluded), plus the parameters, their
    gradients and the two AdamW moments (frozen parameters once). Runs ``loss().backward()`` once and leaves no
    gradients behind. The peak of a real step is close to this: the backward pass frees saved tensors as it goes.
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
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    return sum(saved.values()) + 4 * trained + frozen
