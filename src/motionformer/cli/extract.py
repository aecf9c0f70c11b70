"""``motionformer extract``: features of many videos into sharded files with an index."""

from __future__ import annotations

import argparse
import logging

from motionformer.cli.common import add_device_argument, positive_int, positive_seconds

log = logging.getLogger(__name__)


def _extract(args: argparse.Namespace) -> int:
    from motionformer.extraction import ExtractOptions, extract_dataset, video_items

    if not args.videos and args.annotations is None:
        raise ValueError("nothing to extract: give VIDEO paths or --annotations FILE")
    options = ExtractOptions(feature=args.feature, block=args.block, window=args.window, stride=args.stride,
                             keep_views=args.keep_views, num_clips=args.num_clips, num_crops=args.num_crops,
                             precision=args.precision)
    items = video_items(args.videos, args.annotations, args.root, args.format)
    summary = extract_dataset(items, args.checkpoint, args.out, options=options, device=args.device,
                              batch_size=args.batch_size, workers=args.workers, shard_mb=args.shard_mb,
                              format=args.output_format, progress=not args.no_progress)
    rate = summary.videos / summary.seconds if summary.seconds > 0 else 0.0
    log.info("%d videos extracted (%.2f videos/s), %d failed (see failures.csv), %d done before; %d rows in %d "
             "shards in %s", summary.videos, rate, summary.failed, summary.skipped, summary.rows, summary.shards,
             summary.folder)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    extract = commands.add_parser(
        "extract", help="features of videos (pre-logits, class token or a block's tokens) into sharded files",
        description="Features of video files, frame folders or an annotation file's entries from any checkpoint: "
                    "per video the checkpoint's test views (averaged, or each with --keep-views) or sliding "
                    "windows (--window, --stride). Writes OUT/features-NNNNN.safetensors (tensor 'features') or "
                    ".npy shards, OUT/index.csv (video, part, view, start, end, shard, row), OUT/failures.csv "
                    "(videos that could not be read, with the reason) and OUT/extract.json (the settings). Run "
                    "again with the same OUT to resume: videos already done are skipped.")
    extract.add_argument("videos", nargs="*", metavar="VIDEO", help="video files or folders of frame images")
    extract.add_argument("--checkpoint", required=True,
                         help="a run's .pt, a .safetensors, a released .pyth, or a model-zoo name (k400_mformer_b)")
    extract.add_argument("--out", required=True, metavar="DIR", help="output folder (resumed when it holds a run)")
    extract.add_argument("--annotations", default=None, metavar="FILE",
                         help="also extract the entries of an annotation file (Epic-Kitchens: each segment)")
    extract.add_argument("--root", default=None, help="folder the annotation's paths are under (default: its own)")
    extract.add_argument("--format", default="auto", help="annotation format (default: guessed)")
    extract.add_argument("--feature", choices=("pre_logits", "cls", "tokens"), default="pre_logits",
                         help="pre_logits (default: the vector the classifier reads), cls (the class token of "
                              "--block) or tokens (every token of --block)")
    extract.add_argument("--block", type=int, default=-1,
                         help="block for cls and tokens, from 0 (negative: from the end; -1, the default, gives the "
                              "normalised output of the last block)")
    extract.add_argument("--window", type=positive_seconds, default=None, metavar="SECONDS",
                         help="sliding windows of this length instead of the checkpoint's test views")
    extract.add_argument("--stride", type=positive_seconds, default=None, metavar="SECONDS",
                         help="seconds between window starts (default: the window's length)")
    extract.add_argument("--keep-views", action="store_true", help="one row per test view instead of their average")
    extract.add_argument("--num-clips", type=positive_int, default=None, help="test clips (default: the weights')")
    extract.add_argument("--num-crops", type=int, choices=(1, 3), default=None,
                         help="crops per clip (default: the weights' test crops; 1 for windows)")
    extract.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                         help="auto (default: bf16 where the CPU has AVX512-BF16 or AMX, or the GPU bf16; else fp32), "
                              "fp32 or bf16; features are stored as float32")
    extract.add_argument("--batch-size", type=positive_int, default=8, help="clips per forward pass (default 8)")
    extract.add_argument("--workers", type=int, default=2, help="decoding processes (default 2; 0: in this one)")
    extract.add_argument("--shard-mb", type=float, default=256.0, help="features per shard file in MiB (default 256)")
    extract.add_argument("--output-format", choices=("safetensors", "npy"), default="safetensors",
                         help="shard files (default safetensors)")
    extract.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_argument(extract)
    extract.set_defaults(run=_extract)
