"""``motionformer export``: a checkpoint as an ONNX or ExportedProgram file with a dynamic batch."""

from __future__ import annotations

import argparse
import logging

# the ONNX exporter's passes log every graph rewrite at INFO
QUIET_LOGGERS = ("onnxscript", "onnx_ir")
TOLERANCE = 1e-4  # the largest relative error of the exported logits accepted by the check


def _export(args: argparse.Namespace) -> int:
    from motionformer.engine import RunError
    from motionformer.engine.build import model_from_weights
    from motionformer.export import export_error, export_model

    if not args.verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    model, _, _ = model_from_weights(args.checkpoint)
    path = export_model(model, args.out, format=args.format)
    print(path)
    if args.no_check:
        return 0
    error = export_error(path, model, batch_sizes=(1, 3))
    runtime = "ONNX Runtime (CPU)" if args.format == "onnx" else "the ExportedProgram"
    print(f"{runtime} vs eager PyTorch on batches of 1 and 3: relative error {error:.1e}")
    if not error < TOLERANCE:
        raise RunError(f"{path}: the exported model differs from the eager one (relative error {error:.1e}, "
                       f"more than {TOLERANCE:.0e})")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="write a checkpoint as ONNX or a torch.export ExportedProgram (dynamic batch)",
        description="Write the model's inference graph (input 'video' (B, 3, frames, crop, crop), normalised as the "
                    "weights expect; output 'logits') with a dynamic batch dimension, the weights' input spec and "
                    "class names inside the file; then check it against eager PyTorch on random batches of 1 and 3. "
                    "ONNX needs: pip install \"motionformer[export]\".")
    export.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="weights: a run's .pt, a .safetensors, a released .pyth, a save_pretrained "
                             "folder, or a model-zoo name")
    export.add_argument("out", metavar="OUT", help="the file to write (.onnx or .pt2; added when missing)")
    export.add_argument("--format", choices=("onnx", "exported-program"), default="onnx",
                        help="onnx (default; runs on ONNX Runtime) or exported-program (torch.export .pt2)")
    export.add_argument("--no-check", action="store_true", help="skip the comparison with eager PyTorch")
    export.set_defaults(run=_export)
