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
                       fps=args.fps, camera_pan=args.camera_pan, plain=args.plain, workers=args.workers)
    print(f"{summary.num_train} train + {summary.num_val} val videos in {summary.root} "
          f"({summary.num_written} written, {summary.seconds:.1f} s)")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from motionformer.data.check import run_check

    return run_check(args.annotations, args.root, args.format, json_output=args.json, workers=args.workers,
                     frames=args.frames)


def _load(args: argparse.Namespace):
    from motionformer.engine.config import load_config

    return load_config(args.config, args.overrides)


def _train(args: argparse.Namespace) -> int:
    from motionformer.engine.train import TrainingStopped, train

    try:
        train(_load(args), finetune=args.finetune)
    except TrainingStopped as stopped:
        print(f"motionformer train: {stopped}", file=sys.stderr)
        return 130
    return 0


def _test(args: argparse.Namespace) -> int:
    from motionformer.engine.evaluate import evaluate_checkpoint

    evaluate_checkpoint(_load(args))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from motionformer.engine.evaluate import predict

    answers = predict(args.videos, args.checkpoint, top_k=args.top_k, device=args.device)
    for video, answer in zip(args.videos, answers, strict=True):
        print(video)
        for head, ranked in answer.items():
            for rank, (name, score) in enumerate(ranked, start=1):
                label = f"{head} " if head else ""
                print(f"  {label}{rank}. {name}  {score:.3f}")
    return 0


def _visualize(args: argparse.Namespace) -> int:
    from motionformer.analysis import attention_maps, parse_point, save_attention_pictures

    x, y, frame = parse_point(args.point)
    result = attention_maps(args.video, args.checkpoint, (x, y), frame=frame, layer=args.layer, head=args.head,
                            device=args.device)
    for path in save_attention_pictures(result, args.out):
        print(path)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from motionformer.engine.demo import run_demo

    result = run_demo(args.dir, epochs=args.epochs, overrides=args.overrides)
    summary = result.summary
    print(f"\nmotionformer demo: {summary['epochs']} epochs, {summary['steps']} steps; run folder {result.output_dir}")
    if summary.get("test_top1") is not None:
        print(f"test top-1 {summary['test_top1']:.1f}% (top-5 {summary['test_top5']:.1f}%, chance "
              f"{result.chance:.0f}%) on {int(summary['test_videos'])} held-out videos")
    print(f"held-out video {result.video} (true class: {result.true_class}):")
    for rank, (name, score) in enumerate(result.predictions, start=1):
        print(f"  {rank}. {name}  {score:.3f}")
    print(f"done in {result.seconds / 60:.1f} min")
    return 0


def _bench_motion(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from motionformer.analysis import motion_benchmark as bench

    budget = bench.QUICK if args.quick else bench.FULL
    changes = {key: value for key, value in (("steps", args.steps), ("val_clips", args.val_clips),
                                             ("background_level", args.background_level)) if value is not None}
    budget = dataclasses.replace(budget, **changes)
    arms = bench.ARMS
    if args.groups:
        groups = [name.strip() for name in args.groups.split(",")]
        known = sorted({arm.group for arm in bench.ARMS})
        unknown = [name for name in groups if name not in known]
        if unknown:
            raise ValueError(f"--groups: unknown group(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        arms = tuple(arm for arm in bench.ARMS if arm.group in groups)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 2)
    bench.run_benchmark(args.out, budget=budget, seeds=seeds, workers=args.workers, device=args.device, arms=arms)
    print(Path(args.out, "results.md").read_text(), end="")
    print(f"\nwritten: {args.out}/results.md, results.json, *.png")
    return 0


def _lra_generate(args: argparse.Namespace) -> int:
    if args.task == "listops":
        from motionformer.lra.listops import ListOpsSettings, generate_listops
        from motionformer.lra.train import REDUCED_LISTOPS_LENGTHS

        settings = ListOpsSettings()
        if args.reduced:
            settings = ListOpsSettings(min_length=REDUCED_LISTOPS_LENGTHS[0], max_length=REDUCED_LISTOPS_LENGTHS[1])
        summary = generate_listops(args.dir, size=args.size or 100_000, seed=args.seed, settings=settings,
                                   workers=args.workers)
    else:
        from motionformer.lra.pathfinder import PathfinderSettings, generate_pathfinder

        summary = generate_pathfinder(args.dir, size=args.size or 200_000, seed=args.seed,
                                      settings=PathfinderSettings.preset(args.difficulty), workers=args.workers)
    print(f"{args.task}: {args.dir} ({'written' if summary.get('generated', True) else 'already complete'})")
    return 0


def _lra_train(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from motionformer.lra.train import load_task, preset_for, train_lra

    preset = preset_for(args.task, args.preset, steps=args.steps, seq_len=args.seq_len, batch_size=args.batch_size)
    if args.preset == "reduced":
        print(f"reduced preset (for a CPU, not the paper's budget): {preset.steps} steps of batch {preset.batch_size}, "
              f"sequences up to {preset.seq_len} tokens", file=sys.stderr)
    data = load_task(args.task, args.data, preset.seq_len)
    out = Path(args.out) if args.out else Path(f"lra-{args.task}-{args.attention}")
    result = train_lra(data, args.attention, preset, device=args.device, seed=args.seed, out=out)
    print(json.dumps({key: result[key] for key in ("task", "attention", "test_accuracy", "majority_class_accuracy",
                                                   "macs", "memory_bytes", "step_seconds")}, indent=1))
    print(f"written: {out / 'result.json'}")
    return 0


def _lra_cost(args: argparse.Namespace) -> int:
    import json

    import torch

    from motionformer.lra.listops import VOCABULARY
    from motionformer.lra.model import LRAModel
    from motionformer.lra.train import measure_cost

    costs = {}
    for attention in args.attention:
        model = LRAModel(vocab_size=len(VOCABULARY), num_classes=10, max_length=args.seq_len, attention=attention)
        macs, memory = measure_cost(model.to(args.device), args.seq_len, args.batch_size, len(VOCABULARY),
                                    torch.device(args.device))
        costs[attention] = {"attention": attention, "macs": macs, "memory_bytes": memory, "seq_len": args.seq_len,
                            "batch_size": args.batch_size, "device": args.device}
        print(f"{attention}: {macs / 1e9:.3f} GMACs per sequence, {memory / 2**20:.0f} MB per training step",
              file=sys.stderr)
    if args.json:
        from pathlib import Path

        from motionformer.models.weights import atomic_write

        atomic_write(Path(args.json), lambda temp: Path(temp).write_text(json.dumps(costs, indent=1) + "\n"))
    return 0


def _lra_report(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from motionformer.lra.train import table5

    results, costs = [], None
    for name in args.results:
        path = Path(name)
        files = sorted(path.rglob("result.json")) if path.is_dir() else [path]
        for file in files:
            try:
                results.append(json.loads(file.read_text()))
            except ValueError as error:
                raise ValueError(f"{file}: not a result file ({error})") from error
    if args.costs:
        costs = json.loads(Path(args.costs).read_text())
    if not results and not costs:
        raise ValueError(f"no result.json under {', '.join(args.results)}")
    print(table5(results, costs), end="")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    from motionformer.engine.config import to_yaml

    print(to_yaml(_load(args)), end="")
    return 0


def _config_list(args: argparse.Namespace) -> int:
    from motionformer.engine.config import list_presets

    print("\n".join(list_presets()))
    return 0


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a preset name (see 'motionformer config list') or a YAML file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, e.g. train.epochs=3 data.root=/data/k400 'data.scale_range=[256, 320]'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motionformer", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="generate synthetic videos, train a small model, test it, predict",
                               description="The whole job on the synthetic motion data: generate it (if absent), "
                                           "train the synthetic-tiny preset, test it with several views, and "
                                           "predict one held-out video. A few minutes on a laptop CPU.")
    demo.add_argument("--dir", default="motionformer-demo", help="folder for the data and the run")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default: the preset's)")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more config overrides")
    demo.set_defaults(run=_demo)

    train = commands.add_parser("train", help="train a model from a preset or YAML config",
                                description="Train (or resume: the same command continues from output_dir's last "
                                            "checkpoint). Under torchrun, every process runs this.")
    _add_config_arguments(train)
    train.add_argument("--finetune", default=None, metavar="CKPT",
                       help="start from these weights (a run's .pt, a .safetensors, a released .pyth); the "
                            "classifier is new where the classes differ")
    train.set_defaults(run=_train)

    test = commands.add_parser("test", help="multi-view test of a checkpoint",
                               description="Multi-view test (eval.num_clips x eval.num_crops views, softmax scores "
                                           "averaged) of checkpoint=PATH on data.test (else data.val); writes "
                                           "test_metrics.json, predictions.csv and confusion.png to output_dir.")
    _add_config_arguments(test)
    test.set_defaults(run=_test)

    predict = commands.add_parser("predict", help="class names and scores for video files",
                                  description="Top-k classes of each video, from a run's checkpoint, an exported "
                                              ".safetensors or a released .pyth file, with its test views.")
    predict.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    predict.add_argument("--checkpoint", required=True, help="weights: a run's .pt, a .safetensors, a .pyth")
    predict.add_argument("--top-k", type=int, default=5, help="classes to show")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    predict.set_defaults(run=_predict)

    visualize = commands.add_parser(
        "visualize", help="trajectory attention of one query point over every frame (the paper's Fig. 4)",
        description="Draw the attention that the token at one point pays to every frame (eq. 4: a softmax over "
                    "each frame's patches) in one layer, over the checkpoint's centred test view of VIDEO. Writes "
                    "DIR/VIDEO_attention.png (a grid of all frames), .gif (animated) and .html (one page with "
                    "both, the query, layer, head and the top-5 prediction) and prints their paths.")
    visualize.add_argument("video", metavar="VIDEO", help="a video file")
    visualize.add_argument("--checkpoint", required=True, help="weights: a run's .pt, a .safetensors, a .pyth")
    visualize.add_argument("--point", required=True, metavar="X,Y[,T]",
                           help="the query: X, Y in pixels of the model's input crop (0..crop_size-1, after the "
                                "short side is resized to crop_size and the centre crop taken), T an input frame "
                                "of the clip (default: the middle one)")
    visualize.add_argument("--layer", type=int, default=-1, help="block whose attention to draw (default -1: the last)")
    visualize.add_argument("--head", type=int, default=None, help="attention head to draw (default: the mean of all)")
    visualize.add_argument("--out", default=".", metavar="DIR", help="output folder (default: the current one)")
    visualize.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    visualize.set_defaults(run=_visualize)

    config = commands.add_parser("config", help="presets and resolved configs").add_subparsers(
        dest="config_command", required=True, metavar="CONFIG_COMMAND")
    show = config.add_parser("show", help="print the resolved config of a preset with overrides",
                             description="Print the config a run would use, as YAML.")
    _add_config_arguments(show)
    show.set_defaults(run=_config_show)
    listing = config.add_parser("list", help="the packaged presets", description="Print the packaged preset names.")
    listing.set_defaults(run=_config_list)

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

    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True,
                                                                         metavar="BENCH_COMMAND")
    motion = bench.add_parser(
        "motion", help="the paper's attention, Orthoformer and stride ablations in miniature on synthetic motion",
        description="Train small Motionformers from scratch under one fixed budget on synthetic motion clips "
                    "(joint / divided / trajectory attention, Avg_T, Norm_ST, a single frame, camera pan, temporal "
                    "stride, Orthoformer prototypes and selection, Nystrom, Performer) and write a markdown table, "
                    "JSON and PNG charts. Finished jobs are kept in OUT/runs, so a rerun resumes. The full run "
                    "takes about an hour on 2 CPU cores, --quick under 10 minutes.")
    motion.add_argument("--quick", action="store_true", help="200 steps, 200 validation clips, 1 seed")
    motion.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 2, or 1 with --quick)")
    motion.add_argument("--steps", type=int, default=None, help="training steps per arm (default 800, quick 200)")
    motion.add_argument("--background-level", type=float, default=None,
                        help="brightness of the dimmed textured background behind the white object, in [0, 1) "
                             "(default 0.3; 0 is plain black, which the camera pan group cannot use)")
    motion.add_argument("--val-clips", type=int, default=None, help="validation clips (default 500, quick 200)")
    motion.add_argument("--groups", default=None,
                        help="comma-separated subset of: attention, camera pan, stride, orthoformer")
    motion.add_argument("--workers", type=int, default=2, help="jobs trained at once, one thread each")
    motion.add_argument("--device", default="cpu", help="cpu or cuda")
    motion.add_argument("--out", default="motionformer-bench-motion", help="output folder")
    motion.set_defaults(run=_bench_motion)

    lra = commands.add_parser("lra", help="Long Range Arena (ListOps, Pathfinder) for the attention approximations"
                              ).add_subparsers(dest="lra_command", required=True, metavar="LRA_COMMAND")
    generate = lra.add_parser("generate", help="write ListOps (TSV) or Pathfinder-32 (PNG) data",
                              description="ListOps: DIR/basic_{train,val,test}.tsv (96/2/2 %%). Pathfinder-32: "
                                          "DIR/images/**.png and DIR/{train,val,test}.txt (80/10/10 %%). "
                                          "Deterministic for a seed; a complete folder is left as it is.")
    generate.add_argument("task", choices=("listops", "pathfinder"))
    generate.add_argument("dir", help="output folder")
    generate.add_argument("--size", type=int, default=None, help="examples in all (default 100,000 / 200,000)")
    generate.add_argument("--seed", type=int, default=0, help="random seed")
    generate.add_argument("--workers", type=int, default=None, help="processes (default: up to the CPU count)")
    generate.add_argument("--reduced", action="store_true",
                          help="ListOps: expressions of 50 < length < 250 tokens (the reduced CPU preset's data)")
    generate.add_argument("--difficulty", default="hard", choices=("easy", "intermediate", "hard"),
                          help="Pathfinder contour length 6, 9 or 14 (default hard)")
    generate.set_defaults(run=_lra_generate)
    lra_train = lra.add_parser("train", help="train the 2-layer LRA Transformer with one attention",
                               description="Train, then test once on the test split; print and write result.json "
                                           "(accuracy, multiply-adds, memory, time per step).")
    lra_train.add_argument("task", choices=("listops", "pathfinder"))
    lra_train.add_argument("--attention", required=True,
                           help="exact, exact-unfused, orthoformer-R, nystrom-R or performer-M (e.g. orthoformer-64)")
    lra_train.add_argument("--data", required=True, help="the folder 'motionformer lra generate' wrote")
    lra_train.add_argument("--preset", default="reduced", choices=("reduced", "full"),
                           help="reduced: minutes on a CPU (default); full: the GPU budget")
    lra_train.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    lra_train.add_argument("--seq-len", type=int, default=None,
                           help="longest sequence (ListOps: longer expressions are skipped; Pathfinder: 1024)")
    lra_train.add_argument("--batch-size", type=int, default=None, help="batch size (default: the preset's)")
    lra_train.add_argument("--seed", type=int, default=0)
    lra_train.add_argument("--device", default="cpu")
    lra_train.add_argument("--out", default=None, help="output folder (default lra-TASK-ATTENTION)")
    lra_train.set_defaults(run=_lra_train)
    cost = lra.add_parser("cost", help="multiply-adds and training memory at the ListOps setting",
                          description="For each attention: multiply-adds of one sequence and the memory of one "
                                      "training step of the LRA Transformer (default: 2000 tokens, batch 32).")
    cost.add_argument("--attention", nargs="+", default=["exact", "exact-unfused", "orthoformer-64",
                                                         "orthoformer-128", "nystrom-128", "performer-256"])
    cost.add_argument("--seq-len", type=int, default=2000)
    cost.add_argument("--batch-size", type=int, default=32)
    cost.add_argument("--device", default="cpu")
    cost.add_argument("--json", default=None, help="write the numbers to this file")
    cost.set_defaults(run=_lra_cost)
    report = lra.add_parser("report", help="the paper's Table 5 layout from result.json files",
                            description="Print a markdown table: our accuracy next to the paper's, and the costs.")
    report.add_argument("results", nargs="+", help="result.json files or folders holding them")
    report.add_argument("--costs", default=None, help="the JSON 'motionformer lra cost --json' wrote")
    report.set_defaults(run=_lra_report)

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
    synthetic.add_argument("--plain", action="store_true",
                           help="white objects on a black background: an easier variant (the demo's)")
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
    except RuntimeError as error:
        from motionformer.engine import RunError

        if not isinstance(error, RunError):
            raise
        print(f"motionformer {args.command}: error: {error}", file=sys.stderr)
        return 1
