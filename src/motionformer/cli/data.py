"""The ``data`` command group: ``data synthetic`` and ``data check``."""

from __future__ import annotations

import argparse


def _data_synthetic(args: argparse.Namespace) -> int:
    from motionformer.data.synthetic import generate

    summary = generate(args.dir, num_videos=args.num_videos, size=args.size, frames=args.frames, seed=args.seed,
                       fps=args.fps, camera_pan=args.camera_pan, plain=args.plain, workers=args.workers)
    print(f"{summary.num_train} train + {summary.num_val} val videos in {summary.root} "
          f"({summary.num_written} written, {summary.seconds:.1f} s)")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from motionformer.data.check import run_check

    return run_check(args.annotations, args.root, args.format, json_output=args.json, workers=args.workers,
                     frames=args.frames)


def _add_synthetic(data: argparse._SubParsersAction) -> None:
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
    synthetic.add_argument("--plain", action="store_true",
                           help="white objects on a black background: an easier variant (the demo's)")
    synthetic.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")
    synthetic.set_defaults(run=_data_synthetic)


def _add_check(data: argparse._SubParsersAction) -> None:
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


def add_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="video data tools").add_subparsers(dest="data_command", required=True,
                                                                             metavar="DATA_COMMAND")
    _add_synthetic(data)
    _add_check(data)
