"""All distributed code: process-group set-up from torchrun's environment, ranks, reductions, gathering, unwrapping.

``torchrun --nproc_per_node=N -m motionformer train ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
``setup`` reads them and joins the group (NCCL on GPUs, gloo on CPU). Without them everything runs in one process
and each helper here is a no-op, so the engine has one code path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from error


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU when CUDA is available, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("train.device=cuda but CUDA is not available; use train.device=cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(device)


def setup(device: str = "auto", timeout_minutes: float = 30.0) -> DistributedContext:
    """Join the process group that torchrun describes (if any) and pick this process's device."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    target = resolve_device(device, local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes),
                                **({"device_id": target} if backend == "nccl" else {}))
        log.debug("rank %d of %d joined the %s group on %s", rank, world_size, backend, target)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=target)


def cleanup() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over processes (a new tensor; ``tensor`` itself when alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def all_gather_objects(value: Any) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` when alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def gather_to_main(tensor: Tensor) -> list[Tensor] | None:
    """Every process's ``tensor`` on the main process, in rank order (None elsewhere; ``[tensor]`` when alone).

    Shapes may differ in the first dimension only; each piece comes back with its own length.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return [tensor]
    lengths = torch.zeros(dist.get_world_size(), dtype=torch.long, device=tensor.device)
    lengths[dist.get_rank()] = tensor.shape[0]
    dist.all_reduce(lengths)
    longest = int(lengths.max())
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[:tensor.shape[0]] = tensor
    pieces = [torch.empty_like(padded) for _ in range(dist.get_world_size())] if dist.get_rank() == 0 else None
    dist.gather(padded, pieces, dst=0)
    if pieces is None:
        return None
    return [piece[:length] for piece, length in zip(pieces, lengths.tolist(), strict=True)]


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every process."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def broadcast_tensors(tensors: list[Tensor]) -> None:
    """Overwrite ``tensors`` in every process with the main process's values (in place)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for tensor in tensors:
        dist.broadcast(tensor, src=0)


def wrap(model: nn.Module, context: DistributedContext, ignore: Sequence[str] = ()) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several processes, else as it is.

    ``ignore``: names of parameters the loss never depends on (they get no gradient, which DDP otherwise refuses);
    DDP leaves them out, and they are sent from the main process here instead.
    """
    if not context.distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    if ignore:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, list(ignore))
        parameters = dict(model.named_parameters())
        broadcast_tensors([parameters[name].data for name in ignore])
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP (and ``torch.compile``) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _ddp(model: nn.Module) -> nn.parallel.DistributedDataParallel | None:
    """The DistributedDataParallel wrapper of ``model`` (looking inside a ``torch.compile`` wrapper), if any."""
    while not isinstance(model, nn.parallel.DistributedDataParallel):
        if not hasattr(model, "_orig_mod"):
            return None
        model = model._orig_mod
    return model


@contextlib.contextmanager
def maybe_no_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    """Skip DDP's gradient all-reduce for the forward and backward passes run inside, unless ``sync`` (gradient
    accumulation). DDP decides in the forward pass whether the backward all-reduces, so both must run inside."""
    ddp = _ddp(model)
    if sync or ddp is None:
        yield
    else:
        with ddp.no_sync():
            yield
