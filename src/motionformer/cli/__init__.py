"""The ``motionformer`` command: one small parser module per command group, each calling the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from motionformer import __version__
from motionformer.cli import data, models, run

DESCRIPTION = ("motionformer: trajectory attention for video transformers (Motionformer, NeurIPS 2021). "
               "Train, test and run video models; 'motionformer demo' shows the whole job in minutes on a CPU.")


def _add_experiments(commands: argparse._SubParsersAction) -> None:
    """The paper's experiments (``bench``, ``lra``) when their package is installed beside the library."""
    try:
        from motionformer_experiments.cli import add_commands
    except ImportError:
        return
    add_commands(commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motionformer", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"motionformer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_commands(commands)
    models.add_commands(commands)
    data.add_commands(commands)
    _add_experiments(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"motionformer {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from motionformer.engine import RunError

        if not isinstance(error, RunError):
            raise
        print(f"motionformer {args.command}: error: {error}", file=sys.stderr)
        return 1
