"""Arguments shared by several command groups."""

from __future__ import annotations

import argparse

from motionformer.engine.config import Config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a preset name (see 'motionformer config list') or a YAML file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, e.g. train.epochs=3 data.root=/data/k400 'data.scale_range=[256, 320]'")


def load(args: argparse.Namespace) -> Config:
    from motionformer.engine.config import load_config

    return load_config(args.config, args.overrides)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number (1 or more)")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of seconds")
    return value
