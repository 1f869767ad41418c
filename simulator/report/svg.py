"""Charts as inline SVG text: line (and step) charts, stacked histogram panels, heatmaps, bar charts.

No plotting library: each function returns one ``<svg>`` string with axes, ticks, labels and a legend, every piece
of text escaped, so the HTML report stays a single self-contained file and notebooks show the same pictures
(:class:`Figure` has ``_repr_svg_``/``_repr_html_``).

Examples
--------
>>> svg = line_chart([Series("random", [1, 10, 100], [0.1, 0.5, 0.9])], x_label="queries", y_label="evaded",
...                  log_x=True)
>>> svg.startswith("<svg") and "random" in svg and "</svg>" in svg
True
"""
from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac")
FONT = "-apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
INK, MUTED, GRID, AXIS = "#1f2937", "#6b7280", "#e5e7eb", "#9ca3af"
SVG_NS = "http://www.w3.org/2000/svg"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def color_for(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def pct(v: float) -> str:
    return f"{v:.0%}"


def num(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 10_000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


class Figure:
    """An SVG picture that Jupyter displays inline; ``str()`` gives the SVG text, :meth:`save` writes it."""

    def __init__(self, svg: str, title: str = ""):
        self.svg = svg
        self.title = title

    @property
    def standalone(self) -> str:
        """The SVG with its XML namespace, as a stand-alone ``.svg`` file or an ``image/svg+xml`` display needs."""
        return self.svg.replace("<svg ", '<svg xmlns="' + SVG_NS + '" ', 1) if "xmlns=" not in self.svg else self.svg

    def _repr_svg_(self) -> str:
        return self.standalone

    def _repr_html_(self) -> str:
        return f'<div class="fraudsim-figure">{self.svg}</div>'

    def __str__(self) -> str:
        return self.svg

    def __repr__(self) -> str:
        return f"<Figure {self.title!r}: {len(self.svg):,} characters of SVG>"

    def save(self, path: str | Path) -> Path:
        """Write ``.svg`` (standalone, with the XML namespace) or ``.html`` (a minimal page around it)."""
        path = Path(path)
        if path.suffix.lower() in (".html", ".htm"):
            path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(self.title)}</title></head>"
                            f"<body>{self.svg}</body></html>", encoding="utf-8")
        else:
            path.write_text(self.standalone, encoding="utf-8")
        return path


@dataclass
class Series:
    name: str
    x: Sequence[float]
    y: Sequence[float]
    color: str = PALETTE[0]
    dash: str | None = None  # an SVG stroke-dasharray, e.g. "6 4"
    step: bool = False  # draw as a step function (value holds until the next x)
    markers: bool = False
    width: float = 2.0


@dataclass
class _Frame:
    """Plot area geometry and the value-to-pixel maps."""

    left: float
    top: float
    width: float
    height: float
    x0: float
    x1: float
    y0: float
    y1: float
    log_x: bool = False
    extra: dict = field(default_factory=dict)

    def fx(self, v: float) -> float:
        if self.log_x:
            a, b, v = math.log10(self.x0), math.log10(self.x1), math.log10(max(v, self.x0))
        else:
            a, b = self.x0, self.x1
        return self.left + (v - a) / ((b - a) or 1.0) * self.width

    def fy(self, v: float) -> float:
        return self.top + self.height - (v - self.y0) / ((self.y1 - self.y0) or 1.0) * self.height


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (about ``n`` of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks, v = [], start
    while True:
        ticks.append(round(v, 12))
        if v >= hi - step * 1e-9:
            return ticks
        v += step


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[float]]:
    """Labelled and minor ticks for a log axis: powers of ten, plus 2 and 5 when the axis spans few decades."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    decades = b - a
    major, minor = [], []
    for e in range(a, b + 1):
        for m in range(1, 10):
            v = m * 10 ** e
            if v < lo * 0.999 or v > hi * 1.001:
                continue
            if m == 1 or (decades <= 3 and m in (2, 5)):
                major.append(v)
            else:
                minor.append(v)
    return major, minor


def _text(x: float, y: float, s: str, *, size: int = 11, anchor: str = "middle", color: str = MUTED,
          weight: str = "normal", rotate: float | None = None, baseline: str | None = None) -> str:
    extra = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
    base = f' dominant-baseline="{baseline}"' if baseline else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}" '
            f'font-weight="{weight}"{base}{extra}>{esc(s)}</text>')


def _open(width: int, height: int, title: str | None) -> list[str]:
    label = esc(title or "chart")
    # no xmlns here: inline SVG in HTML needs none (so the report holds no URL at all); Figure adds it for files
    return [(f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{label}" style="max-width:100%;height:auto;font-family:{esc(FONT)}">'),
            f"<title>{label}</title>", f'<rect width="{width}" height="{height}" fill="#ffffff"/>']


def _legend(items: list[tuple[str, str, str | None, str]], x: float, y: float, max_width: float) -> tuple[list[str], float]:
    """Horizontal legend that wraps; items are (label, color, dash, kind 'line'|'box'). Returns (svg, height)."""
    out, cx, cy = [], x, y
    for label, color, dash, kind in items:
        w = 30 + 6.4 * len(label) + 18
        if cx + w > x + max_width and cx > x:
            cx, cy = x, cy + 18
        if kind == "box":
            out.append(f'<rect x="{cx:.1f}" y="{cy - 5:.1f}" width="14" height="10" rx="2" fill="{color}"/>')
        else:
            d = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{cx + 24:.1f}" y2="{cy:.1f}" stroke="{color}" '
                       f'stroke-width="2.5"{d}/>')
        out.append(_text(cx + 30, cy + 4, label, anchor="start", color=INK, size=12))
        cx += w
    return out, (cy - y) + 18


def _axes(fr: _Frame, *, x_ticks: list[float], x_minor: Sequence[float] = (), y_ticks: list[float],
          x_fmt: Callable[[float], str], y_fmt: Callable[[float], str], x_label: str, y_label: str) -> list[str]:
    out = []
    for t in y_ticks:
        y = fr.fy(t)
        out.append(f'<line x1="{fr.left:.1f}" y1="{y:.1f}" x2="{fr.left + fr.width:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(fr.left - 8, y + 4, y_fmt(t), anchor="end"))
    for t in x_minor:
        x = fr.fx(t)
        out.append(f'<line x1="{x:.1f}" y1="{fr.top:.1f}" x2="{x:.1f}" y2="{fr.top + fr.height:.1f}" stroke="{GRID}" '
                   f'stroke-opacity="0.5"/>')
    for t in x_ticks:
        x = fr.fx(t)
        out.append(f'<line x1="{x:.1f}" y1="{fr.top:.1f}" x2="{x:.1f}" y2="{fr.top + fr.height:.1f}" stroke="{GRID}"/>')
        out.append(f'<line x1="{x:.1f}" y1="{fr.top + fr.height:.1f}" x2="{x:.1f}" y2="{fr.top + fr.height + 4:.1f}" '
                   f'stroke="{AXIS}"/>')
        out.append(_text(x, fr.top + fr.height + 17, x_fmt(t)))
    bottom = fr.top + fr.height
    out.append(f'<line x1="{fr.left:.1f}" y1="{bottom:.1f}" x2="{fr.left + fr.width:.1f}" y2="{bottom:.1f}" stroke="{AXIS}"/>')
    out.append(f'<line x1="{fr.left:.1f}" y1="{fr.top:.1f}" x2="{fr.left:.1f}" y2="{bottom:.1f}" stroke="{AXIS}"/>')
    out.append(_text(fr.left + fr.width / 2, bottom + 36, x_label, size=12, color=INK))
    out.append(_text(fr.left - 44, fr.top + fr.height / 2, y_label, size=12, color=INK, rotate=-90))
    return out


def _path(fr: _Frame, s: Series) -> str:
    pts = [(float(x), float(y)) for x, y in zip(s.x, s.y) if y is not None and x is not None
           and math.isfinite(float(y)) and math.isfinite(float(x)) and (not fr.log_x or float(x) > 0)]
    if not pts:
        return ""
    pts.sort()
    d = [f"M{fr.fx(pts[0][0]):.1f},{fr.fy(pts[0][1]):.1f}"]
    for (px, py), (x, y) in zip(pts, pts[1:]):
        if s.step:
            d.append(f"H{fr.fx(x):.1f}V{fr.fy(y):.1f}")
        else:
            d.append(f"L{fr.fx(x):.1f},{fr.fy(y):.1f}")
    if s.step and fr.fx(pts[-1][0]) < fr.left + fr.width - 0.5 and fr.extra.get("extend_steps"):
        d.append(f"H{fr.left + fr.width:.1f}")
    dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
    out = [(f'<path d="{"".join(d)}" fill="none" stroke="{s.color}" stroke-width="{s.width}" '
            f'stroke-linejoin="round"{dash}><title>{esc(s.name)}</title></path>')]
    if s.markers:
        for x, y in pts:
            out.append(f'<circle cx="{fr.fx(x):.1f}" cy="{fr.fy(y):.1f}" r="3.5" fill="#fff" stroke="{s.color}" '
                       f'stroke-width="2"><title>{esc(s.name)}: {esc(num(x))} → {esc(num(y))}</title></circle>')
    return "".join(out)


def line_chart(series: Sequence[Series], *, x_label: str, y_label: str, title: str | None = None,
               log_x: bool = False, x_range: tuple[float, float] | None = None,
               y_range: tuple[float, float] | None = None, x_fmt: Callable[[float], str] = num,
               y_fmt: Callable[[float], str] = num, width: int = 760, height: int = 380,
               vlines: Sequence[tuple[float, str]] = (), extend_steps: bool = True, note: str | None = None) -> str:
    """A line (or step) chart with a legend above the plot; ``vlines`` mark x positions with a label."""
    xs = [float(x) for s in series for x in s.x if x is not None and (not log_x or float(x) > 0)]
    ys = [float(y) for s in series for y in s.y if y is not None and math.isfinite(float(y))]
    if x_range is None:
        x_range = (min(xs), max(xs)) if xs else (1.0, 10.0)
    if x_range[0] == x_range[1]:
        x_range = (x_range[0] / 2 if log_x else x_range[0] - 1, x_range[1] * 2 if log_x else x_range[1] + 1)
    if y_range is None:
        lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        ticks = nice_ticks(min(0.0, lo), hi if hi > lo else lo + 1)
        y_range = (ticks[0], ticks[-1])
    y_ticks = nice_ticks(*y_range)
    out = _open(width, height, title)
    top: float = 12
    if title:
        out.append(_text(16, 22, title, size=14, anchor="start", color=INK, weight="600"))
        top = 36
    legend_items = [(s.name, s.color, s.dash, "line") for s in series]
    leg, leg_h = _legend(legend_items, 64, top + 6, width - 80)
    out += leg
    top += leg_h + 8
    bottom_pad = 52 + (16 if note else 0)
    fr = _Frame(left=64, top=top, width=width - 64 - 24, height=height - top - bottom_pad, x0=x_range[0], x1=x_range[1],
                y0=y_ticks[0], y1=y_ticks[-1], log_x=log_x, extra={"extend_steps": extend_steps})
    if log_x:
        major, minor = log_ticks(*x_range)
    else:
        major, minor = [t for t in nice_ticks(*x_range, n=8) if x_range[0] - 1e-9 <= t <= x_range[1] + 1e-9], []
    out += _axes(fr, x_ticks=major, x_minor=minor, y_ticks=y_ticks, x_fmt=x_fmt, y_fmt=y_fmt, x_label=x_label,
                 y_label=y_label)
    for x, label in vlines:
        if x_range[0] <= x <= x_range[1]:
            px = fr.fx(x)
            out.append(f'<line x1="{px:.1f}" y1="{fr.top:.1f}" x2="{px:.1f}" y2="{fr.top + fr.height:.1f}" '
                       f'stroke="{INK}" stroke-dasharray="2 3" stroke-opacity="0.6"/>')
            out.append(_text(px - 4, fr.top + 12, label, anchor="end", size=11, color=INK).replace(
                "<text ", '<text paint-order="stroke" stroke="#ffffff" stroke-width="4" ', 1))
    for s in series:
        out.append(_path(fr, s))
    if note:
        out.append(_text(16, height - 8, note, anchor="start", size=11))
    out.append("</svg>")
    return "\n".join(o for o in out if o)


@dataclass
class Panel:
    """One histogram panel: bins as (low, high, count)."""

    name: str
    bins: Sequence[tuple[float, float, float]]
    color: str = PALETTE[0]
    caption: str = ""


def histogram_panels(panels: Sequence[Panel], *, x_label: str, y_label: str = "targets", title: str | None = None,
                     width: int = 760, panel_height: int = 120, marker: tuple[float, str] | None = None,
                     x_fmt: Callable[[float], str] = num) -> str:
    """Histograms stacked vertically on one shared x axis (one panel per strategy), with an optional marker line."""
    lows = [b[0] for p in panels for b in p.bins]
    highs = [b[1] for p in panels for b in p.bins]
    x0 = min([0.0] + lows)
    x1 = max(highs + [marker[0] * 1.25 if marker else 1.0]) if highs else 1.0
    x_ticks = [t for t in nice_ticks(x0, x1, n=8) if x0 - 1e-9 <= t <= x1 + 1e-9]
    x1 = max(x1, x_ticks[-1]) if x_ticks else x1
    top = 36 if title else 12
    gap = 44
    height = top + len(panels) * (panel_height + gap) + 30
    out = _open(width, height, title)
    if title:
        out.append(_text(16, 22, title, size=14, anchor="start", color=INK, weight="600"))
    left, plot_w = 64, width - 64 - 24
    for i, p in enumerate(panels):
        ptop = top + i * (panel_height + gap) + 24
        ymax = max([b[2] for b in p.bins] + [1])
        y_ticks = nice_ticks(0, ymax, n=3)
        fr = _Frame(left=left, top=ptop, width=plot_w, height=panel_height, x0=x0, x1=x1, y0=0, y1=y_ticks[-1])
        out.append(_text(left, ptop - 10, p.name + (f" · {p.caption}" if p.caption else ""), anchor="start", size=12,
                         color=INK, weight="600"))
        for t in y_ticks:
            y = fr.fy(t)
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{GRID}"/>')
            out.append(_text(left - 8, y + 4, f"{t:g}", anchor="end"))
        for lo, hi, count in p.bins:
            if count <= 0:
                continue
            xa, xb = fr.fx(lo), fr.fx(hi)
            ya = fr.fy(count)
            out.append(f'<rect x="{xa + 0.5:.1f}" y="{ya:.1f}" width="{max(xb - xa - 1, 1):.1f}" '
                       f'height="{fr.top + fr.height - ya:.1f}" fill="{p.color}" fill-opacity="0.85">'
                       f'<title>{esc(p.name)}: cost {esc(num(lo))}–{esc(num(hi))}: {count:g} {esc(y_label)}</title></rect>')
        bottom = ptop + panel_height
        out.append(f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="{AXIS}"/>')
        out.append(f'<line x1="{left}" y1="{ptop}" x2="{left}" y2="{bottom}" stroke="{AXIS}"/>')
        for t in x_ticks:
            x = fr.fx(t)
            out.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="{AXIS}"/>')
            out.append(_text(x, bottom + 16, x_fmt(t)))
        if marker and x0 <= marker[0] <= x1:
            mx = fr.fx(marker[0])
            out.append(f'<line x1="{mx:.1f}" y1="{ptop:.1f}" x2="{mx:.1f}" y2="{bottom:.1f}" stroke="{INK}" '
                       f'stroke-dasharray="3 3" stroke-opacity="0.7"/>')
            if i == 0:
                out.append(_text(mx + 4, ptop + 10, marker[1], anchor="start", size=11, color=INK))
        if i == len(panels) // 2:
            out.append(_text(left - 44, ptop + panel_height / 2, y_label, size=12, color=INK, rotate=-90))
    out.append(_text(left + plot_w / 2, height - 8, x_label, size=12, color=INK))
    out.append("</svg>")
    return "\n".join(out)


def _blend(share: float) -> str:
    """White to deep blue."""
    share = min(max(share, 0.0), 1.0)
    lo, hi = (247, 251, 255), (8, 69, 148)
    r, g, b = (round(a + (c - a) * share ** 0.8) for a, c in zip(lo, hi))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float | None]], *,
            title: str | None = None, cell_text: Sequence[Sequence[str]] | None = None,
            tooltips: Sequence[Sequence[str]] | None = None, value_fmt: Callable[[float], str] = pct,
            legend_label: str = "share", width: int | None = None) -> str:
    """A grid of coloured cells (rows × columns, values in [0, 1]) with labels and a colour scale."""
    label_w = max([len(r) for r in rows] + [6]) * 7.2 + 20
    cell_w = max(96, max([len(c) for c in cols] + [4]) * 7.5 + 16)
    cell_h = 34
    top = (36 if title else 10) + 26
    plot_w = cell_w * len(cols)
    width = int(width or (label_w + plot_w + 120))
    height = int(top + cell_h * len(rows) + 24)
    out = _open(width, height, title)
    if title:
        out.append(_text(16, 22, title, size=14, anchor="start", color=INK, weight="600"))
    for j, c in enumerate(cols):
        out.append(_text(label_w + cell_w * (j + 0.5), top - 9, c, size=12, color=INK, weight="600"))
    for i, r in enumerate(rows):
        y = top + i * cell_h
        out.append(_text(label_w - 10, y + cell_h / 2 + 4, r, anchor="end", size=12, color=INK))
        for j in range(len(cols)):
            v = values[i][j]
            x = label_w + j * cell_w
            fill = "#f3f4f6" if v is None else _blend(v)
            tip = tooltips[i][j] if tooltips else (f"{r} / {cols[j]}: " + ("n/a" if v is None else value_fmt(v)))
            out.append(f'<rect x="{x + 1:.1f}" y="{y + 1:.1f}" width="{cell_w - 2:.1f}" height="{cell_h - 2:.1f}" rx="3" '
                       f'fill="{fill}"><title>{esc(tip)}</title></rect>')
            text = cell_text[i][j] if cell_text else ("–" if v is None else value_fmt(v))
            dark = v is not None and v > 0.55
            out.append(_text(x + cell_w / 2, y + cell_h / 2 + 4, text, size=11, color="#ffffff" if dark else INK))
    # colour scale
    sx, sy, sh = label_w + plot_w + 28, top, min(cell_h * len(rows), 200)
    steps = 20
    for k in range(steps):
        v = 1 - k / (steps - 1)
        out.append(f'<rect x="{sx:.1f}" y="{sy + k * sh / steps:.1f}" width="14" height="{sh / steps + 0.5:.1f}" '
                   f'fill="{_blend(v)}"/>')
    out.append(f'<rect x="{sx:.1f}" y="{sy:.1f}" width="14" height="{sh:.1f}" fill="none" stroke="{GRID}"/>')
    out.append(_text(sx + 20, sy + 9, value_fmt(1.0), anchor="start"))
    out.append(_text(sx + 20, sy + sh, value_fmt(0.0), anchor="start"))
    out.append(_text(sx + 7, sy - 9, legend_label, size=11))
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]], *, y_label: str,
              x_label: str = "", title: str | None = None, width: int = 760, height: int = 300,
              y_fmt: Callable[[float], str] = num, y_range: tuple[float, float] | None = None) -> str:
    """Grouped vertical bars: one group per category, one bar per series (name, values, colour)."""
    vals = [v for _, vs, _ in series for v in vs if v is not None]
    y_ticks = nice_ticks(*(y_range or (0.0, max(vals + [1e-9]))))
    out = _open(width, height, title)
    top: float = 12
    if title:
        out.append(_text(16, 22, title, size=14, anchor="start", color=INK, weight="600"))
        top = 36
    leg, leg_h = _legend([(n, c, None, "box") for n, _, c in series], 64, top + 6, width - 80)
    out += leg
    top += leg_h + 8
    fr = _Frame(left=64, top=top, width=width - 88, height=height - top - 52, x0=0, x1=max(len(categories), 1),
                y0=y_ticks[0], y1=y_ticks[-1])
    for t in y_ticks:
        y = fr.fy(t)
        out.append(f'<line x1="{fr.left}" y1="{y:.1f}" x2="{fr.left + fr.width:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(fr.left - 8, y + 4, y_fmt(t), anchor="end"))
    group_w = fr.width / max(len(categories), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for i, cat in enumerate(categories):
        gx = fr.left + i * group_w + group_w * 0.1
        for k, (name, vs, color) in enumerate(series):
            v = vs[i] if i < len(vs) else None
            if v is None:
                continue
            y = fr.fy(v)
            out.append(f'<rect x="{gx + k * bar_w:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                       f'height="{fr.top + fr.height - y:.1f}" fill="{color}"><title>{esc(name)} · {esc(cat)}: '
                       f'{esc(y_fmt(v))}</title></rect>')
        out.append(_text(fr.left + (i + 0.5) * group_w, fr.top + fr.height + 17, cat))
    bottom = fr.top + fr.height
    out.append(f'<line x1="{fr.left}" y1="{bottom:.1f}" x2="{fr.left + fr.width:.1f}" y2="{bottom:.1f}" stroke="{AXIS}"/>')
    out.append(_text(fr.left - 44, fr.top + fr.height / 2, y_label, size=12, color=INK, rotate=-90))
    if x_label:
        out.append(_text(fr.left + fr.width / 2, height - 8, x_label, size=12, color=INK))
    out.append("</svg>")
    return "\n".join(out)
