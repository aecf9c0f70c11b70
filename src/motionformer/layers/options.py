"""``TrajectoryOptions``: every choice of trajectory attention in one typed value, checked once.

The value travels unchanged from a run's config (``model.options``) through ``create_model`` and
``Motionformer(trajectory=...)`` to every ``TrajectoryAttention``; ``to_dict`` / ``from_dict`` give the plain
JSON form that weight files and checkpoints store.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from motionformer.attention import Normalization, PrototypeSelection, PrototypeSource, TemporalPooling


class Approximation(str, enum.Enum):
    """Approximations of trajectory attention's first (spatial) stage (paper Table 3a)."""

    ORTHOFORMER = "orthoformer"
    NYSTROM = "nystrom"
    PERFORMER = "performer"


def _member(enum_type: type[enum.Enum], name: str, value: Any) -> enum.Enum:
    """``enum_type(value)``, or a ValueError naming the option, the value and the choices."""
    try:
        return enum_type(value)
    except ValueError:
        choices = ", ".join(member.value for member in enum_type)
        raise ValueError(f"trajectory option {name}={value!r} is not one of {choices}") from None


@dataclasses.dataclass(frozen=True)
class TrajectoryOptions:
    """How trajectory attention computes (paper eq. 4-6; Tables 3 and 4).

    Attributes:
        approx: None for exact attention, else an ``Approximation`` of the spatial stage.
        num_prototypes: prototypes (Orthoformer) or landmarks (Nystrom). At least S, the tokens of one
            frame, means exact attention.
        temporal_pooling: ``attention`` (Att_T) or ``average`` (Avg_T; no ``proj_q``/``proj_kv``).
        normalization: ``frame`` (Norm_S) or ``space_time`` (Norm_ST, exact only).
        original_temporal_values: pool the trajectory tokens themselves in the temporal stage, as the
            released checkpoints do (the value half of ``proj_kv`` is then unused). Default: the paper's
            projected values.
        prototype_selection, shared_prototypes, prototype_source, oversampling: Orthoformer options.
        num_random_features: Performer features m. pinv_iterations: Nystrom inverse iterations.
        reference: compute with the slow straightforward reference (for parity checks and benchmarks).
    """

    approx: Approximation | None = None
    num_prototypes: int = 128
    temporal_pooling: TemporalPooling = TemporalPooling.ATTENTION
    normalization: Normalization = Normalization.FRAME
    original_temporal_values: bool = False
    prototype_selection: PrototypeSelection = PrototypeSelection.ORTHOGONAL
    shared_prototypes: bool = True
    prototype_source: PrototypeSource = PrototypeSource.QUERIES_AND_KEYS
    oversampling: int = 4
    num_random_features: int = 256
    pinv_iterations: int = 6
    reference: bool = False

    def __post_init__(self) -> None:
        enums = {"approx": Approximation, "temporal_pooling": TemporalPooling, "normalization": Normalization,
                 "prototype_selection": PrototypeSelection, "prototype_source": PrototypeSource}
        for name, enum_type in enums.items():
            value = getattr(self, name)
            if value is not None or name != "approx":
                object.__setattr__(self, name, _member(enum_type, name, value))
        for name in ("num_prototypes", "oversampling", "num_random_features", "pinv_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"trajectory option {name} must be an integer >= 1, got {value!r}")
        if self.approx is not None and self.normalization is Normalization.SPACE_TIME:
            raise ValueError("trajectory option normalization='space_time' is only implemented for exact attention "
                             f"(approx=None), got approx={self.approx.value!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: TrajectoryOptions | None = None) -> TrajectoryOptions:
        """``base`` (default: the defaults) with ``values`` replaced; a ValueError lists the valid names for an
        unknown one."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown trajectory option(s) {', '.join(unknown)}; valid: {', '.join(cls.names())}")
        return dataclasses.replace(base or cls(), **values)

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON values (enums as their strings)."""
        return {name: value.value if isinstance(value, enum.Enum) else value
                for name, value in dataclasses.asdict(self).items()}
