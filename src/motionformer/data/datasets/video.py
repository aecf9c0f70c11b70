"""A clip dataset over ``VideoEntry`` lists: decode, sample, transform, and substitute unreadable videos.

Reproducibility contract: every random choice for item ``index`` (where the clip lies, the augmentation, which
entry replaces an unreadable one) is drawn from seeds derived from ``(seed, epoch, index)`` alone, never from a
global or per-process generator. For a given seed and epoch an item is therefore identical whichever process
or data-loader worker loads it, and in whatever order. Call ``set_epoch`` before each epoch (for a loader,
``motionformer.data.loader.set_epoch``). An item may also be asked for as ``dataset[(epoch, index)]``; the
loader's samplers do that, so persistent workers (which hold their own copy of the dataset) follow the main
process's epoch.

Unreadable videos never stop training: a missing file, a corrupt file or any other error while decoding is
logged once per path (per process), recorded in ``skipped``, and another entry, chosen from
``(seed, epoch, index, attempt)``, is read in its place, up to ``max_retries`` times. Each item lists what it
replaced in ``item["skipped"]`` as ``(path, reason)`` pairs (empty normally), since loader workers are separate
processes whose records the main process cannot see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from motionformer.data.datasets.entry import VideoEntry
from motionformer.data.decoding import DEFAULT_FOLDER_FPS, VideoDecodeError, open_video
from motionformer.data.sampling import ClipSampler, Segment
from motionformer.data.transforms import seeded

__all__ = ["VideoClipDataset", "derived_seed"]

log = logging.getLogger(__name__)

# The last key of derived_seed: what the seed is for, so that the streams of one item are unrelated.
_CLIP_POSITION, _AUGMENTATION, _SUBSTITUTE = 0, 1, 2


def derived_seed(*keys: int) -> int:
    """A 63-bit seed from non-negative integer keys, e.g. ``(seed, epoch, index)``; any differing key gives an
    unrelated seed (numpy's ``SeedSequence`` hashing)."""
    if any(key < 0 for key in keys):
        raise ValueError(f"seed keys must be >= 0, got {keys}")
    return int(np.random.SeedSequence([int(key) for key in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _reason(error: Exception) -> str:
    """Why a video could not be read, without the path (the record names it)."""
    if isinstance(error, VideoDecodeError):
        return error.reason
    if isinstance(error, FileNotFoundError):
        return "file not found"
    return f"{type(error).__name__}: {error}"


class VideoClipDataset(Dataset):
    """One clip per entry (training) or per (entry, view) (testing), as a dict; see the module docstring.

    Training items: ``{"video": (3, T, H, W), "label", "index", "skipped"}`` (the transform's float32 or uint8
    clip). Test items are numbered
    ``entry_index * num_views + view`` (``num_views = sampler.num_views``) and add ``"entry_index"`` and
    ``"view"`` (the sampler's ``clip_index``), so evaluation can average the views of a video; a 3-crop test
    transform makes ``"video"`` (num_crops, 3, T, H, W). ``"label"`` is the entry's label (an int, or a
    ``{"verb", "noun"}`` dict) of the entry actually read: when ``"skipped"`` is not empty, the item is a
    substitute for the item's own entry (evaluation should leave such items out).

    ``entry.segment`` (frame numbers), or else ``entry.window`` (seconds, taken at the video's frame rate), limits
    where clips are sampled; without either the sampler reads the whole video.
    ``decoder_threads`` is the decoder's thread count (1 suits many loader workers); ``folder_fps`` the frame
    rate of frame-image folders; ``class_names`` what the labels mean (a list, or {"verb": [...], "noun": [...]}).
    """

    def __init__(self, entries: Sequence[VideoEntry], sampler: ClipSampler, transform: Callable[[Tensor], Tensor],
                 training: bool, seed: int = 0, max_retries: int = 10, decoder_threads: int = 1,
                 folder_fps: float = DEFAULT_FOLDER_FPS, class_names: list[str] | dict[str, list[str]] | None = None):
        if not entries:
            raise ValueError("entries is empty: a dataset needs at least one VideoEntry")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.entries = list(entries)
        self.sampler = sampler
        self.transform = transform
        self.training = training
        self.seed = seed
        self.max_retries = max_retries
        self.decoder_threads = decoder_threads
        self.folder_fps = folder_fps
        self.class_names = class_names
        self.num_views = 1 if training else sampler.num_views
        self.epoch = 0
        self.skipped: dict[str, str] = {}  # path -> reason, for videos this process failed to read

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s clip positions, augmentations and substitutes from now on."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries) * self.num_views

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """Item ``key``, or item ``index`` as in epoch ``epoch`` for ``key = (epoch, index)``.

        Raises RuntimeError when the entry and ``max_retries`` substitutes all fail, naming each attempt. A test item
        whose video fails is not substituted: it comes back blank with ``"entry_index": -1`` (evaluation leaves it
        out and counts its video as missing).
        """
        epoch, index = (int(k) for k in key) if isinstance(key, tuple) else (self.epoch, int(key))
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        entry_index, view = divmod(index, self.num_views)
        skipped: list[tuple[str, str]] = []
        for attempt in range(self.max_retries + 1):
            entry = self.entries[entry_index]
            try:
                frames = self._read(entry, view, (self.seed, epoch, index, attempt))
            except Exception as error:  # any failure to read one video must not stop training
                reason = _reason(error)
                self._record(str(entry.path), reason, entry.source)
                skipped.append((str(entry.path), reason))
                if not self.training:
                    return self._missing(index, view, entry.label, skipped)
                if len(self.entries) == 1:
                    break
                entry_index = self._substitute(entry_index, (self.seed, epoch, index, attempt))
                continue
            video = seeded(self.transform, derived_seed(self.seed, epoch, index, attempt, _AUGMENTATION))(frames)
            label = dict(entry.label) if isinstance(entry.label, Mapping) else entry.label
            item: dict[str, Any] = {"video": video, "label": label, "index": index, "skipped": skipped}
            if not self.training:
                item.update(entry_index=entry_index, view=view)
            return item
        attempts = "; ".join(f"{path}: {reason}" for path, reason in skipped)
        raise RuntimeError(f"no readable video for item {index} (epoch {epoch}) after {len(skipped)} attempts "
                           f"(max_retries={self.max_retries}): {attempts}")

    def _missing(self, index: int, view: int, label: int | dict[str, int], skipped: list[tuple[str, str]]
                 ) -> dict[str, Any]:
        """A blank test item standing for a video that could not be read (shaped like the others, for batching)."""
        blank = torch.zeros((self.sampler.num_frames, 2, 2, 3), dtype=torch.uint8)
        return {"video": self.transform(blank), "label": dict(label) if isinstance(label, Mapping) else label,
                "index": index, "skipped": skipped, "entry_index": -1, "view": view}

    def _read(self, entry: VideoEntry, view: int, keys: tuple[int, ...]) -> Tensor:
        """The clip's frames, uint8 (T, H, W, 3); raises whatever decoding raises."""
        with open_video(entry.path, threads=self.decoder_threads, folder_fps=self.folder_fps) as video:
            segment = entry.segment
            if segment is None and entry.window is not None:
                fps = video.fps
                segment = Segment(round(entry.window[0] * fps), round(entry.window[1] * fps), fps)
            rng = np.random.default_rng(derived_seed(*keys, _CLIP_POSITION))
            return self.sampler(video, segment=segment, rng=rng, clip_index=view)

    def _substitute(self, failed: int, keys: tuple[int, ...]) -> int:
        """Another entry than ``failed``, drawn from ``keys`` = (seed, epoch, index, attempt)."""
        pick = int(np.random.default_rng(derived_seed(*keys, _SUBSTITUTE)).integers(len(self.entries) - 1))
        return pick + (pick >= failed)

    def _record(self, path: str, reason: str, source: str) -> None:
        if path not in self.skipped:
            where = f" (from {source})" if source else ""
            log.warning("skipping unreadable video %s%s: %s", path, where, reason)
            self.skipped[path] = reason
