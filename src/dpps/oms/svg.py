"""Plots as inline SVG: nothing to load from elsewhere, readable without JavaScript.

The dashboard and the HTML report draw bars and columns with these few functions; every
label is escaped, every figure is also written in the SVG's ``<title>`` elements (tooltips)
so the numbers a person sees can be checked against the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from markupsafe import Markup, escape

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
STATE_COLOURS = {
    "OK": "#2ca02c",
    "AVAILABLE": "#2ca02c",
    "DONE": "#2ca02c",
    "REPLICATING": "#1f77b4",
    "QUEUED": "#1f77b4",
    "ACTIVE": "#17becf",
    "COPYING": "#17becf",
    "RUNNING": "#17becf",
    "STUCK": "#d62728",
    "FAILED": "#d62728",
    "BAD": "#d62728",
    "SUSPENDED": "#7f7f7f",
    "UNAVAILABLE": "#7f7f7f",
}

Fmt = Callable[[float], str]


def human_bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def plain(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.2f}"


def colour(key: str, index: int) -> str:
    return STATE_COLOURS.get(key.upper(), PALETTE[index % len(PALETTE)])


def _empty(title: str, width: int) -> Markup:
    return Markup(
        f'<svg class="plot" role="img" width="{width}" height="40" viewBox="0 0 {width} 40">'
        f"<title>{escape(title)}: no data</title>"
        f'<text x="4" y="24" class="muted">no data yet</text></svg>'
    )


def hbar_chart(
    rows: Sequence[tuple[str, float]],
    *,
    title: str,
    fmt: Fmt = plain,
    width: int = 520,
    colours: Mapping[str, str] | None = None,
    scale: float | None = None,
    marks: Sequence[tuple[str, float]] = (),
) -> Markup:
    """One horizontal bar per (label, value). Bars are drawn against ``scale`` when given (a
    quality metric against its threshold: a value near 0 must look empty, not full) else
    against the largest value; ``marks`` are vertical lines (label, value), e.g. limits."""
    if not rows:
        return _empty(title, width)
    label_w, value_w, bar_h, gap = 150, 90, 18, 6
    top = scale if scale and scale > 0 else (max((v for _, v in rows), default=0) or 1)
    height = len(rows) * (bar_h + gap) + gap
    parts = [
        f'<svg class="plot" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    ]
    span = width - label_w - value_w
    for i, (label, value) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = min(span, max(1.0, span * value / top)) if value > 0 else 0.0
        fill = (colours or {}).get(label) or colour(label, i)
        parts.append(
            f"<g><title>{escape(label)}: {escape(fmt(value))}</title>"
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{fill}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{escape(fmt(value))}</text></g>'
        )
    for label, value in marks:
        x = label_w + span * min(max(value / top, 0.0), 1.0)
        parts.append(
            f'<line class="mark" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="#333" '
            f'stroke-dasharray="4 3" stroke-width="1.5"><title>{escape(label)}</title></line>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    fmt: Fmt = plain,
    width: int = 640,
    height: int = 160,
) -> Markup:
    """Columns over time (e.g. files ingested per hour), first and last label on the axis."""
    if not points:
        return _empty(title, width)
    left, bottom, top_pad = 50, 20, 10
    top = max((v for _, v in points), default=0) or 1
    plot_w, plot_h = width - left - 4, height - bottom - top_pad
    step = plot_w / len(points)
    parts = [
        f'<svg class="plot" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<text x="{left - 4}" y="{top_pad + 10}" text-anchor="end">{escape(fmt(top))}</text>'
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end">0</text>'
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{width - 4}" y2="{top_pad + plot_h}" '
        f'stroke="#999"/>'
    ]
    for i, (label, value) in enumerate(points):
        h = plot_h * value / top
        x = left + i * step
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top_pad + plot_h - h:.1f}" width="{max(step - 2, 1):.1f}"'
            f' height="{h:.1f}" fill="{PALETTE[0]}"><title>{escape(label)}: '
            f"{escape(fmt(value))}</title></rect>"
        )
    y_axis = height - 4
    parts.append(f'<text x="{left}" y="{y_axis}">{escape(points[0][0])}</text>')
    parts.append(
        f'<text x="{width - 4}" y="{y_axis}" text-anchor="end">{escape(points[-1][0])}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_hbar(
    rows: Mapping[str, Mapping[str, float]],
    *,
    title: str,
    fmt: Fmt = plain,
    width: int = 640,
    series_colours: Mapping[str, str] | None = None,
) -> Markup:
    """One bar per row key, split into series (e.g. bytes per site, split by data level);
    ``series_colours`` fixes a series' colour where it means something (ok green, failed red)."""
    if not rows:
        return _empty(title, width)
    series = sorted({s for parts in rows.values() for s in parts})
    fixed = series_colours or {}
    colours = {s: fixed.get(s) or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    label_w, value_w, bar_h, gap, legend_h = 150, 90, 18, 6, 22
    top = max(sum(p.values()) for p in rows.values()) or 1
    height = legend_h + len(rows) * (bar_h + gap) + gap
    span = width - label_w - value_w
    out = [
        f'<svg class="plot" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    ]
    x = label_w
    for s in series:
        out.append(
            f'<rect x="{x}" y="4" width="10" height="10" fill="{colours[s]}"/>'
            f'<text x="{x + 14}" y="13">{escape(s)}</text>'
        )
        x += 14 + 8 * len(s) + 16
    for i, (label, parts) in enumerate(rows.items()):
        y = legend_h + gap + i * (bar_h + gap)
        out.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>'
        )
        x0 = float(label_w)
        for s in series:
            value = parts.get(s, 0)
            if not value:
                continue
            w = max(1.0, span * value / top)
            out.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{colours[s]}"><title>{escape(label)} {escape(s)}: {escape(fmt(value))}'
                f"</title></rect>"
            )
            x0 += w
        total = sum(parts.values())
        out.append(f'<text x="{x0 + 4:.1f}" y="{y + 13}">{escape(fmt(total))}</text>')
    out.append("</svg>")
    return Markup("".join(out))
