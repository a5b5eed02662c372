"""Time series drawn by matplotlib as inline SVG: real axes, ticks and legends, served with the
page (nothing to load from elsewhere, readable without JavaScript).

``svg.py`` draws the small bar charts by hand; a time series needs a date axis, tick labels
that do not collide and a legend per link, which is what a plotting library is for. Figures
use matplotlib's object API (``Figure``), never ``pyplot``: no global state shared between
the server's request threads. matplotlib is imported on first use only (it takes a second
or more to import, which no other page should pay).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence

from markupsafe import Markup, escape

from dpps.oms.svg import PALETTE, plain

Fmt = Callable[[float], str]
#: Figure size in inches at 72 dpi (SVG points): it scales down with the page (CSS).
SIZE = (7.6, 2.6)
#: Labelled ticks on the time axis at most.
TICKS = 8


def tick_label(key: str) -> str:
    """``2026-12-07 13:00`` -> ``12-07 13h``; a day (or midnight) ``00:00`` -> ``12-07``."""
    day, hour = key[5:10], key[11:13]
    return day if hour == "00" else f"{day} {hour}h"


def time_series(
    keys: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
    fmt: Fmt = plain,
    legend: bool = True,
) -> Markup:
    """One line per series over the time buckets ``keys`` (``YYYY-MM-DD HH:00``), named in a
    legend (a link's name even when it is alone: which link is it?); an empty figure says
    so instead of drawing a flat line at 0."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # Buckets are drawn at their index (every bucket is listed, so the spacing is time) and
    # labelled with their date: matplotlib.dates is not typed, and this needs nothing of it.
    x = list(range(len(keys)))
    fig = Figure(figsize=SIZE, dpi=72, layout="constrained")
    ax = fig.add_subplot()
    drawn = {name: values for name, values in series.items() if any(values)}
    for i, (name, values) in enumerate(sorted(drawn.items())):
        ax.plot(x, list(values), label=name, color=PALETTE[i % len(PALETTE)], marker=".")
    if not drawn:
        ax.text(
            0.5,
            0.5,
            "nothing in this window",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="#888888",
        )
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_ylim(bottom=0)
    if x:
        ax.set_xlim(0, max(len(x) - 1, 1))
        step = max(1, -(-len(x) // TICKS))
        ticks = x[::step]
        ax.set_xticks(ticks, [tick_label(keys[t]) for t in ticks])
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # files, bytes: counts
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt(v)))
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", color="#e5e5e5")
    if legend and drawn:
        ax.legend(fontsize=8, loc="upper left", frameon=False)
    out = io.StringIO()
    # text as text (searchable, small); ids salted per chart: several share one page
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": title}):
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    text = out.getvalue()
    body = text[text.index("<svg") :]
    label = f'<svg class="chart" role="img" aria-label="{escape(title)}" '
    return Markup(body.replace("<svg ", label, 1))
