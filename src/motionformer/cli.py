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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"motionformer {args.command}: error: {error}", file=sys.stderr)
        return 2
