"""PNG plots of the quality metrics' distributions, for people.

Figures are built with matplotlib's object API (``Figure``, rendered by the Agg backend),
never ``pyplot``: no global state, no display needed, safe in worker threads. Each function
returns PNG bytes; the tool writes them to files and the HTML report inlines them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from numpy.typing import NDArray

from dpps.instrument.camera import CAMERAS, pixel_positions
from dpps.pipelines.calibpipe.product import CalibrationProduct
from dpps.pipelines.qualpipe.readers import DL1Images, DL2Events

_DPI = 100


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _finite(values: NDArray[np.float64]) -> NDArray[np.float64]:
    return values[np.isfinite(values)]


def _nothing(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes)


def dl1_plot(images: DL1Images) -> bytes:
    """Intensity, width and length distributions per telescope, and the image counts."""
    fig = Figure(figsize=(11, 8), layout="constrained")
    (ax_i, ax_n), (ax_w, ax_l) = fig.subplots(2, 2)
    tels = sorted(int(t) for t in np.unique(images.tel_id))
    log_i = np.log10(np.clip(images.intensity, 1e-3, None))
    bins_i = np.linspace(0.0, max(1.0, float(np.nanmax(log_i)) if len(images) else 1.0), 40)
    for tel in tels:
        mine = images.tel_id == tel
        label = f"tel {tel}"
        ax_i.hist(_finite(log_i[mine]), bins=bins_i, histtype="step", label=label)
        ax_w.hist(_finite(images.width[mine]), bins=40, histtype="step", label=label)
        ax_l.hist(_finite(images.length[mine]), bins=40, histtype="step", label=label)
    counts = [int((images.tel_id == t).sum()) for t in tels]
    ax_n.bar([str(t) for t in tels], counts, color="tab:blue")
    ax_i.set(xlabel="log10(intensity / p.e.)", ylabel="images", title="Image intensity")
    ax_w.set(xlabel="width (deg)", ylabel="images", title="Hillas width")
    ax_l.set(xlabel="length (deg)", ylabel="images", title="Hillas length")
    ax_n.set(xlabel="telescope", ylabel="images", title="Images per telescope")
    for ax in (ax_i, ax_w, ax_l):
        if tels:
            ax.legend(fontsize="small")
    return _png(fig)


def dl2_plot(events: DL2Events) -> bytes:
    """Multiplicity, gamma/hadron score, reconstructed energy and the event rate in time."""
    fig = Figure(figsize=(11, 8), layout="constrained")
    (ax_m, ax_g), (ax_e, ax_t) = fig.subplots(2, 2)
    mult = _finite(events.multiplicity)
    if mult.size:
        edges = np.arange(0.5, mult.max() + 1.5)
        ax_m.hist(mult, bins=edges, color="tab:blue", rwidth=0.8)
        ax_m.set_xticks(np.arange(1, mult.max() + 1))
    else:
        _nothing(ax_m, "events")
    ax_g.hist(_finite(events.gh_score), bins=np.linspace(0, 1, 26), color="tab:green")
    energy = events.reco_energy[np.isfinite(events.reco_energy) & (events.reco_energy > 0)]
    if energy.size:
        ax_e.hist(np.log10(energy), bins=30, color="tab:orange")
    else:
        _nothing(ax_e, "energies")
    times = _finite(events.time)
    if times.size > 1 and times.max() > times.min():
        span = times.max() - times.min()
        n_bins = int(np.clip(span / 1.0, 5, 50))
        counts, edges = np.histogram(times - times.min(), bins=n_bins)
        ax_t.stairs(counts / np.diff(edges), edges)
    else:
        _nothing(ax_t, "event times")
    ax_m.set(xlabel="telescopes", ylabel="events", title="Multiplicity")
    ax_g.set(xlabel="gh_score", ylabel="events", title="Gamma/hadron score")
    ax_e.set(xlabel="log10(reco_energy / TeV)", ylabel="events", title="Reconstructed energy")
    ax_t.set(xlabel="time since first event (s)", ylabel="rate (Hz)", title="Event rate")
    return _png(fig)


def calibration_plot(product: CalibrationProduct) -> bytes:
    """The pedestal width over the camera (unusable pixels circled) and the gain histogram."""
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax_cam, ax_gain = fig.subplots(1, 2)
    spec = CAMERAS.get(product.camera or "")
    width = product.pedestal_width
    if spec is not None and spec.n_pixels == width.size:
        x, y = pixel_positions(spec)
        # Pointy-top hexagons in data units: neighbours along x are one spacing apart.
        angles = np.deg2rad(30.0 + 60.0 * np.arange(6))
        radius = spec.pixel_spacing_deg / np.sqrt(3.0)
        verts = np.stack(
            [x[:, None] + radius * np.cos(angles), y[:, None] + radius * np.sin(angles)], axis=-1
        )
        bad = product.unusable
        points = PolyCollection(
            list(verts),
            array=width,
            cmap="viridis",
            edgecolors=np.where(bad, "red", "none"),
            linewidths=np.where(bad, 1.5, 0.0),
        )
        ax_cam.add_collection(points)
        ax_cam.autoscale_view()
        ax_cam.set(xlabel="x (deg)", ylabel="y (deg)", aspect="equal")
        ax_cam.text(
            0.01,
            0.99,
            f"red outline: unusable ({int(bad.sum())} pixels)",
            transform=ax_cam.transAxes,
            va="top",
            fontsize="small",
        )
    else:  # unknown camera geometry: per pixel id
        points = ax_cam.scatter(product.pixel_id, width, c=width, s=4, cmap="viridis")
        ax_cam.set(xlabel="pixel id", ylabel="pedestal width (adu)")
    fig.colorbar(points, ax=ax_cam, label="pedestal width (adu)")
    ax_cam.set_title(f"Telescope {product.tel_id} ({product.camera}): pedestal width")
    usable = ~product.unusable
    ax_gain.hist(_finite(product.gain[usable]), bins=40, color="tab:purple")
    ax_gain.set(xlabel="gain (adu per p.e.)", ylabel="pixels", title="Gain of usable pixels")
    return _png(fig)


def all_plots(
    images: DL1Images | None,
    events: DL2Events | None,
    calibrations: Sequence[CalibrationProduct],
) -> dict[str, bytes]:
    """name -> PNG for everything given (names are file stems)."""
    plots: dict[str, bytes] = {}
    for product in sorted(calibrations, key=lambda p: p.tel_id):
        plots[f"calibration_tel{product.tel_id:03d}"] = calibration_plot(product)
    if images is not None and len(images):
        plots["dl1_parameters"] = dl1_plot(images)
    if events is not None and len(events):
        plots["dl2_events"] = dl2_plot(events)
    return plots
