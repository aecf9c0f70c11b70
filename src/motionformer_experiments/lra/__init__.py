"""Long Range Arena for the attention approximations: ListOps and Pathfinder-32 generated here, the small
Transformer of the comparison, its training and its costs (the paper's Table 5)."""

from motionformer.lra.listops import ListOpsSettings, evaluate, generate_listops, parse, read_listops, tokenize
from motionformer.lra.model import ATTENTIONS, LRAModel, SequenceAttention, parse_attention
from motionformer.lra.pathfinder import PathfinderSettings, generate_pathfinder, render_pathfinder
from motionformer.lra.train import PAPER_TABLE5, PRESETS, Preset, TaskData, load_task, measure_cost, table5, train_lra

__all__ = ["ATTENTIONS", "PAPER_TABLE5", "PRESETS", "LRAModel", "ListOpsSettings", "PathfinderSettings", "Preset",
           "SequenceAttention", "TaskData", "evaluate", "generate_listops", "generate_pathfinder", "load_task",
           "measure_cost", "parse", "parse_attention", "read_listops", "render_pathfinder", "table5", "tokenize",
           "train_lra"]
