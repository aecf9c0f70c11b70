"""The model zoo: ``weights`` (the released checkpoints, marking those present) and ``weights download NAME``."""

from __future__ import annotations

import argparse


def weights_table(home: str | None = None) -> str:
    """The zoo as a text table: name, file, model, input, the authors' accuracy, whether the file is present."""
    from motionformer.models.zoo import ReleasedWeights, weights_home

    folder = home or weights_home()
    rows = [("name", "file", "model", "input", "reported (top-1 / top-5)", "present")]
    for member in ReleasedWeights:
        entry = member.value
        spec = entry.spec
        frames = (f"{spec.num_frames} segments" if spec.sampling == "segments"
                  else f"{spec.num_frames}x{spec.sampling_rate}")
        shape = f"{frames}, {spec.crop_size}px, {spec.num_clips}x{spec.num_crops} views, {spec.channel_order.upper()}"
        rows.append((entry.name, entry.file, entry.model, shape, entry.describe_accuracy(),
                     "yes" if entry.path(folder).is_file() else "-"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join([f"weights folder: {folder} (set MOTIONFORMER_HOME to change it)", *lines])


def _list(args: argparse.Namespace) -> int:
    print(weights_table())
    return 0


def _download(args: argparse.Namespace) -> int:
    from motionformer.models.zoo import download_weights, recorded_sha256

    for name in args.names:
        path = download_weights(name)
        print(f"{path}  sha256 {recorded_sha256(name)}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    weights = commands.add_parser(
        "weights", help="the released checkpoints (model zoo): list them, download them",
        description="Without a subcommand: the authors' released checkpoints with their input and reported "
                    "accuracy, marking the files present in the weights folder ($MOTIONFORMER_HOME, default "
                    "~/.cache/motionformer). Their names work wherever a checkpoint is accepted "
                    "(predict --checkpoint k400_mformer_b, test checkpoint=k400_mformer_b, --finetune).")
    weights.set_defaults(run=_list)
    actions = weights.add_subparsers(dest="weights_command", metavar="WEIGHTS_COMMAND")
    download = actions.add_parser("download", help="download released checkpoints into the weights folder",
                                  description="Download each named checkpoint (a progress bar; written atomically) "
                                              "and print and record its SHA-256 in FILE.sha256 beside it.")
    download.add_argument("names", nargs="+", metavar="NAME", help="zoo names (see 'motionformer weights')")
    download.set_defaults(run=_download)
