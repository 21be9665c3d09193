"""A small SVG plotting module: line/scatter charts (linear or log y) and bar charts, as strings.

nnlint's HTML report must be one self-contained file with no plotting dependency, so it draws its own
charts. Everything here is pure Python and returns markup; colors come from CSS classes (see
`CHART_CSS`), with presentation-attribute fallbacks, so the embedding page decides the palette (light,
dark, print) and a chart saved on its own still renders.

Every point and bar carries a `<title>`, which browsers show on hover; that is how a reader finds the
module behind a point without any JavaScript.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Optional, Sequence

# Geometry of the plotting area inside the viewBox: room on the left for y tick labels and the axis
# label, at the bottom for x ticks and the x label.
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 14
MARGIN_BOTTOM = 44
# Drawn when a series has too many points for markers to stay readable: the line alone carries it.
MAX_MARKERS = 400


@dataclass
class Point:
    x: float
    y: Optional[float]            # None: no value here (drawn as a hollow marker on the x axis)
    title: str = ""               # hover text
    mark: str = ""                # extra CSS class, e.g. "sev-error" to highlight this point


@dataclass
class Series:
    name: str
    points: list[Point]
    css_class: str = "series-0"   # series-0 or series-1 in CHART_CSS
    dashed: bool = False


@dataclass
class Reference:
    """A horizontal reference line: a threshold, a target value."""

    y: float
    label: str
    css_class: str = "ref"


@dataclass
class Bar:
    label: str                    # x tick label
    value: float
    title: str = ""
    error: Optional[float] = None  # half-length of a whisker drawn around the value (e.g. one std)
    mark: str = ""


@dataclass
class _Scale:
    lo: float
    hi: float
    pixel_lo: float               # pixel of lo (bottom for y)
    pixel_hi: float
    log: bool = False

    def __call__(self, v: float) -> float:
        if self.log:
            v, lo, hi = math.log10(v), math.log10(self.lo), math.log10(self.hi)
        else:
            lo, hi = self.lo, self.hi
        t = 0.5 if hi == lo else (v - lo) / (hi - lo)
        return self.pixel_lo + t * (self.pixel_hi - self.pixel_lo)


# ---------------------------------------------------------------- ticks and numbers

def _nice_step(lo: float, hi: float, max_ticks: int) -> float:
    """The 1, 2, 2.5 or 5 x 10^k step that splits [lo, hi] into at most about max_ticks - 1 parts."""
    raw = (hi - lo) / max(max_ticks - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)


def nice_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi], at most about `max_ticks`."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        return [lo]
    step = _nice_step(lo, hi, max_ticks)
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    # Multiples of the step, rounded: no float drift from repeated addition, and -0.0 shows as 0.
    return [round(k * step, 12) + 0.0 for k in range(first, last + 1)]


def nice_range(lo: float, hi: float, max_ticks: int = 6) -> tuple[float, float]:
    """Widen [lo, hi] outward to round numbers, so the axis starts and ends on a tick."""
    if hi == lo:
        pad = abs(lo) * 0.5 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step(lo, hi, max_ticks)
    return round(math.floor(lo / step + 1e-9) * step, 12), round(math.ceil(hi / step - 1e-9) * step, 12)


def log_range(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] widened to whole decades (both > 0)."""
    a, b = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    if a == b:   # lo == hi == a power of ten: centre it in two decades
        a, b = a - 1, b + 1
    return 10.0 ** a, 10.0 ** b


def log_ticks(lo: float, hi: float, max_ticks: int = 7) -> list[float]:
    """Powers of ten in [lo, hi]; every k-th decade when there are many; 2 and 5 added when few."""
    a, b = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
    decades = list(range(a, b + 1))
    stride = max(1, math.ceil(len(decades) / max_ticks))
    ticks = [10.0 ** d for d in decades if (d - a) % stride == 0]
    if len(decades) <= 2:
        extra = [m * 10.0 ** d for d in range(a - 1, b + 1) for m in (2, 5)]
        ticks = sorted(set(ticks + [v for v in extra if lo <= v <= hi]))
    return ticks


def format_number(v: float) -> str:
    """Short labels for ticks and hover text: 0, 0.5, 12, 1e-3, 2e+04 style for the very small/large."""
    if v != v:
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        mantissa, exponent = f"{v:.1e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


# ---------------------------------------------------------------- charts

@dataclass(frozen=True)
class _Box:
    """The plotting area inside the viewBox, in pixels."""

    width: int                    # of the whole chart
    height: int
    top: float = MARGIN_TOP

    @property
    def left(self) -> float:
        return MARGIN_LEFT

    @property
    def right(self) -> float:
        return self.width - MARGIN_RIGHT

    @property
    def bottom(self) -> float:
        return self.height - MARGIN_BOTTOM


# Room above the plotting area for a legend, so it never covers the data.
LEGEND_HEIGHT = 22


def line_chart(
    series: Sequence[Series],
    *,
    x_label: str = "",
    y_label: str = "",
    log_y: bool = False,
    y_range: Optional[tuple[float, float]] = None,
    references: Sequence[Reference] = (),
    x_tick_labels: Optional[dict[float, str]] = None,
    width: int = 640,
    height: int = 260,
    aria_label: str = "",
    standalone: bool = False,
) -> str:
    """Points joined by lines, one polyline per series; a point's `mark` class highlights it.

    On a log axis, values <= 0 are drawn as a downward triangle on the bottom edge and +inf as an
    upward triangle on the top edge (with their true value in the hover text), so nothing disappears.
    """
    legend = len(series) > 1
    box = _Box(width, height, MARGIN_TOP + (LEGEND_HEIGHT if legend else 0))
    values = [p.y for s in series for p in s.points if p.y is not None and math.isfinite(p.y)]
    values += [r.y for r in references]
    scale_y = _y_scale(values, log_y, y_range, box)
    xs = [p.x for s in series for p in s.points]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    pad = 0.5 if x_hi - x_lo < 20 else (x_hi - x_lo) * 0.02
    scale_x = _Scale(x_lo - pad, x_hi + pad, box.left, box.right)
    body: list[str] = [_frame(box)]
    body += _y_axis(scale_y, box)
    body += _x_axis(scale_x, box, x_lo, x_hi, x_tick_labels)
    body += _references(references, scale_y, box)
    for s in series:
        body += _series(s, scale_x, scale_y, box)
    body += _axis_labels(x_label, y_label, box)
    if legend:
        body += _legend(series, box)
    body += _clip_note(series, scale_y, box)
    return _svg(body, width, height, aria_label, standalone)


# Bars wider than this look like blocks, not bars (three channels of an RGB image).
MAX_BAR_WIDTH = 44
# Whiskers on bars thinner than this (hundreds of features) turn the chart into a hedge: leave them out,
# the hover text still has the std.
MIN_WHISKER_BAR = 4


def bar_chart(
    bars: Sequence[Bar],
    *,
    x_label: str = "",
    y_label: str = "",
    references: Sequence[Reference] = (),
    y_range: Optional[tuple[float, float]] = None,
    width: int = 640,
    height: int = 220,
    aria_label: str = "",
    standalone: bool = False,
) -> str:
    """Vertical bars from zero (negative values hang down), with optional whiskers (value +- error)."""
    box = _Box(width, height)
    n = max(len(bars), 1)
    scale_x = _Scale(-0.5, n - 0.5, box.left, box.right)
    bar_w = min(max((box.right - box.left) / n * 0.7, 1.0), MAX_BAR_WIDTH)
    whiskers = bar_w >= MIN_WHISKER_BAR
    values = [0.0] + [b.value for b in bars if math.isfinite(b.value)] + [r.y for r in references]
    for b in bars:
        if whiskers and b.error is not None and math.isfinite(b.value) and math.isfinite(b.error):
            values += [b.value - b.error, b.value + b.error]
    scale_y = _y_scale(values, False, y_range, box)
    zero = scale_y(0.0)
    body: list[str] = [_frame(box)]
    body += _y_axis(scale_y, box)
    labels = {float(i): b.label for i, b in enumerate(bars)}
    body += _x_axis(scale_x, box, 0, n - 1, labels)
    body.append('<g class="bars">')
    for i, b in enumerate(bars):
        cx = scale_x(i)
        v = b.value if math.isfinite(b.value) else (scale_y.hi if b.value > 0 else scale_y.lo)
        top = min(scale_y(v), zero)
        h = max(abs(scale_y(v) - zero), 0.5)
        whisker = ""
        if b.error is not None and math.isfinite(b.error) and math.isfinite(b.value) and whiskers:
            y1, y2 = scale_y(b.value - b.error), scale_y(b.value + b.error)
            cap = min(bar_w / 2, 6)
            whisker = (f'<path class="whisker" stroke="#555" fill="none" d="M{cx:.1f},{y1:.1f}V{y2:.1f}'
                       f'M{cx - cap:.1f},{y1:.1f}h{2 * cap:.1f}M{cx - cap:.1f},{y2:.1f}h{2 * cap:.1f}"/>')
        body.append(f'<g class="{_classes("bar", b.mark)}"><rect x="{cx - bar_w / 2:.1f}" y="{top:.1f}" '
                    f'width="{bar_w:.1f}" height="{h:.1f}" fill="#5a6372"/>{whisker}{_title(b.title)}</g>')
    body.append("</g>")
    if scale_y.lo < 0 < scale_y.hi:
        body.append(f'<line class="baseline" x1="{box.left}" x2="{box.right}" y1="{zero:.1f}" '
                    f'y2="{zero:.1f}" stroke="#666"/>')
    body += _references(references, scale_y, box)
    body += _axis_labels(x_label, y_label, box)
    return _svg(body, width, height, aria_label, standalone)


# ---------------------------------------------------------------- pieces

def _y_scale(values: list[float], log_y: bool, y_range, box: _Box) -> _Scale:
    if y_range is not None:
        return _Scale(y_range[0], y_range[1], box.bottom, box.top, log=log_y)
    if log_y:
        positive = [v for v in values if v > 0]
        lo, hi = (min(positive), max(positive)) if positive else (0.1, 10.0)
        lo, hi = log_range(lo, hi)
        return _Scale(lo, hi, box.bottom, box.top, log=True)
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    lo, hi = nice_range(lo, hi)
    return _Scale(lo, hi, box.bottom, box.top)


def _frame(box: _Box) -> str:
    return (f'<rect class="plot-area" x="{box.left}" y="{box.top}" width="{box.right - box.left}" '
            f'height="{box.bottom - box.top}" fill="none" stroke="#999"/>')


def _y_axis(scale: _Scale, box: _Box) -> list[str]:
    ticks = log_ticks(scale.lo, scale.hi) if scale.log else nice_ticks(scale.lo, scale.hi)
    out = ['<g class="axis y-axis">']
    for t in ticks:
        y = scale(t)
        out.append(f'<line class="grid" x1="{box.left}" x2="{box.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text class="tick" x="{box.left - 6}" y="{y + 4:.1f}" text-anchor="end">{format_number(t)}</text>')
    out.append("</g>")
    return out


def _x_axis(scale: _Scale, box: _Box, lo: float, hi: float, labels: Optional[dict[float, str]]) -> list[str]:
    y = box.bottom
    out = ['<g class="axis x-axis">']
    if labels:
        keys = sorted(labels)
        # Keep tick labels from overlapping: at most one per ~36 pixels.
        room = max(int((scale.pixel_hi - scale.pixel_lo) / 36), 1)
        stride = _nice_stride(math.ceil(len(keys) / room))
        ticks = [(k, labels[k]) for i, k in enumerate(keys) if i % stride == 0]
    elif hi > lo:
        ticks = [(t, format_number(t)) for t in nice_ticks(lo, hi, max_ticks=10) if t == int(t)]
    else:
        ticks = [(lo, format_number(lo))]
    for t, label in ticks:
        x = scale(t)
        out.append(f'<line class="tick-mark" x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 4}" stroke="#999"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{y + 16}" text-anchor="middle">{escape(label)}</text>')
    out.append("</g>")
    return out


def _nice_stride(n: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is >= n: labels land on round indices (0, 50, 100)."""
    magnitude = 1
    while True:
        for m in (1, 2, 5):
            if m * magnitude >= n:
                return m * magnitude
        magnitude *= 10


def _references(refs: Sequence[Reference], scale: _Scale, box: _Box) -> list[str]:
    out = []
    for r in refs:
        if scale.log and r.y <= 0:
            continue
        y = scale(r.y)
        out.append(f'<g class="{_classes("reference", r.css_class)}"><line x1="{box.left}" x2="{box.right}" '
                   f'y1="{y:.1f}" y2="{y:.1f}" stroke="#888" stroke-dasharray="4 3"/>'
                   f'<text class="ref-label" x="{box.right - 4}" y="{y - 4:.1f}" text-anchor="end">'
                   f'{escape(r.label)}</text></g>')
    return out


def _series(s: Series, sx: _Scale, sy: _Scale, box: _Box) -> list[str]:
    out = [f'<g class="{_classes("series", s.css_class)}">']
    # The line: broken at missing values (None, nan) so a gap reads as a gap.
    runs: list[list[str]] = [[]]
    for p in s.points:
        if p.y is None or p.y != p.y:
            runs.append([])
            continue
        runs[-1].append(f"{sx(p.x):.1f},{_plot_y(p.y, sy, box):.1f}")
    dash = ' stroke-dasharray="5 4"' if s.dashed else ""
    for run in runs:
        if len(run) > 1:
            out.append(f'<polyline class="line" fill="none" stroke="#5a6372" stroke-width="1.6"{dash} '
                       f'points="{" ".join(run)}"/>')
    plain_markers = len(s.points) <= MAX_MARKERS
    for p in s.points:
        if not plain_markers and not p.mark:
            continue
        x = sx(p.x)
        if p.y is None or p.y != p.y:
            shape = f'<circle class="missing" cx="{x:.1f}" cy="{box.bottom:.1f}" r="3.5" fill="none" stroke="#888"/>'
        elif (sy.log and p.y <= 0) or p.y < sy.lo:
            shape = _triangle(x, box.bottom, down=True)
        elif p.y > sy.hi:
            shape = _triangle(x, box.top, down=False)
        else:
            shape = f'<circle cx="{x:.1f}" cy="{sy(p.y):.1f}" r="{4.5 if p.mark else 3}" fill="#5a6372"/>'
        out.append(f'<g class="{_classes("point", p.mark)}">{shape}{_title(p.title)}</g>')
    out.append("</g>")
    return out


def _clip_note(series: Sequence[Series], sy: _Scale, box: _Box) -> list[str]:
    """Explain the edge markers when there are any: a point off a log axis is still a measurement."""
    ys = [p.y for s in series for p in s.points if p.y is not None and p.y == p.y]
    notes = []
    if any((sy.log and y <= 0) or y < sy.lo for y in ys):
        notes.append("\u25bc zero or below the axis" if sy.log else "\u25bc below the axis")
    if any(y > sy.hi for y in ys):
        notes.append("\u25b2 infinite or above the axis")
    if any(p.y is None or p.y != p.y for s in series for p in s.points):
        notes.append("\u25cb not measured")
    if not notes:
        return []
    return [f'<text class="clip-note" x="{box.right}" y="{box.top - 4}" text-anchor="end">'
            f'{escape("   ".join(notes))}</text>']


def _plot_y(v: float, sy: _Scale, box: _Box) -> float:
    if (sy.log and v <= 0) or v < sy.lo:
        return box.bottom
    if v > sy.hi:
        return box.top
    return sy(v)


def _triangle(x: float, y: float, down: bool) -> str:
    d = (f"M{x - 5:.1f},{y - 7:.1f}h10l-5,7z" if down else f"M{x - 5:.1f},{y + 7:.1f}h10l-5,-7z")
    return f'<path class="clipped" d="{d}" fill="#5a6372"/>'


def _axis_labels(x_label: str, y_label: str, box: _Box) -> list[str]:
    out = []
    if x_label:
        cx = (box.left + box.right) / 2
        out.append(f'<text class="axis-label" x="{cx:.1f}" y="{box.height - 8}" text-anchor="middle">'
                   f'{escape(x_label)}</text>')
    if y_label:
        cy = (box.top + box.bottom) / 2
        out.append(f'<text class="axis-label" transform="translate(14 {cy:.1f}) rotate(-90)" text-anchor="middle">'
                   f'{escape(y_label)}</text>')
    return out


def _legend(series: Sequence[Series], box: _Box) -> list[str]:
    out = ['<g class="legend">']
    x = box.left
    y = box.top - LEGEND_HEIGHT + 8
    for s in series:
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        out.append(f'<g class="{_classes("series", s.css_class)}"><line class="line" x1="{x}" x2="{x + 22}" '
                   f'y1="{y}" y2="{y}" stroke="#5a6372" stroke-width="2"{dash}/>'
                   f'<text class="legend-label" x="{x + 28}" y="{y + 4}">{escape(s.name)}</text></g>')
        x += 40 + 7 * len(s.name)
    out.append("</g>")
    return out


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>" if text else ""


def _classes(*names: str) -> str:
    return " ".join(n for n in names if n)


def _svg(body: list[str], width: int, height: int, aria_label: str, standalone: bool) -> str:
    style = f"<style>{CHART_CSS}</style>" if standalone else ""
    xmlns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    label = f' role="img" aria-label="{escape(aria_label)}"' if aria_label else ""
    return (f'<svg class="chart"{xmlns} viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'preserveAspectRatio="xMidYMid meet"{label}>{style}{"".join(body)}</svg>')


# The chart palette, as CSS custom properties with light defaults; a page overrides the variables for
# dark mode or print. Kept here so the classes the charts emit and the rules that style them live together.
CHART_CSS = """
svg.chart { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; overflow: visible; }
svg.chart .plot-area { stroke: var(--chart-frame, #b8bcc4); fill: var(--chart-bg, none); }
svg.chart .grid { stroke: var(--chart-grid, #e6e8ec); }
svg.chart .tick-mark { stroke: var(--chart-frame, #b8bcc4); }
svg.chart .tick, svg.chart .legend-label, svg.chart .ref-label { fill: var(--chart-text-muted, #5b6270); }
svg.chart .ref-label, svg.chart .clip-note { paint-order: stroke; stroke: var(--chart-bg-solid, #fff); stroke-width: 3px; stroke-linejoin: round; }
svg.chart .axis-label { fill: var(--chart-text, #2b2f36); font-weight: 600; }
svg.chart .reference line { stroke: var(--chart-ref, #8a909c); }
svg.chart .ref-warning line { stroke: var(--sev-warning, #b26a00); }
svg.chart .ref-warning .ref-label { fill: var(--sev-warning, #b26a00); }
svg.chart .ref-error line { stroke: var(--sev-error, #c62828); }
svg.chart .ref-error .ref-label { fill: var(--sev-error, #c62828); }
svg.chart .ref-target line { stroke: var(--sev-ok, #2e7d32); }
svg.chart .ref-target .ref-label { fill: var(--sev-ok, #2e7d32); }
svg.chart .series-0 .line { stroke: var(--series-0, #5a6372); }
svg.chart .series-0 .point circle, svg.chart .series-0 .clipped { fill: var(--series-0, #5a6372); }
svg.chart .series-1 .line { stroke: var(--series-1, #a7adb8); }
svg.chart .series-1 .point circle, svg.chart .series-1 .clipped { fill: var(--series-1, #a7adb8); }
svg.chart .point .missing { fill: none; stroke: var(--chart-ref, #8a909c); }
svg.chart .point { cursor: help; }
svg.chart .point:hover circle { r: 6px; }
svg.chart .bar rect { fill: var(--series-0, #5a6372); }
svg.chart .bar:hover rect { opacity: 0.8; }
svg.chart .whisker { stroke: var(--chart-text, #2b2f36); }
svg.chart .point.sev-error circle, svg.chart .point.sev-error .clipped, svg.chart .bar.sev-error rect { fill: var(--sev-error, #c62828); }
svg.chart .point.sev-warning circle, svg.chart .point.sev-warning .clipped, svg.chart .bar.sev-warning rect { fill: var(--sev-warning, #b26a00); }
svg.chart .point.sev-info circle, svg.chart .point.sev-info .clipped, svg.chart .bar.sev-info rect { fill: var(--sev-info, #1565c0); }
svg.chart .point[class*="sev-"] circle { stroke: var(--chart-bg-solid, #fff); stroke-width: 1.2; }
svg.chart .clip-note { fill: var(--chart-text-muted, #5b6270); font-size: 10px; }
svg.chart .baseline { stroke: var(--chart-text-muted, #5b6270); }
"""
