"""Long Range Arena for the attention approximations: ListOps and Pathfinder-32 generated here, the small
Transformer of the comparison, its training and its costs (the paper's Table 5)."""

from motionformer_experiments.lra.data import REDUCED_LISTOPS_LENGTHS, TASKS, TaskData, generate_task, load_task
from motionformer_experiments.lra.listops import (
    ListOpsSettings,
    evaluate,
    generate_listops,
    parse,
    read_listops,
    tokenize,
)
from motionformer_experiments.lra.model import ATTENTIONS, LRAModel, SequenceAttention, parse_attention
from motionformer_experiments.lra.pathfinder import PathfinderSettings, generate_pathfinder, render_pathfinder
from motionformer_experiments.lra.report import PAPER_TABLE5, measure_costs, read_results, table5
from motionformer_experiments.lra.train import PRESETS, Preset, measure_cost, preset_for, train_lra

__all__ = ["ATTENTIONS", "PAPER_TABLE5", "PRESETS", "REDUCED_LISTOPS_LENGTHS", "TASKS", "LRAModel",
           "ListOpsSettings", "PathfinderSettings", "Preset", "SequenceAttention", "TaskData", "evaluate",
           "generate_listops", "generate_pathfinder", "generate_task", "load_task", "measure_cost", "measure_costs",
           "parse", "parse_attention", "preset_for", "read_listops", "read_results", "render_pathfinder", "table5",
           "tokenize", "train_lra"]
