"""Point-like instrument response functions from simulated DL2, with pyirf (pure functions).

A DL3 event list is only as good as the response it is analysed with, and the response is only
right if it was computed from simulations passed through *exactly* the selection applied to the
data. So the cuts are first-class here: they are computed (fixed, or optimised for sensitivity
on weighted gammas and protons, pyirf's EventDisplay-like procedure), applied to the simulated
gammas to build the IRFs, and written next to them (``GH_CUTS`` table, ``RAD_MAX``) so the DL3
writer reads the same cuts from the same file instead of from a configuration that may drift.

Nothing here reads or writes files; ``irf_tool`` does.
"""

from __future__ import annotations

import hashlib
import logging
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import angular_separation
from astropy.io import fits
from astropy.table import QTable
from pyirf.binning import bin_center, create_bins_per_decade
from pyirf.cut_optimization import optimize_gh_cut
from pyirf.cuts import calculate_percentile_cut, evaluate_binned_cut
from pyirf.io import (
    create_aeff2d_hdu,
    create_background_2d_hdu,
    create_energy_dispersion_hdu,
    create_rad_max_hdu,
)
from pyirf.irf import background_2d, effective_area_per_energy, energy_dispersion
from pyirf.simulations import SimulatedEventsInfo
from pyirf.spectral import PowerLaw, calculate_event_weights

from dpps.core.errors import InvalidInput
from dpps.pipelines.datapipe.dl2_contract import header_value

GH_CUTS_EXTNAME = "GH_CUTS"
#: Simulated protons behind each BACKGROUND bin (unweighted): the background's statistical
#: uncertainty, which a comparison of the measured background with it needs.
BKG_EVENTS_EXTNAME = "BKG_EVENTS"


# -- simulation bookkeeping ---------------------------------------------------------------------
def simulation_info(header: Mapping[str, Any], label: str) -> SimulatedEventsInfo:
    """pyirf's description of what was thrown, from the SIM_* keywords of simulated DL2."""
    n_showers = header_value(header, "SIM_NSHW", label, int)
    e_min = header_value(header, "SIM_EMIN", label)
    e_max = header_value(header, "SIM_EMAX", label)
    index = header_value(header, "SIM_IDX", label)
    r_max = header_value(header, "SIM_RMAX", label)
    cone = header_value(header, "SIM_VCON", label)
    if n_showers <= 0 or not 0 < e_min < e_max or r_max <= 0 or cone < 0:
        raise InvalidInput(
            f"{label}: inconsistent simulation header (SIM_NSHW={n_showers}, "
            f"SIM_EMIN={e_min}, SIM_EMAX={e_max}, SIM_RMAX={r_max}, SIM_VCON={cone})"
        )
    if index > -1:
        raise InvalidInput(f"{label}: SIM_IDX={index}: the spectral index must be <= -1")
    return SimulatedEventsInfo(
        n_showers=n_showers,
        energy_min=e_min * u.TeV,
        energy_max=e_max * u.TeV,
        max_impact=r_max * u.m,
        spectral_index=index,
        viewcone_min=0 * u.deg,
        viewcone_max=cone * u.deg,
    )


def combine_simulation_info(
    infos: Sequence[SimulatedEventsInfo], what: str
) -> SimulatedEventsInfo:
    """Files of one production add their showers; files of different setups cannot be mixed."""
    first = infos[0]
    for other in infos[1:]:
        for attr in ("energy_min", "energy_max", "max_impact", "spectral_index", "viewcone_max"):
            if not np.isclose(u.Quantity(getattr(first, attr)), u.Quantity(getattr(other, attr))):
                raise InvalidInput(
                    f"{what}: files come from different simulation setups "
                    f"({attr}: {getattr(first, attr)} vs {getattr(other, attr)})"
                )
    return SimulatedEventsInfo(
        n_showers=sum(i.n_showers for i in infos),
        energy_min=first.energy_min,
        energy_max=first.energy_max,
        max_impact=first.max_impact,
        spectral_index=first.spectral_index,
        viewcone_min=first.viewcone_min,
        viewcone_max=first.viewcone_max,
    )


def add_geometry(events: QTable) -> QTable:
    """Angular distances pyirf needs: reco and true offsets from the pointing, and theta."""
    out = events.copy(copy_data=False)

    def sep(az1: str, alt1: str, az2: str, alt2: str) -> u.Quantity:
        angle = angular_separation(events[az1], events[alt1], events[az2], events[alt2])
        return u.Quantity(angle).to(u.deg)

    out["true_source_fov_offset"] = sep("true_az", "true_alt", "pointing_az", "pointing_alt")
    out["reco_source_fov_offset"] = sep("reco_az", "reco_alt", "pointing_az", "pointing_alt")
    out["theta"] = sep("reco_az", "reco_alt", "true_az", "true_alt")
    return out


def event_weights(
    events: QTable, info: SimulatedEventsInfo, spectrum: Any, obstime: u.Quantity
) -> np.ndarray:
    """Weights that make the simulated sample look like ``spectrum`` observed for ``obstime``."""
    simulated = PowerLaw.from_simulation(info, obstime=obstime)
    try:
        return np.asarray(calculate_event_weights(events["true_energy"], spectrum, simulated))
    except u.UnitConversionError:
        kind = "diffuse" if info.viewcone_max > 0 * u.deg else "point-like"
        raise InvalidInput(
            f"a {kind} simulation cannot be weighted to this spectrum "
            "(protons must be simulated diffuse, gammas for a point source)"
        ) from None


# -- cuts ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cuts:
    """Gamma-like: multiplicity >= ``multiplicity`` and gh_score >= ``gh`` in its reco-energy
    bin; in the source region: theta <= ``theta`` in its bin. Outside the bins: rejected."""

    gh: QTable
    theta: QTable
    multiplicity: int
    mode: str


def _cut_table(bins: u.Quantity, values: u.Quantity | np.ndarray) -> QTable:
    table = QTable()
    table["low"] = bins[:-1]
    table["high"] = bins[1:]
    table["center"] = bin_center(bins)
    table["cut"] = values
    return table


def fixed_cuts(
    reco_energy_bins: u.Quantity, gh_cut: float, theta_cut: u.Quantity, multiplicity: int
) -> Cuts:
    n = len(reco_energy_bins) - 1
    return Cuts(
        _cut_table(reco_energy_bins, np.full(n, gh_cut)),
        _cut_table(reco_energy_bins, np.full(n, theta_cut.to_value(u.deg)) * u.deg),
        multiplicity,
        "fixed",
    )


def optimised_cuts(
    gammas: QTable,
    protons: QTable,
    reco_energy_bins: u.Quantity,
    *,
    multiplicity: int,
    gh_efficiencies: Sequence[float],
    theta_containment: float,
    theta_min: u.Quantity,
    theta_max: u.Quantity,
    fov_offset_max: u.Quantity,
    alpha: float,
) -> Cuts:
    """Theta: a containment fraction of the gammas per bin; gh: the efficiency with the best
    point-source sensitivity per bin. Both tables need ``weight`` columns (see
    :func:`event_weights`) and the columns of :func:`add_geometry`."""
    g = gammas[gammas["multiplicity"] >= multiplicity]
    p = protons[protons["multiplicity"] >= multiplicity]
    if len(g) == 0 or len(p) == 0:
        raise InvalidInput(f"no gammas or no protons left with multiplicity >= {multiplicity}")
    theta = calculate_percentile_cut(
        g["theta"],
        g["reco_energy"],
        bins=reco_energy_bins,
        fill_value=theta_max,
        percentile=theta_containment,
        min_value=theta_min,
        max_value=theta_max,
    )
    quiet = logging.getLogger("pyirf")  # one line per empty bin otherwise: not news
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        _, gh = optimize_gh_cut(
            g,
            p,
            reco_energy_bins=reco_energy_bins,
            gh_cut_efficiencies=np.asarray(gh_efficiencies, dtype=float),
            theta_cuts=theta,
            op=operator.ge,
            fov_offset_max=fov_offset_max,
            alpha=alpha,
            progress=False,
        )
    finally:
        quiet.setLevel(level)
    counts, _ = np.histogram(
        u.Quantity(g["reco_energy"]).to_value(u.TeV), reco_energy_bins.to_value(u.TeV)
    )
    theta["cut"] = _nearest_filled(u.Quantity(theta["cut"]).to(u.deg), counts)
    gh_cut = _nearest_filled(np.asarray(gh["cut"], dtype=float), counts)
    return Cuts(_cut_table(reco_energy_bins, gh_cut), theta, multiplicity, "optimised")


#: Fewer simulated gammas than this in a reco-energy bin: its cut is not computed (pyirf's
#: ``calculate_percentile_cut`` default), it is taken from the nearest bin that has enough.
MIN_EVENTS_PER_CUT_BIN = 10


def _nearest_filled(values: Any, counts: np.ndarray) -> Any:
    """Cuts of sparse bins from the nearest well-filled bin: pyirf fills them with the most
    extreme value (gh 1.0, the largest theta), which rejects nearly every real gamma of those
    energies or, for theta, lets in four times the background. No filled bin: unchanged."""
    filled = np.flatnonzero(counts >= MIN_EVENTS_PER_CUT_BIN)
    if filled.size == 0:
        return values
    out = values.copy()
    for i in np.flatnonzero(counts < MIN_EVENTS_PER_CUT_BIN):
        out[i] = values[filled[np.argmin(np.abs(filled - i))]]
    return out


def gamma_like(events: QTable, cuts: Cuts) -> np.ndarray:
    """The event selection of DL3: multiplicity and gamma/hadron cut (no direction cut)."""
    passed = evaluate_binned_cut(events["gh_score"], events["reco_energy"], cuts.gh, operator.ge)
    return np.asarray(passed & (np.asarray(events["multiplicity"]) >= cuts.multiplicity))


@dataclass(frozen=True)
class Separation:
    """The gamma/hadron separation measured on simulated samples (the IRF's own: events the
    classifier was not trained on): gamma efficiency and proton rejection of the chosen cut
    (multiplicity and gh, no direction cut) and the area under the ROC curve of the score."""

    gamma_efficiency: float
    proton_rejection: float
    roc_auc: float
    n_gammas: int
    n_protons: int
    n_protons_passed: int

    def cards(self) -> dict[str, float | int]:
        """Primary-header keywords (the archive indexes them as the file's metadata)."""
        return {
            "GHEFF": round(self.gamma_efficiency, 4),
            "PROTREJ": round(self.proton_rejection, 5),
            "ROCAUC": round(self.roc_auc, 4),
            "NGTEST": self.n_gammas,
            "NPTEST": self.n_protons,
        }


def separation(gammas: QTable, protons: QTable, cuts: Cuts) -> Separation:
    """Efficiency, rejection and ROC AUC over the events with the multiplicity the cuts ask
    for and a reconstructed energy inside the cut table (those DL3 could keep)."""
    from sklearn.metrics import roc_auc_score

    lo, hi = cuts.gh["low"][0], cuts.gh["high"][-1]

    def candidates(events: QTable) -> QTable:
        e = events["reco_energy"]
        keep = (np.asarray(events["multiplicity"]) >= cuts.multiplicity) & (e >= lo) & (e < hi)
        return events[keep]

    g, p = candidates(gammas), candidates(protons)
    if len(g) == 0 or len(p) == 0:
        raise InvalidInput("no gamma or no proton to measure the gamma/hadron separation on")
    passed_g, passed_p = int(gamma_like(g, cuts).sum()), int(gamma_like(p, cuts).sum())
    scores = np.concatenate([np.asarray(g["gh_score"]), np.asarray(p["gh_score"])])
    labels = np.concatenate([np.ones(len(g)), np.zeros(len(p))])
    return Separation(
        gamma_efficiency=passed_g / len(g),
        proton_rejection=1.0 - passed_p / len(p),
        roc_auc=float(roc_auc_score(labels, scores)),
        n_gammas=len(g),
        n_protons=len(p),
        n_protons_passed=passed_p,
    )


def in_theta(events: QTable, cuts: Cuts) -> np.ndarray:
    passed = evaluate_binned_cut(events["theta"], events["reco_energy"], cuts.theta, operator.le)
    return np.asarray(passed)


# -- IRFs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Binning:
    true_energy: u.Quantity
    reco_energy: u.Quantity
    migration: np.ndarray
    fov_offset: u.Quantity  # one bin: point-like IRFs for a source at one offset
    background_offset: u.Quantity


def make_binning(
    *,
    true_energy: tuple[float, float, int],
    reco_energy: tuple[float, float, int],
    migration: tuple[float, float, int],
    fov_offset_max: float,
    background_offset_max: float,
    background_offset_bins: int,
) -> Binning:
    """Energies as (min TeV, max TeV, bins per decade); migration as (min, max, bins)."""
    for name, (lo, hi, n) in (("true", true_energy), ("reco", reco_energy), ("migra", migration)):
        if not 0 < lo < hi or n < 1:
            raise InvalidInput(f"{name} binning: need 0 < min < max and bins >= 1")
    return Binning(
        create_bins_per_decade(true_energy[0] * u.TeV, true_energy[1] * u.TeV, true_energy[2]),
        create_bins_per_decade(reco_energy[0] * u.TeV, reco_energy[1] * u.TeV, reco_energy[2]),
        np.geomspace(migration[0], migration[1], migration[2] + 1),
        np.array([0.0, fov_offset_max]) * u.deg,
        np.linspace(0.0, background_offset_max, background_offset_bins + 1) * u.deg,
    )


@dataclass(frozen=True)
class PointLikeIRF:
    aeff: u.Quantity  # (n_true, 1) m2
    edisp: np.ndarray  # (n_true, n_migra, 1)
    rad_max: u.Quantity  # (n_reco_cut, 1) deg
    background: u.Quantity | None  # (n_reco, n_offset) s-1 TeV-1 sr-1, full enclosure
    background_events: np.ndarray | None  # (n_reco, n_offset) simulated protons per bin
    cuts: Cuts
    binning: Binning
    n_selected: int


def point_like_irf(
    gammas: QTable,
    gamma_info: SimulatedEventsInfo,
    cuts: Cuts,
    binning: Binning,
    *,
    protons: QTable | None = None,
    background_time: u.Quantity | None = None,
) -> PointLikeIRF:
    """Effective area and energy dispersion of the gammas that pass every cut, RAD_MAX from the
    theta cut, and optionally the rate of gamma-like protons (``protons`` need ``weight``
    computed for ``background_time``)."""
    selected = gammas[gamma_like(gammas, cuts) & in_theta(gammas, cuts)]
    if len(selected) == 0:
        raise InvalidInput("no simulated gamma passes the cuts: the IRF would be empty")
    offset = selected["true_source_fov_offset"]
    if np.any(offset >= binning.fov_offset[-1]):
        raise InvalidInput(
            f"the source offset ({offset.max():.2f}) lies outside the IRF offset range "
            f"(max {binning.fov_offset[-1]}); raise fov_offset_max_deg"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        aeff = effective_area_per_energy(selected, gamma_info, binning.true_energy)
    # bins outside the simulated energy range threw nothing (0/0): no response known there, so
    # none claimed (NaN would poison every science tool's interpolation)
    aeff = np.nan_to_num(aeff, nan=0.0)[:, np.newaxis]
    edisp = energy_dispersion(selected, binning.true_energy, binning.fov_offset, binning.migration)
    rad_max = u.Quantity(cuts.theta["cut"]).to(u.deg)[:, np.newaxis]
    background = background_events = None
    if protons is not None and background_time is not None:
        chosen = protons[gamma_like(protons, cuts)]
        background = background_2d(
            chosen, binning.reco_energy, binning.background_offset, background_time
        )
        background_events, _, _ = np.histogram2d(
            u.Quantity(chosen["reco_energy"]).to_value(u.TeV),
            u.Quantity(chosen["reco_source_fov_offset"]).to_value(u.deg),
            bins=[binning.reco_energy.to_value(u.TeV), binning.background_offset.to_value(u.deg)],
        )
    return PointLikeIRF(
        aeff, edisp, rad_max, background, background_events, cuts, binning, len(selected)
    )


def irf_id(irf: PointLikeIRF) -> str:
    """A content identifier: the same response gives the same id, whatever the run time."""
    digest = hashlib.blake2b(digest_size=8)
    for array in (irf.aeff.value, irf.edisp, irf.rad_max.value, np.asarray(irf.cuts.gh["cut"])):
        digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
    digest.update(str(irf.cuts.multiplicity).encode())
    return f"irf-{digest.hexdigest()}"


def irf_hdus(irf: PointLikeIRF, cards: Mapping[str, Any]) -> list[fits.BinTableHDU]:
    """GADF point-like HDUs (pyirf's writers) plus the gamma/hadron cut table."""
    b = irf.binning
    hdus = [
        create_aeff2d_hdu(
            irf.aeff,
            b.true_energy,
            b.fov_offset,
            extname="EFFECTIVE AREA",
            point_like=True,
            **cards,
        ),
        create_energy_dispersion_hdu(
            irf.edisp,
            b.true_energy,
            b.migration,
            b.fov_offset,
            point_like=True,
            extname="ENERGY DISPERSION",
            **cards,
        ),
        create_rad_max_hdu(irf.rad_max, _edges(irf.cuts.theta), b.fov_offset, **cards),
    ]
    gh = QTable()
    gh["low"], gh["high"] = irf.cuts.gh["low"], irf.cuts.gh["high"]
    gh["cut"] = np.asarray(irf.cuts.gh["cut"], dtype=float)
    table = fits.table_to_hdu(gh)
    table.name = GH_CUTS_EXTNAME
    table.header["MULTIMIN"] = (irf.cuts.multiplicity, "minimum telescope multiplicity")
    table.header["CUTMODE"] = (irf.cuts.mode, "fixed or optimised")
    table.header["GHOP"] = ("ge", "an event is gamma-like if gh_score >= cut")
    hdus.append(table)
    if irf.background is not None:
        hdus.append(
            create_background_2d_hdu(irf.background, b.reco_energy, b.background_offset, **cards)
        )
    if irf.background_events is not None:
        counts = QTable()
        counts["COUNTS"] = irf.background_events.T[np.newaxis].astype(np.int64)
        events = fits.table_to_hdu(counts)
        events.name = BKG_EVENTS_EXTNAME
        events.header["COMMENT"] = "simulated protons per BACKGROUND bin (same axes), unweighted"
        hdus.append(events)
    return hdus


def _edges(table: QTable) -> u.Quantity:
    return u.Quantity(
        np.append(table["low"].to_value(u.TeV), table["high"][-1].to_value(u.TeV)), u.TeV
    )


def cuts_from_hdu(hdu: fits.BinTableHDU, label: str) -> Cuts:
    """The gamma/hadron cuts stored with an IRF (the direction cut is the IRF's RAD_MAX, which
    DL3 leaves to the science tool: the source position is not known at DL3)."""
    try:
        table = QTable.read(hdu)
        multiplicity = int(hdu.header["MULTIMIN"])
        low, high = u.Quantity(table["low"]).to(u.TeV), u.Quantity(table["high"]).to(u.TeV)
        cut = np.asarray(table["cut"], dtype=float)
    except (KeyError, ValueError, TypeError, u.UnitsError) as exc:
        raise InvalidInput(f"{label}: unreadable {GH_CUTS_EXTNAME} table: {exc}") from None
    if len(cut) == 0 or np.any(~np.isfinite(cut)) or np.any(high <= low):
        raise InvalidInput(f"{label}: {GH_CUTS_EXTNAME} table is empty or malformed")
    gh = _cut_table(np.append(low.value, high[-1].value) * u.TeV, cut)
    return Cuts(gh, QTable(), multiplicity, str(hdu.header.get("CUTMODE", "unknown")))
