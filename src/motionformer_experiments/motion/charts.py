"""The motion benchmark's charts, drawn with PIL (no plotting library needed): bars of top-1 per arm, top-1 against
temporal stride, and the training loss by step."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from motionformer.io import atomic_write
from motionformer_experiments.motion.arms import NUM_CLASSES

__all__ = ["write_charts"]


def _bar_chart(path: Path, title: str, rows: list[dict[str, Any]]) -> None:
    from PIL import Image, ImageDraw

    width, bar, left, top, bottom = 720, 22, 170, 36, 30
    height = top + bottom + len(rows) * (bar + 8)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), title, fill="black")
    scale = (width - left - 40) / 100.0
    for i, row in enumerate(rows):
        y = top + i * (bar + 8)
        draw.text((10, y + 5), row["name"], fill="black")
        mean, std = row["top1_mean"], row["top1_std"]
        draw.rectangle([left, y, left + mean * scale, y + bar], fill=(70, 120, 190))
        draw.line([left + (mean - std) * scale, y + bar / 2, left + (mean + std) * scale, y + bar / 2], fill="black",
                  width=2)
        draw.text((left + (mean + std) * scale + 6, y + 5), f"{mean:.1f} ± {std:.1f}", fill="black")
    chance = left + 100 / NUM_CLASSES * scale
    draw.line([chance, top - 4, chance, height - bottom + 4], fill=(200, 60, 60), width=1)
    draw.text((chance + 3, height - bottom + 6), "chance", fill=(200, 60, 60))
    for tick in range(0, 101, 20):
        draw.text((left + tick * scale - 6, height - 16), str(tick), fill="grey")
    image.save(path, format="PNG")


_PALETTE = ((200, 90, 40), (60, 150, 60), (60, 90, 200), (150, 60, 170), (20, 160, 170), (120, 120, 120),
            (210, 160, 20), (230, 80, 140), (90, 60, 30))


def _line_panel(image: Any, box: tuple[int, int, int, int], title: str, series: dict[str, list[tuple[float, float]]],
                y_range: tuple[float, float], x_at: Callable[[float], float], x_ticks: list[float],
                reference: float | None = None) -> None:
    """Draw one panel of lines into ``image``: box (left, top, right, bottom) of the plot area; ``x_at`` maps an x
    value to [0, 1] along the axis; y values outside ``y_range`` are drawn at its edge; a grey dashed line at
    ``reference`` (chance, or ln 10)."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    left, top, right, bottom = box
    low, high = y_range

    def y_at(y: float) -> float:
        return bottom - (min(max(y, low), high) - low) / (high - low) * (bottom - top)

    def point(x: float, y: float) -> tuple[float, float]:
        return left + x_at(x) * (right - left), y_at(y)

    draw.text((left, top - 30), title, fill="black")
    for i in range(6):
        value = low + (high - low) * i / 5
        y = y_at(value)
        draw.line([left, y, right, y], fill=(230, 230, 230))
        draw.text((left - 40, y - 6), f"{value:g}", fill="grey")
    for tick in x_ticks:
        draw.text((left + x_at(tick) * (right - left) - 8, bottom + 6), f"{tick:g}", fill="grey")
    if reference is not None:
        y = y_at(reference)
        for x in range(left, right, 8):
            draw.line([x, y, min(x + 4, right), y], fill=(150, 150, 150))
    for index, (name, points) in enumerate(series.items()):
        colour = _PALETTE[index % len(_PALETTE)]
        xy = [point(x, y) for x, y in sorted(points)]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.text((right + 10, top + 14 * index), name, fill=colour)


def _stride_chart(path: Path, rows: list[dict[str, Any]]) -> None:
    from PIL import Image

    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row["group"] in ("attention", "stride") and row["name"].split()[0] in ("joint", "divided", "trajectory") \
                and row["name"] not in ("trajectory Avg_T", "trajectory Norm_ST"):
            series.setdefault(row["name"].split()[0], []).append((row["stride"], row["top1_mean"]))
    strides = sorted({s for points in series.values() for s, _ in points})
    image = Image.new("RGB", (640, 400), "white")
    _line_panel(image, (50, 60, 520, 360), "Figure 3 in miniature: top-1 (%) against temporal stride",
                dict(sorted(series.items())), (0, 100), lambda s: strides.index(s) / max(len(strides) - 1, 1),
                strides, reference=100 / NUM_CLASSES)
    image.save(path, format="PNG")


def _loss_chart(path: Path, rows: list[dict[str, Any]]) -> None:
    """Training loss (mean over seeds) against steps, one panel per group; ln 10 marks the initial plateau."""
    from PIL import Image

    groups = list(dict.fromkeys(row["group"] for row in rows if row.get("loss_curve")))
    panel = 260
    image = Image.new("RGB", (760, 20 + panel * len(groups)), "white")
    last = max(row["loss_curve"]["steps"][-1] for row in rows if row.get("loss_curve"))
    ticks = [round(last * i / 4) for i in range(5)]
    for index, group in enumerate(groups):
        series = {row["name"]: list(zip(row["loss_curve"]["steps"], row["loss_curve"]["mean_loss"], strict=True))
                  for row in rows if row["group"] == group and row.get("loss_curve")}
        top = 50 + panel * index
        _line_panel(image, (60, top, 560, top + panel - 70), f"{group}: training loss (mean over seeds) by step; "
                    f"dashed: ln {NUM_CLASSES}, the plateau", series, (0.5, 2.5), lambda s: s / last, ticks,
                    reference=math.log(NUM_CLASSES))
    image.save(path, format="PNG")


def write_charts(out: Path, rows: list[dict[str, Any]]) -> None:
    chance = f"chance {100 / NUM_CLASSES:.0f}%"
    main = [r for r in rows if r["group"] == "attention"]
    main += [{**r, "name": f"{r['name']} (pan)"} for r in rows if r["group"] == "camera pan"]
    charts = [("attention.png", f"Tables 4 and 7 in miniature: top-1 (%), {chance}", main),
              ("orthoformer.png", f"Table 3 in miniature: top-1 (%), {chance}",
               [r for r in rows if r["group"] == "orthoformer"])]
    for name, title, selected in charts:
        if selected:
            atomic_write(out / name, lambda temp, t=title, s=selected: _bar_chart(Path(temp), t, s))
    if any(r["group"] == "stride" for r in rows):
        atomic_write(out / "stride.png", lambda temp: _stride_chart(Path(temp), rows))
    if any(r.get("loss_curve") for r in rows):
        atomic_write(out / "loss.png", lambda temp: _loss_chart(Path(temp), rows))

