"""``motionformer bench motion``: the paper's Tables 3, 4, 7 and Figure 3 in miniature, on synthetic motion clips.

Every arm trains a small Motionformer from scratch under one fixed budget (the same steps, batch, learning-rate
schedule, data stream and seeds for every arm) on clips from ``render_clip``: the plain variant (white object) over
the textured background dimmed to ``Budget.background_level``, so that a camera pan is visible. The class is the
object's motion; a single frame carries no information about it (see ``motionformer.data.synthetic``). Fresh clips are
rendered for every step (no epochs, no over-fitting to a fixed set); each condition has one fixed validation set,
rendered from seeds the training stream never uses.

Groups (each compares arms within itself; rows name the paper's figure for the matching SSv2 row):

* ``attention`` (Table 4 and 7): joint, divided and trajectory attention; trajectory with temporal averaging (Avg_T)
  and with space-time normalisation (Norm_ST); a single-frame model (one random frame of the clip).
* ``camera pan``: joint, divided and trajectory when the camera pans (the class is the motion relative to the scene).
* ``stride`` (Figure 3): joint, divided and trajectory at temporal strides 1, 4 and 8 (stride 2 is the ``attention``
  group's); a larger stride means more motion between the frames the model sees.
* ``orthoformer`` (Table 3): at 24 pixels with patch 2 (S = 144 tokens per frame and T x S = 576 in all, so that 128
  prototypes, shared or per frame, approximate), exact trajectory attention, Orthoformer with 16, 64 and 128 shared
  prototypes, random and segment-means selection, per-frame prototypes, Nystrom with 128 landmarks and Performer with
  256 features.

Measured per arm: top-1 on the validation set (mean and standard deviation over seeds), the training loss every
``steps / 20`` steps (to see whether and when an arm left the initial plateau at ln 10), parameters, multiply-adds of
one clip (``count_flops``), the memory of one training step (``motionformer.engine.memory.step_memory_bytes``) and
the median time of one training step (forward, backward, AdamW; rendering excluded). Training runs through the
engine's pieces (``build_optimizer``, ``build_scheduler``, ``TrainStep``, ``model_accuracy``). Jobs (one arm, one
seed) run in ``workers`` processes of one thread each (``workers=1``: in this process, with its threads), so times are
per thread with the other workers busy beside it: compare them within one run only.

Each finished job is written at once to ``OUT/runs/`` (atomically); a rerun with the same budget skips those, so an
interrupted run resumes. At the end: ``results.json``, ``results.md`` and the charts ``attention.png``,
``stride.png``, ``orthoformer.png`` and ``loss.png`` (training loss against steps, per group).
"""

from motionformer_experiments.motion.arms import ARMS, FULL, QUICK, Arm, Budget, make_budget, select_arms
from motionformer_experiments.motion.jobs import run_benchmark
from motionformer_experiments.motion.report import left_plateau, markdown_table, summarise
from motionformer_experiments.motion.train import train_arm

__all__ = ["ARMS", "FULL", "QUICK", "Arm", "Budget", "left_plateau", "make_budget", "markdown_table", "run_benchmark",
           "select_arms", "summarise", "train_arm"]
