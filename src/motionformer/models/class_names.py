"""Class-name lists of the datasets Motionformer is trained on, shipped as package data.

Each list lives in ``motionformer/models/classes/<name>.txt``, one name per line, where line ``i``
(0-based) is the name of class index ``i``:

- ``kinetics400`` / ``kinetics600``: the names of the official annotation files, in sorted order
  (the class index of a Kinetics label is its position in the sorted list of label names).
- ``ssv2``: the Something-Something-v2 templates exactly as the keys of the official labels file
  (no brackets around "something"), ordered by their class index.
- ``epic_verbs`` / ``epic_nouns``: the ``key`` column of the EPIC-KITCHENS-100 verb / noun class
  files, in class-id order.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

CLASS_LISTS = ("kinetics400", "kinetics600", "ssv2", "epic_verbs", "epic_nouns")


@cache
def _load(name: str) -> tuple[str, ...]:
    text = (files("motionformer.models") / "classes" / f"{name}.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


def class_names(name: str) -> list[str]:
    """The class names of list ``name`` (one of ``CLASS_LISTS``); element ``i`` names class index ``i``."""
    if name not in CLASS_LISTS:
        raise ValueError(f"unknown class list {name!r}; known lists: {', '.join(CLASS_LISTS)}")
    return list(_load(name))
