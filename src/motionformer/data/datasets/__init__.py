"""Datasets: annotation files read into ``VideoEntry`` lists (``annotations``) and the clip dataset that
decodes, samples and transforms them (``video``)."""

from motionformer.data.datasets.annotations import FORMATS, Annotations, guess_format, read_annotations
from motionformer.data.datasets.entry import VideoEntry
from motionformer.data.datasets.video import VideoClipDataset

__all__ = ["FORMATS", "Annotations", "VideoClipDataset", "VideoEntry", "guess_format", "read_annotations"]
