"""Commands about models and configs: ``config show``, ``config list``, ``flops``, ``convert``."""

from __future__ import annotations

import argparse

from motionformer.cli.common import add_config_arguments, load


def _flops(args: argparse.Namespace) -> int:
    from motionformer.engine.config import list_presets
    from motionformer.models.flops import flops_table

    name, options, frames, size = args.name, {}, args.frames, args.size
    if name in list_presets():
        from motionformer.engine.config import load_config

        config = load_config(name, [])
        name, options = config.model.name, dict(config.model.options)
        frames, size = frames or config.data.num_frames, size or config.data.crop_size
    print(flops_table(name, num_frames=frames, img_size=size, **options))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from motionformer.models.weights import convert_checkpoint

    convert_checkpoint(args.input, args.output)
    return 0


def _config_show(args: argparse.Namespace) -> int:
    from motionformer.engine.config import to_yaml

    print(to_yaml(load(args)), end="")
    return 0


def _config_list(args: argparse.Namespace) -> int:
    from motionformer.engine.config import describe_preset, list_presets

    names = list_presets()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {describe_preset(name)}".rstrip())
    return 0


def _add_config(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="presets and resolved configs").add_subparsers(
        dest="config_command", required=True, metavar="CONFIG_COMMAND")
    show = config.add_parser("show", help="print the resolved config of a preset with overrides",
                             description="Print the config a run would use, as YAML.")
    add_config_arguments(show)
    show.set_defaults(run=_config_show)
    listing = config.add_parser("list", help="the packaged presets",
                                description="Print the packaged presets, one a line, with what each trains.")
    listing.set_defaults(run=_config_list)


def add_commands(commands: argparse._SubParsersAction) -> None:
    _add_config(commands)
    flops = commands.add_parser("flops", help="parameters and multiply-adds of a named model or preset",
                                description="Parameters and multiply-adds (PyTorch's FLOP counter, counted as "
                                            "multiply-adds like the paper's GFLOPs) of one clip, for this "
                                            "library's computation and the straightforward one side by side.")
    flops.add_argument("name", help="a model name (see motionformer.list_models()) or a preset name "
                                    "(see 'motionformer config list')")
    flops.add_argument("--frames", type=int, default=None, help="input frames (default: the model's)")
    flops.add_argument("--size", type=int, default=None, help="input height and width (default: the model's)")
    flops.set_defaults(run=_flops)

    convert = commands.add_parser("convert", help="convert a released .pyth checkpoint to this library's format",
                                  description="Read a checkpoint (the authors' released .pyth files or ours) "
                                              "and write OUT.safetensors with OUT.json metadata.")
    convert.add_argument("input", help="the checkpoint to read")
    convert.add_argument("output", help="the output path (the .safetensors and .json suffixes are added)")
    convert.set_defaults(run=_convert)
