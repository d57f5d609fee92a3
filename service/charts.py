"""Geometry of the evaluation report's charts, drawn as inline SVG by ``templates/evaluation.html``.

Each function turns report figures into pixel positions on a fixed canvas, with an axis whose
ticks are round numbers, so the template only places shapes. No JavaScript is needed to read a report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PALETTE = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0969da", "#57606a")
WIDTH = 760
LABEL_WIDTH = 210  # left column of interval charts, for candidate names
ROW_HEIGHT = 30
Y_TICKS = 5  # the ticks a line chart's value axis asks for (the templates' y_axis.ticks(5))
MARGIN = 12
AXIS_HEIGHT = 34


@dataclass(frozen=True)
class Axis:
    """A linear map from values in [low, high] to pixels in [start, end]."""

    low: float
    high: float
    start: float
    end: float

    def at(self, value: float) -> float:
        """Return the pixel of ``value``."""
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)

    def ticks(self, count: int = 6) -> list[tuple[float, str]]:
        """Return round values inside the axis with their pixels' labels: (pixel, label)."""
        step = nice_step((self.high - self.low) / count)
        first = math.ceil(self.low / step) * step
        places = max(0, -math.floor(math.log10(step)))
        found = []
        value = first
        while value <= self.high + step * 1e-9:
            shown = 0.0 if abs(value) < step * 1e-9 else value  # no "-0.00"
            found.append((self.at(value), f"{shown:.{places}f}"))
            value += step
        return found


def nice_step(raw: float) -> float:
    """Return the smallest of 1, 2 or 5 times a power of ten that is at least ``raw``."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * power >= raw * (1 - 1e-12):
            return factor * power
    return 10.0 * power


def value_range(values: Iterable[float | None], *, include: Sequence[float] = ()) -> tuple[float, float]:
    """Return a padded range that holds every finite value and every value of ``include``."""
    finite = [v for v in (*values, *include) if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.06 or max(abs(high) * 0.1, 0.05)
    return low - pad, high + pad


@dataclass
class IntervalChart:
    """Rows of point estimates with intervals on one horizontal axis, and an optional reference line."""

    width: int
    height: int
    axis: Axis
    axis_y: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    reference: tuple[float, str] | None = None  # (pixel, label)


MARKER_SPACE = 9.0  # pixels between two marker letters on one side of a row
MARKER_SIDES = (-7.0, 15.0)  # baseline offsets of a marker letter: above the interval, then below it


def _spread(markers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each marker letter a side of its row (``dy``): no two on one side closer than ``MARKER_SPACE``."""
    last: dict[float, float] = {}
    for marker in sorted(markers, key=lambda item: item["x"]):
        side = next((dy for dy in MARKER_SIDES if marker["x"] - last.get(dy, -1e9) >= MARKER_SPACE), MARKER_SIDES[0])
        marker["dy"] = side
        last[side] = marker["x"]
    return markers


def interval_chart(
    rows: Sequence[Mapping[str, Any]], *, reference: float | None, reference_label: str, markers: Sequence[str] = ()
) -> IntervalChart:
    """Lay out one row per entry: ``name`` and ``value``/``ci_low``/``ci_high``, plus values named in ``markers``.

    Entries without a value are listed with no shape (an undefined estimate).
    """
    values: list[float | None] = []
    for row in rows:
        values += [row.get("value"), row.get("ci_low"), row.get("ci_high"), *(row.get(name) for name in markers)]
    low, high = value_range(values, include=[reference] if reference is not None else [])
    height = MARGIN + ROW_HEIGHT * len(rows) + AXIS_HEIGHT
    axis = Axis(low, high, LABEL_WIDTH, WIDTH - MARGIN)
    chart = IntervalChart(width=WIDTH, height=height, axis=axis, axis_y=MARGIN + ROW_HEIGHT * len(rows))
    if reference is not None:
        chart.reference = (axis.at(reference), reference_label)
    for index, row in enumerate(rows):
        y = MARGIN + ROW_HEIGHT * index + ROW_HEIGHT / 2
        placed: dict[str, Any] = {
            "name": row["name"],
            "y": y,
            "color": PALETTE[index % len(PALETTE)],
            "value": row.get("value"),
            "ci_low": row.get("ci_low"),
            "ci_high": row.get("ci_high"),
        }
        if row.get("value") is not None:
            placed.update(x=axis.at(row["value"]), x_low=axis.at(row["ci_low"]), x_high=axis.at(row["ci_high"]))
        placed["markers"] = _spread(
            [
                {"name": name, "x": axis.at(row[name]), "value": row[name]}
                for name in markers
                if row.get(name) is not None
            ]
        )
        chart.rows.append(placed)
    return chart


@dataclass
class SeriesChart:
    """Lines with interval bands over contiguous stretches of time."""

    width: int
    height: int
    x_axis: Axis
    y_axis: Axis
    plot_top: float
    plot_bottom: float
    series: list[dict[str, Any]] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    reference: tuple[float, str] | None = None


def time_format(span_seconds: float) -> str:
    """Return the strftime format that tells apart times spread over ``span_seconds``."""
    if span_seconds >= 5 * 86400:
        return "%Y-%m-%d"
    if span_seconds >= 3600:
        return "%m-%d %H:%M"
    return "%H:%M:%S"


def series_chart(
    candidates: Sequence[Mapping[str, Any]], *, reference: float | None, reference_label: str, height: int = 300
) -> SeriesChart:
    """Lay out each candidate's DR estimate per time bucket (``over_time``) as a line and its interval as a band."""
    buckets = max((len(c.get("over_time", [])) for c in candidates), default=0)
    values: list[float | None] = []
    for candidate in candidates:
        for point in candidate.get("over_time", []):
            if "dr" in point:
                values += [point["dr"].get("ci_low"), point["dr"].get("ci_high")]
    low, high = value_range(values, include=[reference] if reference is not None else [])
    left, right, top, bottom = 56.0, float(WIDTH - MARGIN), float(MARGIN), float(height - AXIS_HEIGHT)
    x_axis = Axis(-0.5, max(buckets, 1) - 0.5, left, right)
    y_axis = Axis(low, high, bottom, top)
    chart = SeriesChart(width=WIDTH, height=height, x_axis=x_axis, y_axis=y_axis, plot_top=top, plot_bottom=bottom)
    if reference is not None:
        chart.reference = (y_axis.at(reference), reference_label)
    if candidates:
        first = candidates[0].get("over_time", [])
        step = max(1, math.ceil(len(first) / 5))
        span = first[-1]["until"] - first[0]["from"] if first else 0.0
        fmt = time_format(span)
        chart.x_labels = [
            (x_axis.at(i), datetime.fromtimestamp(point["from"], tz=UTC).strftime(fmt))
            for i, point in enumerate(first)
            if i % step == 0
        ]
    for index, candidate in enumerate(candidates):
        points = [
            (i, p["dr"])
            for i, p in enumerate(candidate.get("over_time", []))
            if "dr" in p and p["dr"].get("value") is not None
        ]
        line = [(x_axis.at(i), y_axis.at(dr["value"])) for i, dr in points]
        band = [(x_axis.at(i), y_axis.at(dr["ci_high"])) for i, dr in points] + [
            (x_axis.at(i), y_axis.at(dr["ci_low"])) for i, dr in reversed(points)
        ]
        chart.series.append(
            {
                "name": candidate["name"],
                "color": PALETTE[index % len(PALETTE)],
                "line": " ".join(f"{x:.1f},{y:.1f}" for x, y in line),
                "band": " ".join(f"{x:.1f},{y:.1f}" for x, y in band),
                "points": [
                    {"x": x, "y": y, "value": dr["value"], "ci_low": dr["ci_low"], "ci_high": dr["ci_high"]}
                    for (x, y), (_, dr) in zip(line, points)
                ],
            }
        )
    return chart


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, height: int = 320, x_low: float = 0.0
) -> SeriesChart:
    """Lay out named series of (x, y) points as lines on shared axes, x starting at ``x_low``."""
    xs = [x for _, points in series for x, _ in points]
    low, high = value_range([y for _, points in series for _, y in points], include=[0.0])
    step = nice_step((high - max(0.0, low)) / Y_TICKS)
    high = math.ceil(high / step - 1e-9) * step  # the top tick at the top: no line runs above the last label
    left, right, top, bottom = 56.0, float(WIDTH - 3 * MARGIN), float(MARGIN), float(height - AXIS_HEIGHT)
    x_high = max(xs, default=x_low + 1.0)
    x_axis = Axis(x_low, x_high if x_high > x_low else x_low + 1.0, left, right)
    y_axis = Axis(max(0.0, low), high, bottom, top)
    chart = SeriesChart(
        width=WIDTH,
        height=height,
        x_axis=x_axis,
        y_axis=y_axis,
        plot_top=top,
        plot_bottom=bottom,
        x_labels=[(x, f"{float(text):,.0f}") for x, text in x_axis.ticks(6)],
    )
    for index, (name, points) in enumerate(series):
        placed = [(x_axis.at(x), y_axis.at(y)) for x, y in points]
        chart.series.append(
            {
                "name": name,
                "color": PALETTE[index % len(PALETTE)],
                "band": "",
                "line": " ".join(f"{x:.1f},{y:.1f}" for x, y in placed),
                "points": [{"x": px, "y": py, "value": y} for (px, py), (_, y) in zip(placed, points)],
            }
        )
    return chart
