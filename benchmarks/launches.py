"""Count the kernel-launching operations of a forward plus backward, on the meta device (no arithmetic runs).

Every aten operation that reaches the dispatcher counts once, except those that launch no kernel: views
(operations whose output aliases an input, plus ``_unsafe_view``), allocations without a fill
(``empty*``) and non-tensor helpers. This is the number of kernels an eager GPU run launches, up to
the few operations a backend fuses or splits. On the meta device ``scaled_dot_product_attention`` runs as its
math decomposition (about 14 operations forward and backward, where a GPU launches its fused kernels), and
trajectory attention's temporal stage takes the chunk sizes of a GPU, not of the CPU.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

NO_KERNEL = {"_unsafe_view", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
             "promote_types", "lift_fresh", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset"}


def launches_kernel(func: torch._ops.OpOverload) -> bool:
    """Whether the aten operation ``func`` launches a kernel (not a view, an allocation or a helper)."""
    return not func.is_view and func.overloadpacket.__name__ not in NO_KERNEL


class LaunchCounter(TorchDispatchMode):
    """Counts kernel-launching aten operations by name while active: ``counts`` (a Counter), ``total``."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if launches_kernel(func):
            self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_launches(fn: Callable[[Tensor], Tensor], x: Tensor) -> LaunchCounter:
    """Kernel launches of ``fn(x)`` forward plus backward of ``out.sum()`` (the one fill of its gradient counts)."""
    x = x.detach().requires_grad_()
    with LaunchCounter() as counter:
        out = fn(x)
        out.backward(torch.ones_like(out))
    return counter


def layer_launches(module: nn.Module, num_frames: int = 8, per_frame: int = 196, batch: int = 1) -> LaunchCounter:
    """Kernel launches of one attention layer ``module(x, num_frames)`` forward plus backward, on the meta device.

    The module is moved to the meta device (a copy is not made: pass a module built for this).
    """
    module = module.to("meta")
    dim = next(module.parameters()).shape[-1]
    x = torch.empty(batch, 1 + num_frames * per_frame, dim, device="meta")
    return count_launches(lambda tokens: module(tokens, num_frames), x)
