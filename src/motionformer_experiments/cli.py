"""The ``bench`` and ``lra`` command groups, which the ``motionformer`` command registers when this package is
installed."""

from __future__ import annotations

import argparse
import sys


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

        from motionformer.io import atomic_write

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


def _add_bench(commands: argparse._SubParsersAction) -> None:
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



def _add_lra_generate(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    lra = commands.add_parser("lra", help="Long Range Arena (ListOps, Pathfinder) for the attention approximations"
                              ).add_subparsers(dest="lra_command", required=True, metavar="LRA_COMMAND")
    generate = lra.add_parser("generate", help="write ListOps (TSV) or Pathfinder-32 (PNG) data",
                              description="ListOps: DIR/basic_{train,val,test}.tsv (96/2/2 %). Pathfinder-32: "
                                          "DIR/images/**.png and DIR/{train,val,test}.txt (80/10/10 %). "
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
    return lra


def _add_lra_runs(lra: argparse._SubParsersAction) -> None:
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



def add_commands(commands: argparse._SubParsersAction) -> None:
    _add_bench(commands)
    _add_lra_runs(_add_lra_generate(commands))
