"""Datasets: annotation files read into ``VideoEntry`` lists (``annotations``) and the clip dataset that
decodes, samples and transforms them (``video``)."""

from motionformer.data.datasets.annotations import FORMATS, Annotations, guess_format, read_annotations
from motionformer.data.datasets.entry import VideoEntry
from motionformer.data.datasets.video import SkipTracker, VideoClipDataset, summarize_skipped

__all__ = ["FORMATS", "Annotations", "SkipTracker", "VideoClipDataset", "VideoEntry", "guess_format",
           "read_annotations", "summarize_skipped"]
