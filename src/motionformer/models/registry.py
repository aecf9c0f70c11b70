"""Named model variants: ``create_model(name, **overrides)`` and ``list_models()``."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from motionformer.layers import TrajectoryOptions
from motionformer.models.motionformer import Motionformer

VIT_B = dict(embed_dim=768, depth=12, num_heads=12)
VIT_L = dict(embed_dim=1024, depth=24, num_heads=16)
TINY = dict(embed_dim=192, depth=4, num_heads=3, img_size=112, num_frames=8)

_VARIANTS: dict[str, dict[str, Any]] = {
    # the paper's models (section 4 and appendix 6.1.3)
    "mformer_b": dict(**VIT_B, img_size=224, num_frames=16),
    "mformer_l": dict(**VIT_B, img_size=224, num_frames=32),
    "mformer_hr": dict(**VIT_B, img_size=336, num_frames=16),
    "mformer_h": dict(**VIT_L, img_size=336, num_frames=16, trajectory=dict(approx="orthoformer", num_prototypes=196)),
    "joint_b": dict(**VIT_B, img_size=224, num_frames=16, attention="joint"),
    "divided_b": dict(**VIT_B, img_size=224, num_frames=16, attention="divided"),
    # small variants for tests and CPU work
    "mformer_tiny": dict(**TINY),
    "joint_tiny": dict(**TINY, attention="joint"),
    "divided_tiny": dict(**TINY, attention="divided"),
    "mformer_tiny_orthoformer": dict(**TINY, trajectory=dict(approx="orthoformer", num_prototypes=16)),
}


def list_models() -> list[str]:
    """Names accepted by ``create_model``."""
    return sorted(_VARIANTS)


def model_defaults(name: str) -> dict[str, Any]:
    """The keyword arguments of a named variant (a copy)."""
    if name not in _VARIANTS:
        close = difflib.get_close_matches(name, _VARIANTS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} Known: {', '.join(list_models())}")
    return dict(_VARIANTS[name])


def model_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """``Motionformer`` keyword arguments from flat ones: trajectory option names (``approx=...``) and a
    ``trajectory`` dict or ``TrajectoryOptions`` fold into one ``trajectory=TrajectoryOptions``.

    Reads ``model.architecture`` of any version (older ones keep the options flat). Raises ValueError naming
    unknown keys and listing the valid ones.
    """
    model_keys = [name for name in inspect.signature(Motionformer).parameters if name != "trajectory"]
    option_keys = TrajectoryOptions.names()
    unknown = sorted(set(values) - {*model_keys, *option_keys, "trajectory"})
    if unknown:
        raise ValueError(f"unknown model argument(s) {', '.join(unknown)}; valid: {', '.join(model_keys)}, "
                         f"and the trajectory options {', '.join(option_keys)}")
    base = values.get("trajectory")
    if isinstance(base, Mapping):
        base = TrajectoryOptions.from_dict(base)
    trajectory = TrajectoryOptions.from_dict({k: v for k, v in values.items() if k in option_keys}, base)
    return {**{k: v for k, v in values.items() if k in model_keys}, "trajectory": trajectory}


def create_model(name: str, **overrides: Any) -> nn.Module:
    """A plain CPU ``Motionformer`` of the named variant; ``overrides`` replace its keyword arguments
    (for example ``num_classes=174``, ``heads={"verb": 97, "noun": 300}``, ``attention="joint"``) and
    trajectory options (``approx="orthoformer"``, ``oversampling=2`` ...; see ``TrajectoryOptions``)."""
    return Motionformer(**model_arguments({**model_defaults(name), **overrides}))
