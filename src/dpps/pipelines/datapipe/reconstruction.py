"""Stereo geometry: direction and core from the image axes of several telescopes. Pure.

Every image's major axis points back to the source in the camera frame, and, on the ground,
runs from the telescope towards the shower core (ctapipe's ``HillasReconstructor`` uses the
same two facts). With the shower model's convention (ground and camera axes aligned,
``dpps.pipelines.simpipe.instrument``) both become the same small problem: the point closest,
in the weighted least-squares sense, to a set of lines. ctapipe's reconstructor is not used
because it needs a full ``SubarrayDescription`` with optics and a tilted-ground frame that the
toy model does not have; this function is 20 lines and tested against known geometry.

Weights favour bright, elongated images (``intensity * (1 - width / length)``), whose axes are
best measured. Nearly parallel axes make the problem ill-conditioned: such events get NaN, and
DL2 leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: Below this (smallest / largest eigenvalue of the normal matrix) lines count as parallel.
MIN_CONDITION = 1e-3


def intersect_lines(
    x: FloatArray, y: FloatArray, angle_rad: FloatArray, weights: FloatArray
) -> tuple[float, float]:
    """Weighted least-squares intersection of lines through (x, y) with direction angle.

    Minimises sum w_i d_i^2, d_i the perpendicular distance to line i; (nan, nan) when fewer
    than two lines or they are (nearly) parallel."""
    if x.size < 2:
        return float("nan"), float("nan")
    nx, ny = -np.sin(angle_rad), np.cos(angle_rad)  # unit normals of the lines
    a = np.array(
        [
            [np.sum(weights * nx * nx), np.sum(weights * nx * ny)],
            [np.sum(weights * nx * ny), np.sum(weights * ny * ny)],
        ]
    )
    proj = nx * x + ny * y
    b = np.array([np.sum(weights * nx * proj), np.sum(weights * ny * proj)])
    eig = np.linalg.eigvalsh(a)
    if eig[-1] <= 0 or eig[0] / eig[-1] < MIN_CONDITION:
        return float("nan"), float("nan")
    px, py = np.linalg.solve(a, b)
    return float(px), float(py)


@dataclass(frozen=True)
class Quality:
    """Which images take part in the stereo reconstruction."""

    min_intensity_pe: float = 50.0
    max_leakage_intensity_2: float = 0.3
    min_width_deg: float = 0.0


def usable(params: NDArray[Any], quality: Quality) -> NDArray[np.bool_]:
    """Images with finite Hillas parameters that pass the quality cuts."""
    ok = np.isfinite(params["width"]) & np.isfinite(params["length"]) & (params["length"] > 0)
    ok &= params["intensity"] >= quality.min_intensity_pe
    ok &= params["width"] > quality.min_width_deg
    leak = np.nan_to_num(params["leakage_intensity_2"], nan=1.0)
    return np.asarray(ok & (leak <= quality.max_leakage_intensity_2), dtype=bool)


EVENT_DTYPE = np.dtype(
    [
        ("obs_id", "i8"),
        ("event_id", "i8"),
        ("time", "f8"),
        ("multiplicity", "i2"),
        ("reco_x", "f8"),
        ("reco_y", "f8"),
        ("reco_core_x", "f8"),
        ("reco_core_y", "f8"),
    ]
)


def reconstruct(
    params: NDArray[Any], tel_pos: dict[int, tuple[float, float]], quality: Quality
) -> tuple[NDArray[Any], FloatArray, FloatArray]:
    """Stereo geometry of every array event in a DL1 parameter table.

    Returns the per-event table (``EVENT_DTYPE``, events with >= 2 usable images; direction
    and core NaN when the axes are parallel) and, per image row, the impact distance from the
    reconstructed core (m) and the angular distance of the image centroid from the
    reconstructed source (deg), NaN for images not used."""
    use = usable(params, quality)
    impact = np.full(params.size, np.nan)
    disp = np.full(params.size, np.nan)
    rows: list[tuple[Any, ...]] = []
    keys = np.stack([params["obs_id"], params["event_id"]], axis=1)
    if params.size == 0:
        return np.zeros(0, dtype=EVENT_DTYPE), impact, disp
    order = np.lexsort((params["event_id"], params["obs_id"]))
    bounds = np.flatnonzero(np.any(np.diff(keys[order], axis=0) != 0, axis=1)) + 1
    for group in np.split(order, bounds):
        idx = group[use[group]]
        if idx.size < 2:
            continue
        p = params[idx]
        psi = np.radians(p["psi"])
        w = p["intensity"] * (1.0 - p["width"] / p["length"])
        sx, sy = intersect_lines(p["x"], p["y"], psi, w)
        tx = np.array([tel_pos[int(t)][0] for t in p["tel_id"]])
        ty = np.array([tel_pos[int(t)][1] for t in p["tel_id"]])
        cx, cy = intersect_lines(tx, ty, psi, w)
        impact[idx] = np.hypot(tx - cx, ty - cy)
        disp[idx] = np.hypot(p["x"] - sx, p["y"] - sy)
        first = params[group[0]]
        rows.append((first["obs_id"], first["event_id"], first["time"], idx.size, sx, sy, cx, cy))
    return np.array(rows, dtype=EVENT_DTYPE), impact, disp
