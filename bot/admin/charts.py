"""Bar charts as inline SVG, rendered on the server: the admin pages load no script and nothing
from a CDN, and their Content-Security-Policy allows neither.

Pure functions from numbers to markup. Every label is escaped here. Each chart is an image
(`role="img"`) named by its `<title>` and described by a `<desc>` that summarises the data in
words, and every bar carries its own `<title>` so pointing at it shows the exact value. Styling
is by presentation attributes (`fill`, `font-size`), never `style=`, which the policy forbids.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

# Distinguishable for the common colour-vision deficiencies (Okabe-Ito), darkened for contrast.
PALETTE = ("#0b6fb0", "#d55e00", "#009e73", "#a0428a", "#b58900", "#56b4e9", "#6e7781")
AXIS = "#57606a"
GRID = "#d8dee4"
X_LABEL_SPACING = 52  # SVG units per day label at least: fewer labels than bars when crowded

Format = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Series:
    """One named row of values, one per category; several series stack in each bar."""

    name: str
    values: Sequence[float]


@dataclass(frozen=True, slots=True)
class Box:
    """The chart's size in SVG units and the margins around its plotting area."""

    width: int = 720
    height: int = 220
    left: int = 64
    right: int = 12
    top: int = 12
    bottom: int = 44


def plain(value: float) -> str:
    """A count: 1234567 -> "1,234,567"."""
    return f"{value:,.0f}"


def dollars(value: float) -> str:
    """Money with as many decimals as small amounts need: $0.0042, $1.25, $1,204."""
    if value == 0:
        return "$0"
    if abs(value) < 0.01:
        return f"${value:.4f}"
    if abs(value) < 1000:
        return f"${value:,.2f}"
    return f"${value:,.0f}"


def compact(value: float) -> str:
    """An axis label: 1500 -> "1.5k", 2000000 -> "2M"."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def nice_ceiling(value: float, steps: int = 4, *, whole: bool = False) -> tuple[float, float]:
    """An axis top at or above `value` and its tick step, both round numbers (1, 2, 2.5 or 5
    times a power of ten), so gridlines fall on values a reader can name; `whole` keeps the
    ticks on whole numbers (for counts). An empty chart still gets an axis from 0 to 1."""
    if not math.isfinite(value) or value <= 0:
        return (1.0, 1.0) if whole else (1.0, 1.0 / steps)
    raw = value / steps
    if whole:
        raw = max(raw, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    factors = (1, 2, 5, 10) if whole and power < 10 else (1, 2, 2.5, 5, 10)
    step = next(m * power for m in factors if m * power >= raw - 1e-12)
    return float(step * math.ceil(value / step - 1e-9)), float(step)


def bar_chart(*, title: str, labels: Sequence[str], series: Sequence[Series], y_label: str,
              x_label: str, value_format: Format = plain, axis_format: Format = compact,
              box: Box = Box(), noun: str = "bar", whole: bool = False,
              summary: str = "") -> str:
    """Vertical bars, one per label, the series stacked bottom-up in palette order. `noun`
    names what a bar is in the description ("day"); `whole` is for counts (whole-number
    ticks); `summary` replaces the generated description (totals, highest bar)."""
    _check(labels, series)
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    top, step = nice_ceiling(max(totals, default=0.0), whole=whole)
    plot_w = box.width - box.left - box.right
    plot_h = box.height - box.top - box.bottom
    slot = plot_w / max(len(labels), 1)
    bar_w = max(1.0, slot * 0.72)
    parts = [_y_axis(box, top, step, axis_format, y_label)]
    every = max(1, math.ceil(len(labels) / max(1, plot_w // X_LABEL_SPACING)))
    for i, label in enumerate(labels):
        x = box.left + i * slot + (slot - bar_w) / 2
        base = float(box.top + plot_h)
        for colour, one in zip(itertools.cycle(PALETTE), series, strict=False):
            value = one.values[i]
            if value <= 0:
                continue
            h = value / top * plot_h
            base -= h
            name = f"{label} · {one.name}: " if len(series) > 1 else f"{label}: "
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                         f'height="{max(h, 0.5):.1f}" fill="{colour}">'
                         f"<title>{escape(name + value_format(value))}</title></rect>")
        if i % every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{box.top + plot_h + 16}" '
                         f'text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<text x="{box.left + plot_w / 2:.1f}" y="{box.height - 6}" '
                 f'text-anchor="middle" fill="{AXIS}">{escape(x_label)}</text>')
    description = summary or describe_bars(title, labels, totals, value_format, noun)
    return _svg(box, title, description, parts, series)


def hbar_chart(*, title: str, labels: Sequence[str], series: Sequence[Series], x_label: str,
               value_format: Format = plain, axis_format: Format = compact,
               width: int = 720, noun: str = "bar", summary: str = "") -> str:
    """Horizontal bars, one row per label (for categories with long names, like models)."""
    _check(labels, series)
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    longest = max((len(label) for label in labels), default=4)
    box = Box(width=width, height=24 + 28 * max(len(labels), 1) + 36,
              left=min(16 + 7 * longest, width // 3), right=24, top=12, bottom=36)
    top, step = nice_ceiling(max(totals, default=0.0))
    plot_w = box.width - box.left - box.right
    plot_h = box.height - box.top - box.bottom
    row = plot_h / max(len(labels), 1)
    parts: list[str] = []
    for k in range(round(top / step) + 1):
        x = box.left + k * step / top * plot_w
        parts.append(f'<line x1="{x:.1f}" y1="{box.top}" x2="{x:.1f}" '
                     f'y2="{box.top + plot_h}" stroke="{GRID}"/>'
                     f'<text x="{x:.1f}" y="{box.top + plot_h + 14}" text-anchor="middle" '
                     f'fill="{AXIS}">{escape(axis_format(k * step))}</text>')
    for i, label in enumerate(labels):
        y = box.top + i * row + row * 0.18
        x = float(box.left)
        parts.append(f'<text x="{box.left - 8}" y="{y + row * 0.4:.1f}" text-anchor="end" '
                     f'dominant-baseline="middle">{escape(label)}</text>')
        for colour, one in zip(itertools.cycle(PALETTE), series, strict=False):
            value = one.values[i]
            if value <= 0:
                continue
            w = value / top * plot_w
            name = f"{label} · {one.name}: " if len(series) > 1 else f"{label}: "
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.5):.1f}" '
                         f'height="{row * 0.64:.1f}" fill="{colour}">'
                         f"<title>{escape(name + value_format(value))}</title></rect>")
            x += w
    parts.append(f'<line x1="{box.left}" y1="{box.top}" x2="{box.left}" '
                 f'y2="{box.top + plot_h}" stroke="{AXIS}"/>')
    parts.append(f'<text x="{box.left + plot_w / 2:.1f}" y="{box.height - 6}" '
                 f'text-anchor="middle" fill="{AXIS}">{escape(x_label)}</text>')
    description = summary or describe_bars(title, labels, totals, value_format, noun)
    return _svg(box, title, description, parts, series)


def describe_bars(title: str, labels: Sequence[str], totals: Sequence[float],
                  value_format: Format, noun: str = "bar") -> str:
    """The chart in one or two sentences, for screen readers and the caption under it."""
    if not labels or not any(totals):
        return f"{title}: nothing in this period."
    best = max(range(len(totals)), key=lambda i: totals[i])
    return (f"{title}: {value_format(sum(totals))} in total over {len(labels)} "
            f"{noun if len(labels) == 1 else noun + 's'}; highest {value_format(totals[best])} "
            f"({labels[best]}).")


def _check(labels: Sequence[str], series: Sequence[Series]) -> None:
    if not series:
        raise ValueError("a chart needs at least one series")
    for one in series:
        if len(one.values) != len(labels):
            raise ValueError(f"series {one.name!r} has {len(one.values)} values for "
                             f"{len(labels)} labels")
        if any(not math.isfinite(v) or v < 0 for v in one.values):
            raise ValueError(f"series {one.name!r} has a negative or non-finite value")


def _y_axis(box: Box, top: float, step: float, axis_format: Format, y_label: str) -> str:
    plot_h = box.height - box.top - box.bottom
    lines = []
    for k in range(round(top / step) + 1):
        y = box.top + plot_h - k * step / top * plot_h
        lines.append(f'<line x1="{box.left}" y1="{y:.1f}" x2="{box.width - box.right}" '
                     f'y2="{y:.1f}" stroke="{AXIS if k == 0 else GRID}"/>'
                     f'<text x="{box.left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'fill="{AXIS}">{escape(axis_format(k * step))}</text>')
    middle = box.top + plot_h / 2
    lines.append(f'<text x="14" y="{middle:.1f}" text-anchor="middle" fill="{AXIS}" '
                 f'transform="rotate(-90 14 {middle:.1f})">{escape(y_label)}</text>')
    return "".join(lines)


def _svg(box: Box, title: str, description: str, parts: list[str],
         series: Sequence[Series]) -> str:
    n = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "chart"  # ids for aria
    legend = ""
    if len(series) > 1:
        keys = "".join(f'<span class="key"><svg width="10" height="10" aria-hidden="true">'
                       f'<rect width="10" height="10" rx="2" fill="{colour}"/></svg>'
                       f"{escape(one.name)}</span>"
                       for colour, one in zip(itertools.cycle(PALETTE), series, strict=False))
        legend = f'<div class="legend">{keys}</div>'
    return (f'<figure class="chart">'
            f'<svg viewBox="0 0 {box.width} {box.height}" width="100%" role="img" '
            f'aria-labelledby="{n}-title {n}-desc" font-family="system-ui, sans-serif" '
            f'font-size="11" fill="#1f2328" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="{n}-title">{escape(title)}</title>'
            f'<desc id="{n}-desc">{escape(description)}</desc>'
            f'{"".join(parts)}</svg>{legend}'
            f"<figcaption>{escape(description)}</figcaption></figure>")
