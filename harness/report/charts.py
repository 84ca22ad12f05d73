"""SVG charts for the self-contained reports: inline, no script, no plotting library.

Every series has its own colour, dash pattern and marker shape, so a series that lies on another stays
visible; a gate is drawn as a dashed grey line with its name, and what a gate allows a series as a band in its colour.
Legends name what was measured; the check's id is the legend entry's tooltip.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22", "#393b79", "#ad494a")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
MARKERS = ("circle", "square", "triangle", "diamond")
GATE_COLOUR = "#666"
WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 28, 44  # LEFT: a 7-character tick label (0.00200) beside the axis name
CHAR_WIDTH = 7.0  # px: an 11 px label's digit in DejaVu Sans (0.64 em), its widest usual character


@dataclass(frozen=True)
class Band:
    """What a gate allows one series: values from ``low`` to ``high`` over x from ``x0`` to ``x1``."""

    x0: float
    x1: float
    low: float
    high: float


@dataclass(frozen=True)
class Series:
    label: str  # what was measured, for a reader
    points: Sequence[tuple[float, float]]
    tooltip: str = ""  # the check's id, on the legend entry
    band: Band | None = None  # drawn in the series' colour


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(math.ceil((high - first) / step) + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    """Powers of two covering [low, high] (prompt lengths are chosen as powers of two), at most about ten."""
    first, last = math.floor(math.log2(max(low, 1e-9))), math.ceil(math.log2(max(high, low * 2, 1e-9)))
    step = max(1, math.ceil((last - first) / 10))
    exponents = list(range(first, last + 1, step))
    if exponents[-1] < last:
        exponents.append(exponents[-1] + step)
    return [2.0 ** e for e in exponents]


def _tick_labels(ticks: Sequence[float]) -> list[str]:
    """Tick labels with as many decimals as their spacing needs (491.45 and 491.5, not 491.5 twice)."""
    step = min((b - a for a, b in itertools.pairwise(ticks)), default=1.0) or 1.0
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return [f"{tick:.{decimals}f}" if abs(tick) < 1e6 else fmt(tick) for tick in ticks]


def fmt(value: float) -> str:
    return f"{value:.4g}"


def _marker(shape: str, x: float, y: float, colour: str, tooltip: str) -> str:
    title = f"<title>{escape(tooltip)}</title>"
    if shape == "square":
        return f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" fill="{colour}">{title}</rect>'
    if shape == "triangle":
        return f'<polygon points="{x:.1f},{y - 4:.1f} {x - 4:.1f},{y + 3:.1f} {x + 4:.1f},{y + 3:.1f}" ' \
               f'fill="{colour}">{title}</polygon>'
    if shape == "diamond":
        return f'<polygon points="{x:.1f},{y - 4:.1f} {x - 4:.1f},{y:.1f} {x:.1f},{y + 4:.1f} {x + 4:.1f},{y:.1f}" ' \
               f'fill="{colour}">{title}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">{title}</circle>'


def _x_label_at(x: float, text: str) -> float:
    """Where a label centred on ``x`` goes so that all of it lies inside the chart (the last run's date, say)."""
    half = len(text) * CHAR_WIDTH / 2
    return max(half + 2, min(x, WIDTH - half - 2))


def _band_style(colour: str) -> str:
    return f'fill="{colour}" fill-opacity="0.2" stroke="{colour}" stroke-opacity="0.5" stroke-dasharray="2 2"'


def _y_range(ys: Sequence[float], from_zero: bool, min_span: float) -> tuple[float, float]:
    """The y values to cover: the data, from 0 when ``from_zero``, at least ``min_span`` wide around its middle."""
    low, high = min(0.0, *ys) if from_zero else min(ys), max(ys)
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    return low, high


def line_chart(chart_id: str, title: str, x_label: str, y_label: str, series: Sequence[Series], *,
               x_names: Mapping[float, str] | None = None, from_zero: bool = True, log_x: bool = False,
               gate: Series | None = None, links: Mapping[float, str] | None = None,
               marked: Mapping[float, str] | None = None, label_every: int = 1, note: str = "",
               min_span: float = 0.0, band_label: str = "") -> str:
    """An SVG line chart; each point a marker with a tooltip. ``from_zero`` False fits the y axis to the data (a
    drift of a few MB on a plateau of hundreds), ``min_span`` keeps that axis at least so wide (so noise does not
    fill it); ``log_x`` spaces powers of two evenly; ``gate`` is drawn as a dashed limit line, a series' ``band``
    as a shaded area that ``band_label`` explains in the legend; ``links`` makes the x labels links; ``marked`` x
    values get a red line titled with their word (a run that failed or regressed); an axis of values that are all
    at least 0 stays at or above 0; ``label_every`` labels every n-th named x value counting back from the last
    (the rest would overlap)."""
    bands = [s.band for s in series if s.band is not None]
    points = [p for s in series for p in s.points] + list(gate.points if gate else ())
    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + [y for band in bands for y in (band.low, band.high)]
    if log_x:
        x_ticks = _log_ticks(min(xs), max(xs))
    elif x_names:
        x_ticks = sorted(x_names)[::-label_every][::-1]  # the last keeps its label; each point its tooltip
    else:
        x_ticks = _ticks(min(xs), max(xs))
    y_ticks = _ticks(*_y_range(ys, from_zero, min_span))
    if min(ys) >= 0 and min(y_ticks) < 0:  # a rate or a time is never negative: neither is its axis
        y_ticks = [0.0, *(tick for tick in y_ticks if tick > 0)]
    x0, x1, y0, y1 = min(*x_ticks, *xs), max(*x_ticks, *xs), min(y_ticks), max(y_ticks)
    scale = (lambda v: math.log2(v)) if log_x else (lambda v: v)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    legend_rows = len(series) + (1 if gate else 0) + (1 if bands and band_label else 0)

    def sx(x: float) -> float:
        return LEFT + (scale(x) - scale(x0)) / ((scale(x1) - scale(x0)) or 1) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT + 18 * legend_rows}" '
             f'width="{WIDTH}" role="img" aria-label="{escape(title)}" data-series="{len(series)}">']
    for y, text in zip(y_ticks, _tick_labels(y_ticks), strict=True):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>'
                     f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{text}</text>')
    left_edge = math.inf  # of the label to the right: labels are placed from the last, which keeps its own
    for x in reversed(x_ticks):
        name = x_names.get(x, fmt(x)) if x_names else fmt(x)
        at, half = _x_label_at(sx(x), name), len(name) * CHAR_WIDTH / 2
        if at + half > left_edge - 4:
            continue  # it would overlap its neighbour (the last, pulled inside the chart); its tooltip names it
        left_edge = at - half
        label = f'<text x="{at:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{escape(name)}</text>'
        if links and x in links:
            label = f'<a href="{escape(links[x])}">{label}</a>'
        parts.append(label)
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
                 f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>'
                 f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}'
                 f'{" (log scale)" if log_x else ""}</text>'
                 f'<text x="12" y="{TOP + plot_h / 2}" transform="rotate(-90 12 {TOP + plot_h / 2})" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for index, line in enumerate(series):
        if (band := line.band) is not None:
            parts.append(f'<rect class="band" data-label="{escape(line.label)}" x="{sx(band.x0):.1f}" '
                         f'y="{sy(band.high):.1f}" '
                         f'width="{sx(band.x1) - sx(band.x0):.1f}" height="{sy(band.low) - sy(band.high):.1f}" '
                         f'{_band_style(PALETTE[index % len(PALETTE)])}><title>{escape(line.label)}: '
                         f'{fmt(band.low)} to {fmt(band.high)}</title></rect>')
    if gate is not None:
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(gate.points))
        parts.append(f'<polyline class="gate" data-label="{escape(gate.label)}" fill="none" stroke="{GATE_COLOUR}" '
                     f'stroke-width="1.5" stroke-dasharray="4 4" points="{path}"/>')
    for x, word in (marked or {}).items():
        parts.append(f'<line class="{escape(word)}" x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
                     f'stroke="#b00020" stroke-width="1" stroke-dasharray="2 2"><title>{escape(word)}</title></line>')
    for index, line in enumerate(series):
        colour, dash = PALETTE[index % len(PALETTE)], DASHES[index % len(DASHES)]
        shape = MARKERS[index % len(MARKERS)]
        ordered = sorted(line.points)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ordered)
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline class="series" data-label="{escape(line.label)}" fill="none" stroke="{colour}" '
                     f'stroke-width="2"{dashes} points="{path}"/>')
        parts += [_marker(shape, sx(x), sy(y), colour, f"{line.label}: {x_names.get(x, fmt(x)) if x_names else fmt(x)}"
                          f", {fmt(y)}") for x, y in ordered]
        legend_y = HEIGHT + 18 * index + 4
        tooltip = f"<title>{escape(line.tooltip)}</title>" if line.tooltip else ""
        parts.append(f'<g class="legend"><line x1="{LEFT}" x2="{LEFT + 24}" y1="{legend_y + 6}" y2="{legend_y + 6}" '
                     f'stroke="{colour}" stroke-width="2"{dashes}/>'
                     f'{_marker(shape, LEFT + 12, legend_y + 6, colour, line.tooltip or line.label)}'
                     f'<text x="{LEFT + 30}" y="{legend_y + 10}">{escape(line.label)}{tooltip}</text></g>')
    legend_y = HEIGHT + 18 * len(series) + 4
    if gate is not None:
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + 24}" y1="{legend_y + 6}" y2="{legend_y + 6}" '
                     f'stroke="{GATE_COLOUR}" stroke-dasharray="4 4"/><text x="{LEFT + 30}" y="{legend_y + 10}">'
                     f'{escape(gate.label)}</text>')
        legend_y += 18
    if bands and band_label:
        parts.append(f'<rect x="{LEFT}" y="{legend_y}" width="24" height="12" {_band_style(GATE_COLOUR)}/>'
                     f'<text x="{LEFT + 30}" y="{legend_y + 10}">{escape(band_label)}</text>')
    parts.append("</svg>")
    return figure(chart_id, title, "".join(parts), note)


def bar_chart(chart_id: str, title: str, y_label: str, bars: Sequence[tuple[str, float, bool]],
              note: str = "", gate: tuple[str, float] | None = None) -> str:
    """An SVG bar chart of (name, value, passed) bars; bars that did not pass are red; ``gate`` (its label and
    limit) is drawn as a dashed line across the bars."""
    y_ticks = _ticks(0.0, max(*(v for _, v, _ in bars), gate[1] if gate else 0.0))
    top = max(y_ticks)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(bars)

    def sy(y: float) -> float:
        return TOP + plot_h - y / top * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" role="img" '
             f'aria-label="{escape(title)}" data-bars="{len(bars)}">']
    for y, text in zip(y_ticks, _tick_labels(y_ticks), strict=True):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>'
                     f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{text}</text>')
    for index, (name, value, passed) in enumerate(bars):
        height = value / top * plot_h
        x = LEFT + index * slot + slot * 0.2
        colour = PALETTE[0] if passed else PALETTE[1]
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{slot * 0.6:.1f}" '
                     f'height="{height:.1f}" fill="{colour}"><title>{escape(name)}: {fmt(value)}'
                     f'{"" if passed else " (did not pass)"}</title></rect>')
        if len(bars) <= 12:
            parts.append(f'<text x="{_x_label_at(x + slot * 0.3, name):.1f}" y="{TOP + plot_h + 16}" '
                         f'text-anchor="middle">{escape(name)}</text><text x="{x + slot * 0.3:.1f}" '
                         f'y="{TOP + plot_h - height - 4:.1f}" text-anchor="middle">{fmt(value)}</text>')
    if gate is not None:
        label, limit = gate
        parts.append(f'<line class="gate" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(limit):.1f}" y2="{sy(limit):.1f}" '
                     f'stroke="{GATE_COLOUR}" stroke-width="1.5" stroke-dasharray="4 4"><title>{escape(label)}'
                     f'</title></line><text x="{WIDTH - RIGHT}" y="{sy(limit) - 4:.1f}" text-anchor="end">'
                     f'{escape(label)}</text>')
    if not all(passed for _, _, passed in bars):
        parts.append(f'<text x="{WIDTH - RIGHT}" y="14" text-anchor="end" fill="{PALETTE[1]}">red: did not pass '
                     "its gates</text>")
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
                 f'<text x="12" y="{TOP + plot_h / 2}" transform="rotate(-90 12 {TOP + plot_h / 2})" '
                 f'text-anchor="middle">{escape(y_label)}</text></svg>')
    return figure(chart_id, title, "".join(parts), note)


def figure(chart_id: str, title: str, svg: str, note: str = "") -> str:
    caption = f"{escape(title)}" + (f'<span class="note">{escape(note)}</span>' if note else "")
    return f'<figure class="plot" id="{escape(chart_id)}"><figcaption>{caption}</figcaption>{svg}</figure>'
