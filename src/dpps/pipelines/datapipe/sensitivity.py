"""Point-source flux sensitivity, as the field quotes it, with its statistical error.

The sensitivity is the weakest flux of a point source detected in a reference time (50 h) at
5 sigma (Li & Ma eq. 17) with at least 10 excess events and an excess of at least 5 % of the
background, with OFF regions five times the ON region (alpha 0.2), per bin of reconstructed
energy: pyirf's ``calculate_sensitivity`` on the simulated gammas that pass every cut and the
gamma-like protons of the IRF runs (``estimate_background`` scales those between the pointing
and the protons' cone to the OFF regions' size), weighted to the source and proton spectra.

A sensitivity from a few thousand simulated showers is itself a measurement: its error
comes from the simulated counts behind each bin. At a fixed background the flux needed
scales as 1 / (expected signal), whose relative error is 1 / sqrt(gammas selected); the
background's (1 / sqrt(protons selected), Poisson) is carried through pyirf's own solution
(the flux is recomputed with the background one sigma up and down), so a bin limited by the
10 events or the 5 % condition gets the sensitivity's true dependence on it (none, or linear).

The same definition applied to a night's measured rates (excess in ON, background from OFF)
gives the sensitivity the data imply (:func:`implied_by_counts`).

Pure functions: nothing here reads or writes files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable
from pyirf.binning import create_histogram_table
from pyirf.sensitivity import calculate_sensitivity, estimate_background, relative_sensitivity

from dpps.core.errors import InvalidInput
from dpps.pipelines.datapipe.irf import Cuts, gamma_like, in_theta

EXTNAME = "SENSITIVITY"
#: The field's conventions (CTAO's published sensitivities use the same).
ALPHA = 0.2
MIN_SIGNIFICANCE = 5.0
MIN_SIGNAL_EVENTS = 10.0
MIN_EXCESS_OVER_BACKGROUND = 0.05
REFERENCE_TIME = 50 * u.hour
#: A bin enters the figure of merit when this many simulated gammas and protons are behind
#: it: with fewer, its error estimate (Gaussian) means little.
MIN_SIMULATED_GAMMAS = 10
MIN_SIMULATED_PROTONS = 5
_FLUX_UNIT = u.Unit("cm-2 s-1 TeV-1")
_E2_UNIT = u.Unit("erg cm-2 s-1")


@contextmanager
def _quiet_pyirf() -> Iterator[None]:
    """pyirf logs a warning per empty bin: not news here (the table says so)."""
    log = logging.getLogger("pyirf")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _relative(signal: np.ndarray, background_off: np.ndarray, alpha: float) -> np.ndarray:
    with _quiet_pyirf(), np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(
            relative_sensitivity(
                signal + alpha * background_off,
                background_off,
                alpha,
                min_significance=MIN_SIGNIFICANCE,
                min_signal_events=MIN_SIGNAL_EVENTS,
                min_excess_over_background=MIN_EXCESS_OVER_BACKGROUND,
            ),
            dtype=float,
        )


def relative_errors(
    signal: np.ndarray,
    signal_events: np.ndarray,
    background_off: np.ndarray,
    background_events: np.ndarray,
    alpha: float = ALPHA,
) -> np.ndarray:
    """Relative statistical error of the relative sensitivity per bin, from the simulated
    counts behind the expected signal and the OFF background (Poisson each, independent).
    NaN where either count is zero (no error can be stated) or the sensitivity is not finite."""
    s = np.asarray(signal, dtype=float)
    b = np.asarray(background_off, dtype=float)
    n_s = np.asarray(signal_events, dtype=float)
    n_b = np.asarray(background_events, dtype=float)
    if np.any(s < 0) or np.any(b < 0) or np.any(n_s < 0) or np.any(n_b < 0):
        raise InvalidInput("signal, background and their event counts must not be negative")
    if not 0 < alpha <= 1:
        raise InvalidInput(f"alpha must lie in (0, 1], got {alpha}")
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(n_b > 0, 1.0 / np.sqrt(n_b), np.nan)
        central = _relative(s, b, alpha)
        up = _relative(s, b * (1 + fraction), alpha)
        down = _relative(s, b * np.clip(1 - fraction, 0, None), alpha)
        from_background = np.abs(up - down) / (2 * central)
        from_signal = np.where(n_s > 0, 1.0 / np.sqrt(n_s), np.nan)
        error = np.hypot(from_signal, from_background)
    return np.where(np.isfinite(central) & np.isfinite(error), error, np.nan)


def from_events(
    gammas: QTable,
    protons: QTable,
    cuts: Cuts,
    reco_energy_bins: u.Quantity,
    *,
    fov_offset_max: u.Quantity,
    spectrum: Any,
    alpha: float = ALPHA,
) -> QTable:
    """Per reco-energy bin: the relative sensitivity (a fraction of ``spectrum``), the flux
    sensitivity (``spectrum`` times it, at the bin centre, and E^2 times that), the simulated
    and weighted counts behind it and its error (``relative_sensitivity_error``, in the same
    units as the relative sensitivity). Both tables need ``weight`` for the
    same observation time (the sensitivity is for that time) and the geometry columns of
    :func:`dpps.pipelines.datapipe.irf.add_geometry`."""
    if not 0 < alpha <= 1:
        raise InvalidInput(f"alpha must lie in (0, 1], got {alpha}")
    for name, events in (("gammas", gammas), ("protons", protons)):
        if "weight" not in events.colnames:
            raise InvalidInput(f"{name}: no weight column (weight them for the reference time)")
    selected = gammas[gamma_like(gammas, cuts) & in_theta(gammas, cuts)]
    gamma_like_protons = protons[gamma_like(protons, cuts)]
    # estimate_background scales its counts to the OFF regions, the raw ones too: these are
    # the simulated protons it scales (the same ring)
    in_ring = u.Quantity(gamma_like_protons["reco_source_fov_offset"]) < fov_offset_max
    proton_events, _ = np.histogram(
        u.Quantity(gamma_like_protons["reco_energy"][in_ring]).to_value(u.TeV),
        u.Quantity(reco_energy_bins).to_value(u.TeV),
    )
    with _quiet_pyirf(), np.errstate(invalid="ignore", divide="ignore"):
        signal = create_histogram_table(selected, reco_energy_bins)
        background = estimate_background(
            gamma_like_protons,
            reco_energy_bins,
            cuts.theta,
            alpha,
            0 * u.deg,
            fov_offset_max,
        )
        table = calculate_sensitivity(
            signal,
            background,
            alpha,
            min_significance=MIN_SIGNIFICANCE,
            min_signal_events=MIN_SIGNAL_EVENTS,
            min_excess_over_background=MIN_EXCESS_OVER_BACKGROUND,
        )
    out = QTable()
    for key in ("low", "high", "center"):
        out[f"reco_energy_{key}"] = u.Quantity(table[f"reco_energy_{key}"]).to(u.TeV)
    out["n_signal_events"] = np.asarray(signal["n"], dtype=np.int64)
    out["n_signal_weighted"] = np.asarray(signal["n_weighted"], dtype=float)
    out["n_background_events"] = proton_events.astype(np.int64)
    out["n_background_weighted"] = np.asarray(background["n_weighted"], dtype=float)
    relative = np.asarray(table["relative_sensitivity"], dtype=float)
    out["relative_sensitivity"] = relative
    out["relative_sensitivity_error"] = relative * relative_errors(
        out["n_signal_weighted"],
        out["n_signal_events"],
        out["n_background_weighted"],
        out["n_background_events"],
        alpha,
    )
    centre = out["reco_energy_center"]
    flux = u.Quantity(spectrum(centre)).to(_FLUX_UNIT) * relative
    out["flux_sensitivity"] = flux
    out["e2_flux_sensitivity"] = (centre**2 * flux).to(_E2_UNIT)
    return out


def to_hdu(table: QTable, observation_time: u.Quantity, alpha: float = ALPHA) -> fits.BinTableHDU:
    """The table as a FITS extension, its conditions in the header (read back by
    :func:`table_from_hdu`)."""
    hdu = fits.table_to_hdu(table)
    hdu.name = EXTNAME
    hdu.header["OBSTIME"] = (observation_time.to_value(u.hour), "h, reference time")
    hdu.header["ALPHA"] = (alpha, "ON / OFF exposure ratio")
    hdu.header["MINSIG"] = (MIN_SIGNIFICANCE, "Li & Ma significance required")
    hdu.header["MINEVTS"] = (MIN_SIGNAL_EVENTS, "excess events required")
    hdu.header["MINEXCBG"] = (MIN_EXCESS_OVER_BACKGROUND, "excess / background required")
    return hdu


def _finite(value: Any) -> float | None:
    number = float(np.ma.filled(value, np.nan))
    return number if math.isfinite(number) else None


def table_from_hdu(hdu: fits.BinTableHDU, label: str) -> dict[str, Any]:
    """The JSON-ready form of a :func:`to_hdu` extension: conditions and one row per bin
    (None for a sensitivity that could not be reached or an error that cannot be stated)."""
    try:
        table = QTable.read(hdu)
        header = hdu.header
        conditions = {
            "observation_time_h": float(header["OBSTIME"]),
            "alpha": float(header["ALPHA"]),
            "min_significance": float(header["MINSIG"]),
            "min_signal_events": float(header["MINEVTS"]),
            "min_excess_over_background": float(header["MINEXCBG"]),
        }
        rows = [
            {
                "reco_energy_low_tev": float(u.Quantity(row["reco_energy_low"]).to_value(u.TeV)),
                "reco_energy_high_tev": float(u.Quantity(row["reco_energy_high"]).to_value(u.TeV)),
                "n_signal_events": int(row["n_signal_events"]),
                "n_signal_weighted": float(row["n_signal_weighted"]),
                "n_background_events": int(row["n_background_events"]),
                "n_background_weighted": float(row["n_background_weighted"]),
                "relative_sensitivity": _finite(row["relative_sensitivity"]),
                "relative_sensitivity_error": _finite(row["relative_sensitivity_error"]),
                "e2_flux_sensitivity_erg_cm2_s": _finite(
                    u.Quantity(row["e2_flux_sensitivity"]).to_value(_E2_UNIT)
                ),
            }
            for row in table
        ]
    except (KeyError, ValueError, TypeError, u.UnitsError) as exc:
        raise InvalidInput(f"{label}: unreadable {EXTNAME} table: {exc}") from None
    return {**conditions, "bins": rows}


def _usable(row: Mapping[str, Any]) -> bool:
    return (
        row["relative_sensitivity"] is not None
        and row["relative_sensitivity_error"] is not None
        and row["n_signal_events"] >= MIN_SIMULATED_GAMMAS
        and row["n_background_events"] >= MIN_SIMULATED_PROTONS
    )


def figure_of_merit(
    previous: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The geometric mean of new / previous sensitivity over the bins both versions measured
    with enough simulated events (< 1: the new version detects weaker sources), with its
    error: each bin's log-ratio error adds both versions' relative errors in quadrature
    (independent: conservative when both come from the same simulated events, whose
    fluctuations then partly cancel in the ratio). ``improvement_sigmas`` is (1 - ratio) /
    error. Both lists are :func:`table_from_hdu` bins on the same energy binning."""
    edges = [(r["reco_energy_low_tev"], r["reco_energy_high_tev"]) for r in previous]
    if edges != [(r["reco_energy_low_tev"], r["reco_energy_high_tev"]) for r in new]:
        raise InvalidInput("the two sensitivity tables have different energy bins")
    logs, variances, used = [], [], []
    for old, now in zip(previous, new, strict=True):
        if not (_usable(old) and _usable(now)):
            continue
        logs.append(math.log(now["relative_sensitivity"] / old["relative_sensitivity"]))
        variances.append(
            (now["relative_sensitivity_error"] / now["relative_sensitivity"]) ** 2
            + (old["relative_sensitivity_error"] / old["relative_sensitivity"]) ** 2
        )
        used.append([old["reco_energy_low_tev"], old["reco_energy_high_tev"]])
    if not logs:
        return {"bins_used": [], "ratio": None, "ratio_error": None, "improvement_sigmas": None}
    mean = sum(logs) / len(logs)
    log_error = math.sqrt(sum(variances)) / len(logs)
    ratio = math.exp(mean)
    error = ratio * log_error
    return {
        "bins_used": used,
        "ratio": ratio,
        "ratio_error": error,
        "improvement_sigmas": (1.0 - ratio) / error if error > 0 else None,
    }


def integral(bins: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The sensitivity over all the table's energies at once (the cuts stay those of each
    bin): signal and background summed over the bins, under the same conditions. More
    simulated events stand behind it than behind any bin, so its error is smaller. Each sum's
    error is Poisson with each event weighted by its bin's mean weight, passed on as an
    equivalent number of events; None without signal or protons."""
    signal = sum(b["n_signal_weighted"] for b in bins)
    background = sum(b["n_background_weighted"] for b in bins)
    out: dict[str, Any] = {
        "n_signal_events": sum(b["n_signal_events"] for b in bins),
        "n_background_events": sum(b["n_background_events"] for b in bins),
        "relative_sensitivity": None,
        "relative_sensitivity_error": None,
    }
    if signal <= 0 or background <= 0:
        return out

    def equivalent(weighted: str, events: str) -> float:
        total = sum(b[weighted] for b in bins)
        variance = sum(b[weighted] ** 2 / b[events] for b in bins if b[events] > 0)
        return float(total**2 / variance)

    s, b = np.array([signal]), np.array([background])
    relative = float(_relative(s, b, ALPHA)[0])
    error = relative_errors(
        s,
        np.array([equivalent("n_signal_weighted", "n_signal_events")]),
        b,
        np.array([equivalent("n_background_weighted", "n_background_events")]),
    )[0]
    out["relative_sensitivity"] = _finite(relative)
    out["relative_sensitivity_error"] = _finite(error * relative)
    return out


def ratio_of(previous: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """new / previous of two ``relative_sensitivity`` with their errors (independent, added
    in quadrature), and (1 - ratio) / error; None where either lacks a value or an error."""
    a, b = previous.get("relative_sensitivity"), new.get("relative_sensitivity")
    ea, eb = previous.get("relative_sensitivity_error"), new.get("relative_sensitivity_error")
    if not a or not b:
        return {"ratio": None, "ratio_error": None, "improvement_sigmas": None}
    ratio = b / a
    error = ratio * math.hypot(ea / a, eb / b) if ea is not None and eb is not None else None
    sigmas = (1.0 - ratio) / error if error else None
    return {"ratio": ratio, "ratio_error": error, "improvement_sigmas": sigmas}


def implied_by_counts(
    n_on: float,
    n_off: float,
    alpha: float,
    livetime_s: float,
    reference_time: u.Quantity = REFERENCE_TIME,
) -> dict[str, Any]:
    """The sensitivity a night's own counts imply: its excess rate in ON and background rate
    (alpha x OFF) scaled to ``reference_time``, and the fraction of the observed source's flux
    that would give 5 sigma there (same conditions as :func:`from_events`, OFF regions
    1 / ``ALPHA`` times the ON region). Its relative error carries the Poisson errors of ON
    and OFF the same way; with few OFF counts it is large, and ``note`` says so."""
    if n_on < 0 or n_off < 0:
        raise InvalidInput(f"counts must not be negative (ON {n_on}, OFF {n_off})")
    if not 0 < alpha <= 1:
        raise InvalidInput(f"alpha must lie in (0, 1], got {alpha}")
    if not livetime_s > 0:
        raise InvalidInput(f"livetime must be positive, got {livetime_s} s")
    hours = livetime_s / 3600.0
    excess = n_on - alpha * n_off
    background = alpha * n_off
    excess_error = math.sqrt(n_on + alpha**2 * n_off)
    out: dict[str, Any] = {
        "livetime_h": hours,
        "reference_time_h": reference_time.to_value(u.hour),
        "excess_rate_per_h": excess / hours,
        "excess_rate_error_per_h": excess_error / hours,
        "background_rate_per_h": background / hours,
        "background_rate_error_per_h": alpha * math.sqrt(n_off) / hours,
    }
    scale = reference_time.to_value(u.hour) / hours
    signal = np.array([excess * scale])
    off = np.array([background * scale / ALPHA])
    relative = error = math.nan
    if excess > 0:
        relative = float(_relative(signal, off, ALPHA)[0])
        # the excess's relative error as that of an equivalent number of events
        events = np.array([(excess / excess_error) ** 2])
        error = float(relative_errors(signal, events, off, np.array([n_off]))[0]) * relative
    out["relative_sensitivity"] = _finite(relative)
    out["relative_sensitivity_error"] = _finite(error)
    notes = []
    if excess <= 0:
        notes.append("no excess: the data imply no sensitivity")
    if n_off < 10:
        notes.append(
            f"only {n_off:g} OFF events: the background rate is uncertain by "
            f"{100 / math.sqrt(n_off):.0f} %, and this sensitivity with it"
            if n_off > 0
            else "no OFF event: the background rate is unknown"
        )
    out["note"] = "; ".join(notes) or None
    return out


__all__ = [
    "ALPHA",
    "EXTNAME",
    "REFERENCE_TIME",
    "figure_of_merit",
    "from_events",
    "implied_by_counts",
    "integral",
    "ratio_of",
    "relative_errors",
    "table_from_hdu",
    "to_hdu",
]
