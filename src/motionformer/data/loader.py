"""Data loaders for clip datasets: seeded order, distributed sharding, worker seeding and a collate for clip dicts.

Reproducibility: the order of items comes from ``(seed, epoch)`` (a seeded permutation, or ``DistributedSampler``
with ``seed``), and each item from ``(seed, epoch, index)`` (see ``motionformer.data.datasets.video``). Call
``set_epoch(loader, epoch)`` before iterating each epoch: an exact resume of training from a checkpoint then
replays the same order and augmentations, which it does not without the call (every epoch would repeat epoch 0).
"""

from __future__ import annotations

import functools
import itertools
import random
import signal
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler, get_worker_info

from motionformer.data.datasets.video import derived_seed

__all__ = ["EpochSampler", "build_loader", "collate_clips", "set_epoch"]

_WORKER = 3  # the last key of derived_seed for worker seeds (0-2 are the dataset's)


class _SeededPermutation(Sampler[int]):
    """A permutation of ``range(size)`` drawn from ``(seed, epoch)``."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` for each index of ``indices``, so workers read items as in the main process's epoch.

    ``indices`` is a sampler of ints (``DistributedSampler``, a permutation, ``SequentialSampler``);
    ``set_epoch`` passes the epoch on to it when it has ``set_epoch``; its ``start`` skips that many items of the
    epoch's order without reading them (resuming mid-epoch).
    """

    def __init__(self, indices: Sampler[int]):
        self.indices, self.epoch, self.start = indices, 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= len(self.indices):
            raise ValueError(f"start must be in [0, {len(self.indices)}], got {start}")
        self.epoch, self.start = epoch, start
        if hasattr(self.indices, "set_epoch"):
            self.indices.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in itertools.islice(self.indices, self.start, None))

    def __len__(self) -> int:
        return len(self.indices) - self.start


def collate_clips(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch clip dicts: tensors stacked, ints (``label``, ``index``, ``view``...) as int64 tensors, dict labels as
    dicts of tensors, and the ``skipped`` lists of (path, reason) concatenated."""
    return {key: _collate([item[key] for item in items], key) for key in items[0]}


def _collate(values: list[Any], key: str) -> Any:
    if key == "skipped":
        return [pair for value in values for pair in value]
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(values)
    if isinstance(first, Mapping):
        return {name: _collate([value[name] for value in values], name) for name in first}
    if isinstance(first, int):
        return torch.tensor(values, dtype=torch.int64)
    raise TypeError(f"cannot batch {key!r} values of type {type(first).__name__}")


def _seed_worker(worker_id: int, seed: int) -> None:
    """Seed numpy, random and torch in a worker from (loader seed, the dataset's epoch at start, worker id).

    Workers ignore SIGINT and SIGTERM: a Ctrl-C or a SIGTERM sent to the whole process group (SLURM, torchrun,
    ``timeout``) is the main process's to handle, which then checkpoints and shuts the workers down.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    epoch = getattr(get_worker_info().dataset, "epoch", 0)
    seed = derived_seed(seed, epoch, worker_id, _WORKER)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_loader(dataset: Dataset, batch_size: int, *, training: bool, workers: int = 0,
                 pin_memory: bool | None = None, seed: int = 0, distributed: bool | None = None,
                 num_replicas: int | None = None, rank: int | None = None, drop_last: bool | None = None,
                 persistent_workers: bool | None = None) -> DataLoader:
    """A loader over a map-style dataset: shuffled by ``(seed, epoch)`` when ``training``, in order otherwise.

    ``distributed`` (default: torch.distributed is initialised, or ``num_replicas`` is given) shards the data
    with a ``DistributedSampler`` (``num_replicas`` and ``rank`` default to the process group's); its shards
    are padded with repeated items to equal length, so evaluation should drop repeats by ``"index"``.
    ``pin_memory`` defaults to CUDA being available, ``drop_last`` to ``training``, ``persistent_workers`` to
    ``workers > 0``. The dataset is indexed with ``(epoch, index)`` pairs (see ``EpochSampler``); call
    ``set_epoch`` before each epoch. Each worker seeds ``random``, numpy and torch from (``seed``, the dataset's
    epoch when the worker starts, worker id), for transforms that use them; persistent workers start once, so
    the dataset's own randomness, taken from each item's (seed, epoch, index), is what makes items reproducible.
    """
    if distributed is None:
        distributed = num_replicas is not None or (dist.is_available() and dist.is_initialized())
    if distributed:
        indices: Sampler[int] = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=training,
                                                   seed=seed)
    elif training:
        indices = _SeededPermutation(len(dataset), seed)
    else:
        indices = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSampler(indices),
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=training if drop_last is None else drop_last,
        persistent_workers=workers > 0 if persistent_workers is None else persistent_workers,
        worker_init_fn=functools.partial(_seed_worker, seed=seed) if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


def set_epoch(loader: DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Start ``epoch``: sets the epoch of the loader's sampler (order) and dataset (clips, augmentation).

    ``start_batch`` > 0 resumes the epoch at that batch: the batches before it are skipped without being read.
    """
    if isinstance(loader.sampler, EpochSampler):
        loader.sampler.set_epoch(epoch, start_batch * (loader.batch_size or 1))
    elif start_batch:
        raise ValueError("start_batch needs a loader made by build_loader")
    elif hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
