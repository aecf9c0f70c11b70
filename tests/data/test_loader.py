"""build_loader: reproducible order and items per (seed, epoch) with any number of workers, sharding, collate."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from motionformer.data.datasets.entry import VideoEntry
from motionformer.data.datasets.video import VideoClipDataset
from motionformer.data.loader import build_loader, collate_clips, set_epoch
from motionformer.data.sampling import RandomClipSampler, UniformClipSampler
from motionformer.data.transforms import test_transform, train_transform
from tests.data.conftest import make_video


class _Numbers(Dataset):
    """Items are their own index: enough to test samplers without decoding."""

    def __init__(self, size):
        self.size, self.epoch = size, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.size

    def __getitem__(self, key):
        epoch, index = key
        return {"index": index, "epoch": epoch, "skipped": []}


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loader")
    return [make_video(folder / f"v{k}.mp4", 12, size=(32, 32), gop=6) for k in range(4)]


def _train_set(paths, seed=0):
    entries = [VideoEntry(path, label=k) for k, path in enumerate(paths)]
    return VideoClipDataset(entries, RandomClipSampler(4), train_transform(16, scale_range=(16, 24)), training=True,
                            seed=seed)


def _epoch(loader, epoch):
    set_epoch(loader, epoch)
    return list(loader)


def test_same_batches_with_and_without_workers(paths):
    serial = build_loader(_train_set(paths, seed=5), 2, training=True, seed=5, pin_memory=False)
    parallel = build_loader(_train_set(paths, seed=5), 2, training=True, seed=5, workers=2, pin_memory=False)
    for epoch in (1, 2):
        first, second = _epoch(serial, epoch), _epoch(parallel, epoch)
        assert len(first) == len(second) == 2
        for a, b in zip(first, second, strict=True):
            assert torch.equal(a["index"], b["index"]) and torch.equal(a["video"], b["video"])
            assert a["video"].shape == (2, 3, 4, 16, 16) and a["label"].dtype == torch.int64
    assert not torch.equal(torch.cat([b["video"] for b in first]), torch.cat([b["video"] for b in _epoch(serial, 1)]))


def test_order_follows_seed_and_epoch():
    def order(seed, epoch):
        loader = build_loader(_Numbers(20), 5, training=True, seed=seed, pin_memory=False)
        return torch.cat([batch["index"] for batch in _epoch(loader, epoch)]).tolist()

    assert order(0, 1) == order(0, 1) and sorted(order(0, 1)) == list(range(20))
    assert order(0, 1) != order(0, 2) and order(0, 1) != order(1, 1)
    batches = _epoch(build_loader(_Numbers(7), 3, training=False, pin_memory=False), 4)
    assert [batch["index"].tolist() for batch in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches[0]["epoch"].tolist() == [4, 4, 4]


@pytest.mark.parametrize("training", [True, False])
def test_distributed_ranks_are_disjoint_and_cover(training):
    def indices(rank, epoch):
        loader = build_loader(_Numbers(20), 3, training=training, num_replicas=2, rank=rank, pin_memory=False,
                              drop_last=False)
        return torch.cat([batch["index"] for batch in _epoch(loader, epoch)]).tolist()

    ranks = [indices(0, 1), indices(1, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 10
    assert set(ranks[0]).isdisjoint(ranks[1]) and set(ranks[0]) | set(ranks[1]) == set(range(20))
    assert (indices(0, 2) != ranks[0]) == training


def test_test_loader_batches_views(paths):
    entries = [VideoEntry(path, label={"verb": k, "noun": 10 + k}) for k, path in enumerate(paths[:2])]
    dataset = VideoClipDataset(entries, UniformClipSampler(4, num_clips=2), test_transform(16, num_crops=3),
                               training=False)
    batches = _epoch(build_loader(dataset, 4, training=False, pin_memory=False), 0)
    (batch,) = batches
    assert batch["video"].shape == (4, 3, 3, 4, 16, 16)
    assert batch["entry_index"].tolist() == [0, 0, 1, 1] and batch["view"].tolist() == [0, 1, 0, 1]
    assert batch["label"]["verb"].tolist() == [0, 0, 1, 1] and batch["label"]["noun"].tolist() == [10, 10, 11, 11]


def test_skips_in_workers_reach_the_main_process_in_batches(paths, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\0" * 500)
    missing = tmp_path / "missing.mp4"
    dataset = _train_set([paths[0], missing, corrupt, paths[1]])
    loader = build_loader(dataset, 2, training=True, workers=2, pin_memory=False)
    skipped = {}
    for batch in _epoch(loader, 0):
        assert batch["video"].shape == (2, 3, 4, 16, 16)
        skipped.update(batch["skipped"])
    assert dataset.skipped == {}  # the workers' records stay in the workers
    assert skipped.keys() == {str(missing), str(corrupt)} and skipped[str(missing)] == "file not found"


def test_collate_clips():
    items = [{"video": torch.zeros(3, 2), "label": 1, "index": 0, "skipped": [("a", "why")]},
             {"video": torch.ones(3, 2), "label": 4, "index": 1, "skipped": [("b", "why"), ("c", "why")]}]
    batch = collate_clips(items)
    assert batch["video"].shape == (2, 3, 2) and batch["label"].tolist() == [1, 4]
    assert batch["skipped"] == [("a", "why"), ("b", "why"), ("c", "why")]
    with pytest.raises(TypeError, match="'name'"):
        collate_clips([{"name": 1.5}])
