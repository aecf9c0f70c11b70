"""The kill / resume matrix: a tiny training run stopped by a signal at a random step, then run again.

For every signal (SIGINT, SIGTERM, SIGKILL), target (the launched process alone, or its whole process group, as
SLURM, torchrun and ``timeout`` signal), number of data-loading workers and number of processes (1, or 2 under
torchrun): start ``motionformer train synthetic-tiny`` on generated data, send the signal once a checkpoint of step
2 exists, record the exit status, whether a traceback was printed and the step of the checkpoint left, then run the
same command again and record whether it finished all its steps. Prints a markdown table and writes JSON.

    python benchmarks/faults.py --out faults.json [--workers 0 1 2] [--ranks 1 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from motionformer.data.synthetic import generate
from motionformer.engine.checkpoint import load_checkpoint

TINY = "{img_size: 32, patch_size: 8, num_frames: 4, embed_dim: 32, depth: 2, num_heads: 2}"
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
STEPS = 15  # 3 epochs of 5 steps (20 clips, batch 4)


def command(data: Path, output: Path, workers: int, ranks: int) -> list[str]:
    launcher = [sys.executable, "-m", "motionformer"] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", "-m",
        "motionformer"]
    batch = 4 // ranks
    return [*launcher, "train", "synthetic-tiny", f"data.root={data}", f"output_dir={output}",
            f"model.options={TINY}", "data.sampling_rate=2", "data.scale_range=[32, 36]", f"data.batch_size={batch}",
            "train.effective_batch=4", f"data.workers={workers}", "train.epochs=3", "train.warmup_epochs=0",
            "train.checkpoint_every=1", "train.eval_every=0", "train.test_at_end=false"]


def wait_for_step(process: subprocess.Popen, last: Path, step: int, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists():
            try:
                if load_checkpoint(last)["step"] >= step:
                    return True
            except ValueError:
                pass
        time.sleep(0.05)
    return False


def one_case(data: Path, folder: Path, name: str, group: bool, workers: int, ranks: int) -> dict:
    output = folder / f"{name}-{'group' if group else 'main'}-w{workers}-r{ranks}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = command(data, output, workers, ranks)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    reached = wait_for_step(process, output / "checkpoints" / "last.pt", 2)
    if group:
        os.killpg(process.pid, SIGNALS[name])
    else:
        process.send_signal(SIGNALS[name])
    try:
        _, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
    left = load_checkpoint(output / "checkpoints" / "last.pt")["step"] if (output / "checkpoints" /
                                                                           "last.pt").exists() else None
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    final = load_checkpoint(output / "checkpoints" / "last.pt")["step"] if again.returncode == 0 else None
    return {"signal": name, "target": "process group" if group else "launched process", "workers": workers,
            "ranks": ranks, "reached_step_2": reached, "exit": process.returncode,
            "traceback": "Traceback" in stderr, "checkpoint_step": left, "rerun_exit": again.returncode,
            "rerun_steps": final, "resumed": "resuming from" in again.stderr, "finished": final == STEPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="faults.json")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as temp:
        data = Path(temp) / "data"
        generate(data, num_videos=30, size=32, frames=8, seed=0, workers=1)
        for (name, group, workers, ranks) in itertools.product(SIGNALS, (False, True), args.workers, args.ranks):
            results.append(one_case(data, Path(temp), name, group, workers, ranks))
            row = results[-1]
            print(f"{name} {row['target']} workers={workers} ranks={ranks}: exit {row['exit']}, "
                  f"checkpoint step {row['checkpoint_step']}, rerun {row['rerun_exit']} -> {row['rerun_steps']}",
                  file=sys.stderr, flush=True)
            Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print("| signal | target | workers | ranks | exit | traceback | checkpoint step | rerun | steps after rerun |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in results:
        print(f"| {row['signal']} | {row['target']} | {row['workers']} | {row['ranks']} | {row['exit']} | "
              f"{'yes' if row['traceback'] else 'no'} | {row['checkpoint_step']} | {row['rerun_exit']} | "
              f"{row['rerun_steps']} of {STEPS} |")


if __name__ == "__main__":
    main()
