"""The ``bench`` and ``lra`` command groups, which the ``motionformer`` command registers when this package is
installed."""

from __future__ import annotations

import argparse
import sys


def _bench_motion(args: argparse.Namespace) -> int:
    from pathlib import Path

    from motionformer_experiments import motion

    budget = motion.make_budget(args.quick, steps=args.steps, val_clips=args.val_clips,
                                background_level=args.background_level)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 2)
    motion.run_benchmark(args.out, budget=budget, seeds=seeds, workers=args.workers, device=args.device,
                         arms=motion.select_arms(args.groups))
    print(Path(args.out, "results.md").read_text(), end="")
    print(f"\nwritten: {args.out}/results.md, results.json, *.png")
    return 0


def _lra_generate(args: argparse.Namespace) -> int:
    from motionformer_experiments.lra.data import generate_task

    summary = generate_task(args.task, args.dir, size=args.size, seed=args.seed, workers=args.workers,
                            reduced=args.reduced, difficulty=args.difficulty)
    print(f"{args.task}: {args.dir} ({'written' if summary.get('generated', True) else 'already complete'})")
    return 0


def _lra_train(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from motionformer_experiments.lra import load_task, preset_for, train_lra

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
    from pathlib import Path

    from motionformer.io import atomic_write
    from motionformer_experiments.lra.report import measure_costs

    costs = measure_costs(args.attention, seq_len=args.seq_len, batch_size=args.batch_size, device=args.device)
    if args.json:
        atomic_write(Path(args.json), lambda temp: Path(temp).write_text(json.dumps(costs, indent=1) + "\n"))
    return 0


def _lra_report(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from motionformer_experiments.lra.report import read_results, table5

    results = read_results(args.results)
    costs = json.loads(Path(args.costs).read_text()) if args.costs else None
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
