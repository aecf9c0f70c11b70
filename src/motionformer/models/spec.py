"""``InputSpec``: what a set of weights expects of its input (frames, stride, crop, views, normalisation,
channel order, class names), one typed value used by training, testing, prediction and the weight files."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

ClassNames = list[str] | dict[str, list[str]] | None

CHANNEL_ORDERS = ("rgb", "bgr")
SAMPLINGS = ("clips", "segments")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"InputSpec.{name} must be an integer >= 1, got {value!r}")


def _three_floats(name: str, value: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"InputSpec.{name} must hold 3 values (one per channel), got {list(value)}")
    return values


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model's weights expect of a clip.

    ``sampling``: ``clips`` (``num_frames`` frames ``sampling_rate`` apart: Kinetics, Epic-Kitchens) or
    ``segments`` (one frame per equal segment of the video: Something-Something v2). ``channel_order``: the
    order of the colour channels the weights saw (the released SSv2 and Epic-Kitchens models learnt BGR).
    ``mean`` / ``std`` normalise pixels in [0, 1]. ``num_clips`` x ``num_crops``: the test views.
    ``class_names``: a list for one head, {head: list} for several, or None.
    """

    num_frames: int
    crop_size: int
    sampling_rate: int = 4
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    channel_order: str = "rgb"
    num_clips: int = 1
    num_crops: int = 1
    class_names: ClassNames = None
    sampling: str = "clips"

    def __post_init__(self) -> None:
        for name in ("num_frames", "crop_size", "sampling_rate", "num_clips"):
            _positive(name, getattr(self, name))
        if self.num_crops not in (1, 3):
            raise ValueError(f"InputSpec.num_crops must be 1 or 3, got {self.num_crops!r}")
        object.__setattr__(self, "mean", _three_floats("mean", self.mean))
        object.__setattr__(self, "std", _three_floats("std", self.std))
        if min(self.std) <= 0:
            raise ValueError(f"InputSpec.std must be > 0 in every channel, got {list(self.std)}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"InputSpec.channel_order={self.channel_order!r} is not one of "
                             f"{', '.join(CHANNEL_ORDERS)}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"InputSpec.sampling={self.sampling!r} is not one of {', '.join(SAMPLINGS)}")

    def to_json(self) -> dict[str, Any]:
        """The fields as plain JSON values."""
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, values: Mapping[str, Any], source: str = "input spec") -> InputSpec:
        """An ``InputSpec`` from ``to_json``'s dict; ValueError naming ``source`` and the unknown or bad keys."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"{source}: unknown input-spec key(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from error
