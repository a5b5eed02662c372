"""A spectral analysis checked against the simulation it was made from. Pure but for reading
the IRF file.

A simulated night is only convincing if what the analysis measures agrees with what was
thrown, within the errors the analysis itself states:

* the background: the OFF regions' counts against the counts the background IRF predicts for
  them (the IRF's protons, weighted to the night's cosmic-ray flux, through the same cuts),
  as a ratio with its uncertainty (Poisson on the measured counts, the number of simulated
  protons behind each IRF bin on the prediction) and a pull;
* the spectrum: the fitted index and amplitude against the simulated ones, as pulls.

A pull beyond ``PULL_LIMIT`` is flagged: for a correct analysis that happens in 0.3 % of
nights per quantity, so a flag means "look", not "it is certain to be wrong".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table

from dpps.core.errors import InvalidInput
from dpps.pipelines.datapipe.dl3_analysis import OffExposure, SpectrumFit
from dpps.pipelines.datapipe.irf import BKG_EVENTS_EXTNAME

PULL_LIMIT = 3.0
_DEG2_TO_SR = (math.pi / 180.0) ** 2


@dataclass(frozen=True)
class BackgroundIRF:
    """BACKGROUND (s-1 TeV-1 sr-1) and the simulated protons behind each bin."""

    energy_edges_tev: np.ndarray  # (n_e + 1,)
    offset_edges_deg: np.ndarray  # (n_off + 1,)
    rate: np.ndarray  # (n_e, n_off)
    events: np.ndarray  # (n_e, n_off)


def read_background(path: Path) -> BackgroundIRF:
    """The BACKGROUND and BKG_EVENTS HDUs of a ``datapipe-irf`` output."""
    try:
        with fits.open(path) as hdus:
            bkg = QTable.read(hdus["BACKGROUND"])
            events = Table.read(hdus[BKG_EVENTS_EXTNAME])
    except KeyError as exc:
        raise InvalidInput(f"{Path(path).name}: no background IRF ({exc})") from None
    lo, hi = (u.Quantity(bkg[k][0]).to_value(u.TeV).ravel() for k in ("ENERG_LO", "ENERG_HI"))
    o_lo, o_hi = (u.Quantity(bkg[k][0]).to_value(u.deg).ravel() for k in ("THETA_LO", "THETA_HI"))
    e, o = np.append(lo, hi[-1]), np.append(o_lo, o_hi[-1])
    rate = u.Quantity(bkg["BKG"][0]).to_value("s-1 TeV-1 sr-1").T  # stored (offset, energy)
    counts = np.asarray(events["COUNTS"][0], dtype=float).T
    if rate.shape != (e.size - 1, o.size - 1) or counts.shape != rate.shape:
        raise InvalidInput(f"{Path(path).name}: background tables of inconsistent shapes")
    return BackgroundIRF(e, o, rate, counts)


@dataclass(frozen=True)
class BackgroundCheck:
    """Measured OFF counts against the simulated background after the same cuts."""

    measured: int
    predicted: float
    predicted_error: float  # from the number of simulated protons
    ratio: float
    ratio_error: float
    pull: float  # (measured - predicted) / sqrt(predicted + predicted_error^2)
    rate_per_deg2_hz: float  # the predicted background after cuts, per deg^2 of sky


def predict_off(background: BackgroundIRF, exposures: Sequence[OffExposure]) -> BackgroundCheck:
    """Expected OFF counts: the background rate at each observation's offset, integrated over
    every safe analysis bin's energy range, times the OFF regions' solid angle and the
    livetime; compared with the OFF counts of those bins."""
    e = background.energy_edges_tev
    contribution = np.zeros(e.size - 1)  # counts predicted from each IRF energy bin
    measured = 0
    solid_angle_deg2_s = 0.0
    for exp in exposures:
        col = int(np.searchsorted(background.offset_edges_deg, exp.offset_deg, side="right")) - 1
        if not 0 <= col < background.rate.shape[1]:
            raise InvalidInput(f"obs {exp.obs_id}: offset {exp.offset_deg:.2f} deg not in IRF")
        for i, safe in enumerate(exp.safe):
            if not safe:
                continue
            lo, hi = exp.energy_edges_tev[i], exp.energy_edges_tev[i + 1]
            overlap = np.clip(np.minimum(e[1:], hi) - np.maximum(e[:-1], lo), 0.0, None)
            omega_deg2 = exp.n_regions[i] * math.pi * exp.rad_max_deg[i] ** 2
            contribution += (
                background.rate[:, col] * overlap * omega_deg2 * _DEG2_TO_SR * exp.livetime_s
            )
            measured += exp.counts_off[i]
            solid_angle_deg2_s += omega_deg2 * exp.livetime_s
    events = _column_events(background, exposures)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.where(events > 0, contribution**2 / events, 0.0)
    predicted = float(contribution.sum())
    error = float(math.sqrt(variance.sum()))
    if predicted <= 0:
        raise InvalidInput("the background IRF predicts no OFF count: nothing to compare with")
    ratio = measured / predicted
    ratio_error = math.hypot(math.sqrt(max(measured, 1)) / predicted, ratio * error / predicted)
    pull = (measured - predicted) / math.sqrt(predicted + error**2)
    rate = predicted / solid_angle_deg2_s if solid_angle_deg2_s > 0 else float("nan")
    return BackgroundCheck(measured, predicted, error, ratio, ratio_error, pull, rate)


def _column_events(background: BackgroundIRF, exposures: Sequence[OffExposure]) -> np.ndarray:
    """Simulated protons per energy bin in the offset bin of the observations (one offset:
    wobble runs share it)."""
    cols = {
        int(np.searchsorted(background.offset_edges_deg, x.offset_deg, side="right")) - 1
        for x in exposures
    }
    if len(cols) != 1:
        raise InvalidInput(f"observations in {len(cols)} background offset bins: not supported")
    return np.asarray(background.events[:, cols.pop()], dtype=float)


@dataclass(frozen=True)
class TruthCheck:
    """The analysis against the simulation: pulls, the background check and the flags."""

    index_pull: float
    amplitude_pull: float
    background: BackgroundCheck
    flags: tuple[str, ...]


def check(
    fit: SpectrumFit, index: float, amplitude: float, background: BackgroundCheck
) -> TruthCheck:
    """Pulls of the fit against the simulated spectrum, and every pull beyond ``PULL_LIMIT``
    named in ``flags``."""
    index_pull, amplitude_pull = fit.pulls(index, amplitude)
    flags = tuple(
        f"{name} pull {value:+.1f} sigma"
        for name, value in (
            ("index", index_pull),
            ("amplitude", amplitude_pull),
            ("background", background.pull),
        )
        if not abs(value) <= PULL_LIMIT  # NaN is flagged too
    )
    return TruthCheck(index_pull, amplitude_pull, background, flags)
