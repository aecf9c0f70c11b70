"""Multiply-adds of one forward pass, counted with PyTorch's FLOP counter (``torch.utils.flop_counter``).

``FlopCounterMode`` counts matrix products, convolutions and attention kernels as FLOPs = 2 x multiply-adds,
and element-wise work (softmax, norms, activations, interpolation) as nothing. The counts here are halved into
multiply-adds (MACs), the unit of the paper's "GFLOPs".

Nothing is computed: the forward pass runs on meta tensors, which carry shapes only. There
``scaled_dot_product_attention`` takes its math path (two batched matrix products, counted). On CPU tensors it
runs the fused ``aten._scaled_dot_product_flash_attention_for_cpu`` instead, which PyTorch has no formula for:
``CUSTOM_FLOP_FORMULAS`` adds one (pass it as ``custom_mapping`` to count a real CPU run; the tests check that
both paths count the same). Any other operator that looks like a matrix product but has no formula raises an
error rather than counting as zero. The custom autograd function of the temporal stage runs plain operators
in its forward, counted as usual.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from motionformer.layers import TrajectoryAttention
from motionformer.models.motionformer import Motionformer, count_parameters
from motionformer.models.registry import create_model

# The paper's GFLOPs: multiply-adds of one clip at the model's own input; for trajectory attention, those of the
# straightforward computation.
PAPER_GMACS = {
    "mformer_b": 369.5,
    "mformer_hr": 958.8,
    "mformer_l": 1185.1,
    "joint_b": 180.6,
    "divided_b": 185.8,
}

# Operator names that do matrix-product work: one of these without a formula would be counted as zero.
_MATRIX_OP = re.compile(r"(^|_)(mm|bmm|addmm|baddbmm|addbmm|mv|addmv|dot|vdot|matmul|linear|einsum|tensordot"
                        r"|conv\w*|\w*convolution\w*|\w*attention\w*)($|_)")


def _cpu_attention_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int], *args,
                         out_shape: Sequence[int] | None = None, **kwargs) -> int:
    """FLOPs of ``aten._scaled_dot_product_flash_attention_for_cpu``, (B, H, L, E) queries and (B, H', S, E|Ev)
    keys and values: scores Q K^T and their product with V, as PyTorch counts its CUDA attention kernels."""
    batch, heads, queries, head_dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * queries * keys * (head_dim + value_dim)


CUSTOM_FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


class _OperatorRecorder(TorchDispatchMode):
    """Records every operator that runs; entered below ``FlopCounterMode``, it sees the operators that the
    counter runs after its own decompositions, so these are the ones it had to count."""

    def __init__(self):
        super().__init__()
        self.operators: set[torch._ops.OpOverloadPacket] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.operators.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


def set_reference_attention(model: nn.Module, reference: bool) -> int:
    """Switch every ``TrajectoryAttention`` of ``model`` to the straightforward computation (``reference=True``:
    the materialised (T*S)^2 attention and ``proj_kv`` on all T x T*S trajectory tokens) or back to this
    library's. Returns the number of modules switched (0 for joint or divided attention)."""
    modules = [module for module in model.modules() if isinstance(module, TrajectoryAttention)]
    for module in modules:
        module.reference = reference
    return len(modules)


def count_flops(model: Motionformer, num_frames: int | None = None, img_size: int | None = None) -> int:
    """Multiply-adds of one forward pass of one clip (batch 1, ``num_frames`` x ``img_size``^2, default the
    model's own input) in eval mode: ``FlopCounterMode``'s FLOPs / 2.

    The pass runs on meta copies of the weights' shapes: the model's weights are neither read nor changed, and
    it may live on any device. Raises RuntimeError naming any matrix-product operator the counter has no
    formula for.
    """
    size = img_size or model.img_size
    shape = (1, model.patch_embed.proj.in_channels, num_frames or model.num_frames, size, size)
    state = {name: torch.empty_like(t, device="meta") for name, t in (*model.named_parameters(),
                                                                      *model.named_buffers())}
    clip = torch.zeros(shape, dtype=next(model.parameters()).dtype, device="meta")
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), _OperatorRecorder() as recorder, FlopCounterMode(
                display=False, custom_mapping=CUSTOM_FLOP_FORMULAS) as counter:
            functional_call(model, state, (clip,))
    finally:
        model.train(training)
    missed = sorted(str(op) for op in recorder.operators
                    if op not in counter.flop_registry and _MATRIX_OP.search(str(op).split(".")[-1]))
    if missed:
        raise RuntimeError(f"FlopCounterMode has no formula for {', '.join(missed)}: they would count as zero; "
                           f"add one to CUSTOM_FLOP_FORMULAS in {__name__}")
    return counter.get_total_flops() // 2


def _format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:  # the name left-aligned, numbers right-aligned
        return "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), line(["-" * width for width in widths]), *map(line, rows)])


def _giga(value: float) -> str:
    """Billions with one decimal, or three significant digits below ten (the tiny test models)."""
    return f"{value / 1e9:.1f}" if value >= 1e10 else f"{value / 1e9:.3g}"


def flops_table(name: str, num_frames: int | None = None, img_size: int | None = None, **overrides: Any) -> str:
    """A small text table: parameters (millions) and multiply-adds (G) of one clip of the named model, for this
    library's computation and, for trajectory attention, the straightforward one, beside the paper's figure
    (shown only for the model's own input size)."""
    with torch.device("meta"):  # no weight data: counting reads shapes only
        model = create_model(name, **overrides)
    frames, size = num_frames or model.num_frames, img_size or model.img_size
    ours = count_flops(model, frames, size)
    straightforward = None
    if set_reference_attention(model, True):
        straightforward = count_flops(model, frames, size)
        set_reference_attention(model, False)
    native = (frames, size) == (model.num_frames, model.img_size)
    paper = PAPER_GMACS.get(name) if native and not overrides else None
    cells = [name, f"{frames}x{size}", f"{count_parameters(model) / 1e6:.1f}", _giga(ours),
             "-" if straightforward is None else _giga(straightforward), "-" if paper is None else f"{paper:.1f}"]
    headers = ["model", "input", "params (M)", "GMACs ours", "GMACs straightforward", "paper"]
    notes = ["input: frames x pixels, batch 1. GMACs: 10^9 multiply-adds = FlopCounterMode's FLOPs / 2, like the "
             "paper's GFLOPs."]
    if straightforward is not None:
        notes.append("straightforward: the (T*S)^2 attention materialised and proj_kv applied to all T x T*S "
                     "trajectory tokens,\nas in the released code (the paper's figure for trajectory models is of "
                     "this computation).")
    return "\n".join([_format_table(headers, [cells]), *notes])
