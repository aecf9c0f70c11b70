"""The ``motionformer`` command: one small parser module per command group, each calling the library."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
from collections.abc import Sequence

from motionformer import __version__
from motionformer.cli import data, export, extract, models, run, weights

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
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_commands(commands)
    models.add_commands(commands)
    data.add_commands(commands)
    weights.add_commands(commands)
    export.add_commands(commands)
    extract.add_commands(commands)
    _add_experiments(commands)
    return parser


def _sigterm_interrupts() -> None:
    """SIGTERM (what SLURM, torchrun and ``timeout`` send) stops a command like Ctrl-C; ``train`` installs its own
    handler, which writes a checkpoint first."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _os_error_message(error: OSError) -> str:
    """One line naming the file and what would help, for the errors a user's files and disks cause."""
    name = error.filename if error.filename is not None else "a file"
    if error.errno == errno.ENOSPC:
        return f"no space left on the device while writing {name}: free some space or write elsewhere"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write or read {name}: {error.strerror} (check the folder's permissions, or choose another)"
    if error.errno == errno.EISDIR:
        return f"{name} is a folder; a file is expected here"
    if error.errno == errno.ENOENT and error.filename is not None:
        return f"not found: {name}"
    return str(error)


def _report(command: str, error: BaseException) -> int:
    """Print one line for an error that the user's input or environment caused; return the exit status."""
    from motionformer.engine import RunError, TrainingStopped

    status, message = 2, str(error)
    if isinstance(error, TrainingStopped):
        status = 130
    elif isinstance(error, KeyboardInterrupt):
        status, message = 130, "interrupted"
    elif isinstance(error, RunError):
        status = 1
    elif isinstance(error, OSError) and error.errno is not None:  # raised by the system, not with our message
        message = _os_error_message(error)
    print(f"motionformer {command}: {'' if status == 130 else 'error: '}{message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    _sigterm_interrupts()
    from motionformer.engine import RunError, TrainingStopped

    try:
        return args.run(args)
    except (ValueError, OSError, RunError, TrainingStopped, KeyboardInterrupt) as error:
        if args.debug:
            raise
        return _report(args.command, error)
