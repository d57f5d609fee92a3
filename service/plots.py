"""The dashboard's charts, drawn server-side by matplotlib as inline SVG (no script, no CDN).

Figures are built with matplotlib's object API (``Figure`` and the SVG canvas, never ``pyplot``),
so nothing is shared between requests and several threads may draw at once. Text stays text in the
SVG (``svg.fonttype: none``), which keeps a chart a few kilobytes and lets the page's font apply.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")  # never a window: the service has no display

from matplotlib.backends.backend_svg import FigureCanvasSVG  # noqa: E402
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

matplotlib.rcParams.update(
    {
        "svg.fonttype": "none",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.color": "#d1d9e0",
        "grid.linewidth": 0.6,
        "axes.edgecolor": "#59636e",
        "axes.titlesize": 10,
        "legend.frameon": False,
        "svg.hashsalt": "marquee",
    }
)
COLORS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#59636e")
WIDTH = 9.2  # inches at 100 dpi: the page's content width


def _svg(figure: Figure, name: str) -> str:
    buffer = io.StringIO()
    FigureCanvasSVG(figure).print_svg(buffer)
    text = buffer.getvalue()
    # Inline in HTML: drop the XML declaration and doctype, name the chart for the page and its tests.
    return text[text.index("<svg") :].replace("<svg ", f'<svg data-chart="{name}" role="img" ', 1)


def _times(values: Sequence[float]) -> list[float]:
    """Unix seconds as matplotlib's date numbers (days), in UTC."""
    return [float(date2num(datetime.fromtimestamp(value, tz=UTC))) for value in values]


def time_series(
    name: str,
    series: Sequence[tuple[str, Sequence[float], Sequence[float | None]]],
    *,
    ylabel: str,
    percent: bool = False,
    height: float = 2.4,
) -> str:
    """Lines over time: each series is (label, unix times, values; None leaves a gap)."""
    figure = Figure(figsize=(WIDTH, height), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for index, (label, xs, ys) in enumerate(series):
        values = [math.nan if y is None else (100.0 * y if percent else y) for y in ys]
        axes.plot(
            _times(xs),
            values,
            marker="o",
            markersize=2.5,
            linewidth=1.4,
            label=label,
            color=COLORS[index % len(COLORS)],
        )
    locator = AutoDateLocator(tz=UTC)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=UTC))
    axes.set_ylabel(ylabel + (" (%)" if percent else ""))
    axes.set_ylim(bottom=0)
    if len(series) > 1:
        figure.legend(loc="outside upper left", ncols=len(series))  # above the axes: never over a line
    return _svg(figure, name)


def grouped_bars(
    name: str,
    categories: Sequence[str],
    groups: Sequence[tuple[str, Sequence[float]]],
    *,
    ylabel: str,
    percent: bool = False,
    height: float = 2.6,
) -> str:
    """Bars per category, one bar per group side by side."""
    figure = Figure(figsize=(WIDTH, height), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(groups))
    for index, (label, values) in enumerate(groups):
        xs = [c + (index - (len(groups) - 1) / 2) * width for c in range(len(categories))]
        axes.bar(
            xs,
            [100.0 * v if percent else v for v in values],
            width=width * 0.95,
            label=label,
            color=COLORS[index % len(COLORS)],
        )
    axes.set_xticks(
        range(len(categories)), [str(c)[:18] for c in categories], rotation=0 if len(categories) < 8 else 30
    )
    axes.set_ylabel(ylabel + (" (%)" if percent else ""))
    axes.grid(axis="x", visible=False)
    figure.legend(loc="outside upper right", ncols=len(groups))  # above the axes: never over a bar
    return _svg(figure, name)


def intervals(
    name: str,
    rows: Sequence[tuple[str, float, float | None, float | None]],
    *,
    reference: float | None,
    reference_label: str,
    xlabel: str,
) -> str:
    """Point estimates with confidence intervals, one row each: (label, value, low, high)."""
    height = 0.9 + 0.32 * max(1, len(rows))
    figure = Figure(figsize=(WIDTH, height), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    ys = list(range(len(rows)))[::-1]
    for y, (_label, value, low, high) in zip(ys, rows):
        if low is not None and high is not None:
            axes.plot([low, high], [y, y], color=COLORS[0], linewidth=2.2, solid_capstyle="butt")
        axes.plot([value], [y], marker="o", color=COLORS[0], markersize=5)
    if reference is not None:
        axes.axvline(reference, color=COLORS[1], linestyle="--", linewidth=1, label=reference_label)
        figure.legend(loc="outside lower right")  # below the axes: never over an interval
    axes.set_yticks(ys, [label[:40] for label, *_ in rows])
    axes.set_xlabel(xlabel)
    axes.grid(axis="y", visible=False)
    return _svg(figure, name)


def ranking(name: str, rows: Sequence[tuple[str, float]], *, xlabel: str) -> str:
    """Horizontal bars, largest on top: (label, value) each."""
    height = 0.8 + 0.26 * max(1, len(rows))
    figure = Figure(figsize=(WIDTH / 2 - 0.1, height), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    ys = list(range(len(rows)))[::-1]
    axes.barh(ys, [value for _, value in rows], color=COLORS[0], height=0.7)
    axes.set_yticks(ys, [label[:32] for label, _ in rows])
    axes.set_xlabel(xlabel)
    axes.grid(axis="y", visible=False)
    return _svg(figure, name)
