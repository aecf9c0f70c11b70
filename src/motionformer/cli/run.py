"""Commands that run a model: ``demo``, ``train``, ``test``, ``predict``, ``visualize``."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from motionformer.cli.common import add_config_arguments, add_device_argument, load, positive_int, positive_seconds


def _train(args: argparse.Namespace) -> int:
    from motionformer.engine.demo import PRESET, prepare_preset_data
    from motionformer.engine.train import train

    config = load(args)
    if args.config == PRESET:
        prepare_preset_data(config, args.overrides)
    train(config, finetune=args.finetune)
    return 0


def _test(args: argparse.Namespace) -> int:
    from motionformer.engine.evaluate import evaluate_checkpoint

    evaluate_checkpoint(load(args))
    return 0


CHECKPOINT_HELP = ("weights: a run's .pt, a .safetensors, a released .pyth, or a model-zoo name such as k400_mformer_b "
                   "(see 'motionformer weights')")


def _timeline(args: argparse.Namespace) -> int:
    """Top classes of each sliding window: CSV rows on stdout, or one JSON object a window with --json."""
    from motionformer.inference import predict_timeline

    windows = predict_timeline(args.videos, args.checkpoint, window=args.window, stride=args.stride,
                               top_k=args.top_k, device=args.device, precision=args.precision)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    if not args.json:
        writer.writerow(["video", "start", "end", "head", "rank", "class", "score"])
    for window in windows:
        if args.json:
            print(json.dumps(window.to_json()), flush=True)
            continue
        for head, ranked in window.top.items():
            writer.writerows([window.video, f"{window.start:g}", f"{window.end:g}", head, rank, name, f"{score:.4f}"]
                             for rank, (name, score) in enumerate(ranked, start=1))
        sys.stdout.flush()
    return 0


def _predict(args: argparse.Namespace) -> int:
    from motionformer.inference import predict

    if args.window is not None:
        return _timeline(args)
    if args.stride is not None:
        raise ValueError("--stride needs --window (the length of each window in seconds)")
    answers = predict(args.videos, args.checkpoint, top_k=args.top_k, device=args.device, precision=args.precision)
    for answer in answers:
        if args.json:
            print(json.dumps(answer.to_json()), flush=True)
            continue
        print(answer.video)
        for head, ranked in answer.top.items():
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
    from motionformer.engine.demo import DemoData, run_demo

    data = DemoData() if args.num_videos is None else DemoData(num_videos=args.num_videos)
    result = run_demo(args.dir, epochs=args.epochs, overrides=args.overrides, data=data)
    print(f"\n{result.report()}")
    return 0


def _add_demo(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="generate synthetic videos, train a small model, test it, predict",
                               description="The whole job on the synthetic motion data: generate it (if absent), "
                                           "train the synthetic-tiny preset, test it with several views, and "
                                           "predict one held-out video. A few minutes on a laptop CPU.")
    demo.add_argument("--dir", default="motionformer-demo", help="folder for the data and the run")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default: the preset's)")
    demo.add_argument("--num-videos", type=positive_int, default=None,
                      help="synthetic videos to generate, a multiple of 10 (default: DemoData's, 2000)")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more config overrides")
    demo.set_defaults(run=_demo)


def _add_train_test(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a model from a preset or YAML config",
                                description="Train (or resume: the same command continues from output_dir's last "
                                            "checkpoint). Under torchrun, every process runs this.")
    add_config_arguments(train)
    train.add_argument("--finetune", default=None, metavar="CKPT",
                       help="start from these weights (a run's .pt, a .safetensors, a released .pyth, a model-zoo "
                            "name); the classifier is new where the classes differ, the channel order is the "
                            "weights' unless data.channel_order says")
    train.set_defaults(run=_train)

    test = commands.add_parser("test", help="multi-view test of a checkpoint",
                               description="Multi-view test (eval.num_clips x eval.num_crops views, softmax scores "
                                           "averaged) of checkpoint=PATH (or a model-zoo name) on data.test (else "
                                           "data.val), with the sampling and channel order of its weights; writes "
                                           "test_metrics.json (video and clip level), predictions.csv and "
                                           "confusion.png to output_dir.")
    add_config_arguments(test)
    test.set_defaults(run=_test)


def _add_predict_visualize(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser("predict", help="class names and scores for videos",
                                  description="Top-k classes of each video file or frame folder, as the checkpoint "
                                              "expects its input (its sampling, test views and channel order): the "
                                              "softmax of each head averaged over all views.")
    predict.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of frame images")
    predict.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    predict.add_argument("--top-k", type=positive_int, default=5, help="classes to show")
    predict.add_argument("--json", action="store_true",
                         help='one JSON object per video, line by line: {"video": PATH, "scores": {HEAD: [p for '
                              'every class]}, "top": {HEAD: [[name, p], ...]}} (HEAD "" for one head, verb and '
                              'noun for Epic-Kitchens)')
    add_device_argument(predict)
    predict.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                         help="auto (default: bf16 where the CPU has AVX512-BF16 or AMX, or the GPU bf16; else fp32), "
                              "fp32 or bf16")
    predict.add_argument("--window", type=positive_seconds, default=None, metavar="SECONDS",
                         help="a timeline instead of one prediction a video: the top classes of each window of this "
                              "length (1 centre crop), as CSV rows (video,start,end,head,rank,class,score) or, with "
                              "--json, one object a window; decoded window by window, for videos of any length")
    predict.add_argument("--stride", type=positive_seconds, default=None, metavar="SECONDS",
                         help="seconds between window starts (default: the window's length)")
    predict.set_defaults(run=_predict)

    visualize = commands.add_parser(
        "visualize", help="trajectory attention of one query point over every frame (the paper's Fig. 4)",
        description="Draw the attention that the token at one point pays to every frame (eq. 4: a softmax over "
                    "each frame's patches) in one layer, over the checkpoint's centred test view of VIDEO. Writes "
                    "DIR/VIDEO_attention.png (a grid of all frames), .gif (animated) and .html (one page with "
                    "both, the query, layer, head and the top-5 prediction) and prints their paths.")
    visualize.add_argument("video", metavar="VIDEO", help="a video file or a folder of frame images")
    visualize.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    visualize.add_argument("--point", required=True, metavar="X,Y[,T]",
                           help="the query: X, Y in pixels of the model's input crop (0..crop_size-1, after the "
                                "short side is resized to crop_size and the centre crop taken), T an input frame "
                                "of the clip (default: the middle one)")
    visualize.add_argument("--layer", type=int, default=-1, help="block whose attention to draw (default -1: the last)")
    visualize.add_argument("--head", type=int, default=None, help="attention head to draw (default: the mean of all)")
    visualize.add_argument("--out", default=".", metavar="DIR", help="output folder (default: the current one)")
    add_device_argument(visualize)
    visualize.set_defaults(run=_visualize)


def add_commands(commands: argparse._SubParsersAction) -> None:
    _add_demo(commands)
    _add_train_test(commands)
    _add_predict_visualize(commands)
