"""The ``motionformer`` command. Thin: every subcommand calls the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _flops(args: argparse.Namespace) -> int:
    from motionformer.models.flops import flops_table

    print(flops_table(args.name, num_frames=args.frames, img_size=args.size))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from motionformer.models.weights import convert_checkpoint

    convert_checkpoint(args.input, args.output)
    return 0


def _data_synthetic(args: argparse.Namespace) -> int:
    from motionformer.data.synthetic import generate

    summary = generate(args.dir, num_videos=args.num_videos, size=args.size, frames=args.frames, seed=args.seed,
                       fps=args.fps, camera_pan=args.camera_pan, workers=args.workers)
    print(f"{summary.num_train} train + {summary.num_val} val videos in {summary.root} "
          f"({summary.num_written} written, {summary.seconds:.1f} s)")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from motionformer.data.check import run_check

    return run_check(args.annotations, args.root, args.format, json_output=args.json, workers=args.workers,
                     frames=args.frames)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motionformer", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    flops = commands.add_parser("flops", help="parameters and multiply-adds of a named model",
                                description="Parameters and multiply-adds (PyTorch's FLOP counter, counted as "
                                            "multiply-adds like the paper's GFLOPs) of one clip, for this "
                                            "library's computation and the straightforward one side by side.")
    flops.add_argument("name", help="a model name (see motionformer.list_models())")
    flops.add_argument("--frames", type=int, default=None, help="input frames (default: the model's)")
    flops.add_argument("--size", type=int, default=None, help="input height and width (default: the model's)")
    flops.set_defaults(run=_flops)

    convert = commands.add_parser("convert", help="convert a released .pyth checkpoint to this library's format",
                                  description="Read a checkpoint (the authors' released .pyth files or ours) "
                                              "and write OUT.safetensors with OUT.json metadata.")
    convert.add_argument("input", help="the checkpoint to read")
    convert.add_argument("output", help="the output path (the .safetensors and .json suffixes are added)")
    convert.set_defaults(run=_convert)

    data = commands.add_parser("data", help="video data tools").add_subparsers(dest="data_command", required=True,
                                                                             metavar="DATA_COMMAND")
    synthetic = data.add_parser("synthetic", help="write the synthetic motion dataset (H.264 mp4 + csv)",
                                description="Write DIR/videos/<class>/*.mp4, DIR/train.csv and DIR/val.csv "
                                            "(Kinetics-style 'path label' lists) and DIR/classes.txt: motions that "
                                            "no single frame reveals. Deterministic for a seed; a complete folder "
                                            "made with the same arguments is left as it is.")
    synthetic.add_argument("dir", help="output folder")
    synthetic.add_argument("--num-videos", type=int, default=1000, help="videos in all, a multiple of the classes")
    synthetic.add_argument("--size", type=int, default=64, help="frame height and width in pixels (even)")
    synthetic.add_argument("--frames", type=int, default=16, help="frames per video")
    synthetic.add_argument("--fps", type=int, default=30, help="frame rate written in the files")
    synthetic.add_argument("--seed", type=int, default=0, help="random seed")
    synthetic.add_argument("--camera-pan", action="store_true",
                           help="pan the camera: the class is the object's motion relative to the scene")
    synthetic.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    synthetic.set_defaults(run=_data_synthetic)

    check = data.add_parser("check", help="open every listed video and report the ones that fail",
                            description="Open every video of an annotation file, decode at least one frame of "
                                        "each listed segment, and report each failure with its reason. Exit "
                                        "status 1 if any failed, else 0; progress on stderr.")
    check.add_argument("annotations", help="annotation file (or the dataset folder for --format folder)")
    check.add_argument("--root", default=None, help="video root folder (default: the annotation file's folder)")
    check.add_argument("--format", default="auto", choices=("auto", "kinetics", "ssv2", "epic", "csv", "folder"),
                       help="annotation format (default: guessed from the file)")
    check.add_argument("--json", action="store_true",
                       help='print {"checked": N, "ok": N, "failed": [{"path": ..., "reason": ...}]} on stdout')
    check.add_argument("--workers", type=int, default=1, help="videos checked in parallel")
    check.add_argument("--frames", action="store_true", help="SSv2 / Epic-Kitchens frame folders instead of videos")
    check.set_defaults(run=_data_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"motionformer {args.command}: error: {error}", file=sys.stderr)
        return 2
