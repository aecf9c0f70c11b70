"""Video data: decoding (``decoding``), clip sampling (``sampling``), video transforms (``transforms``) and the
synthetic motion dataset (``synthetic``)."""

from motionformer.data.decoding import (
    VideoDecodeError,
    VideoInfo,
    VideoReader,
    open_video,
    probe,
    read_clip,
    read_frames,
)

__all__ = ["VideoDecodeError", "VideoInfo", "VideoReader", "open_video", "probe", "read_clip", "read_frames"]
