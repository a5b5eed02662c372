"""The point-source flux sensitivity and its error, against cases computed by hand.

Each energy bin of the synthetic samples below is built so one condition sets the
sensitivity: bin 0 the 5 sigma of Li & Ma (checked with the formula written out here, not
pyirf's), bin 1 the 10 excess events, bin 2 the excess of 5 % of the background; so the
sensitivity and the dependence of its error on each count are known without pyirf.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable, vstack
from pyirf.sensitivity import relative_sensitivity
from pyirf.spectral import PowerLaw

from dpps.core.errors import InvalidInput
from dpps.pipelines.datapipe import irf, sensitivity
from dpps.pipelines.tool import EXIT_OK, run_tool

pytestmark = pytest.mark.verifies_usecase("UC-130-1.6")

BINS = np.array([0.1, 1.0, 10.0, 100.0]) * u.TeV
CENTRES = [0.3, 3.0, 30.0]
ALPHA = 0.2
THETA = 0.1 * u.deg
RING = 1.0 * u.deg
#: (simulated gammas, weighted signal, simulated protons, weighted background in ON) per bin
CASES = [(100, 1000.0, 400, 100.0), (20, 20.0, 1, 0.01), (50, 5000.0, 200, 1.0e6)]
SPECTRUM = PowerLaw(1e-11 * u.Unit("cm-2 s-1 TeV-1"), -2.5)


def li_ma(n_on: float, n_off: float, alpha: float) -> float:
    """Li & Ma (1983) eq. 17."""
    on = n_on * math.log((1 + alpha) / alpha * n_on / (n_on + n_off))
    off = n_off * math.log((1 + alpha) * n_off / (n_on + n_off))
    return math.sqrt(2 * (on + off))


def _events(n: int, energy_tev: float, weight: float, **columns: Any) -> QTable:
    table = QTable()
    table["reco_energy"] = np.full(n, energy_tev) * u.TeV
    table["gh_score"] = np.full(n, columns.get("gh_score", 0.9))
    table["multiplicity"] = np.full(n, columns.get("multiplicity", 3))
    table["theta"] = np.full(n, columns.get("theta", 0.05)) * u.deg
    table["reco_source_fov_offset"] = np.full(n, columns.get("offset", 0.5)) * u.deg
    table["weight"] = np.full(n, weight)
    return table


def _ring_to_on() -> float:
    """ON region / background ring: estimate_background scales the ring's protons by it."""
    return float((1 - np.cos(THETA)) / (1 - np.cos(RING)))


def _samples() -> tuple[QTable, QTable]:
    gammas, protons = [], []
    for centre, (n_s, signal, n_b, background_on) in zip(CENTRES, CASES, strict=True):
        gammas.append(_events(n_s, centre, signal / n_s))
        protons.append(_events(n_b, centre, background_on / _ring_to_on() / n_b))
        # what the cuts must drop: not gamma-like, too few telescopes, outside theta, ring
        gammas.append(_events(7, centre, 1e6, gh_score=0.1))
        gammas.append(_events(7, centre, 1e6, multiplicity=1))
        gammas.append(_events(7, centre, 1e6, theta=0.3))
        protons.append(_events(7, centre, 1e9, gh_score=0.1))
        protons.append(_events(7, centre, 1e9, offset=1.5))
    return vstack(gammas), vstack(protons)


@pytest.fixture(scope="module")
def table() -> QTable:
    gammas, protons = _samples()
    cuts = irf.fixed_cuts(BINS, 0.5, THETA, 2)
    return sensitivity.from_events(
        gammas, protons, cuts, BINS, fov_offset_max=RING, spectrum=SPECTRUM, alpha=ALPHA
    )


def test_counts_behind_each_bin_are_the_selected_events(table: QTable) -> None:
    for row, (n_s, signal, n_b, background_on) in zip(table, CASES, strict=True):
        assert row["n_signal_events"] == n_s
        assert row["n_signal_weighted"] == pytest.approx(signal)
        assert row["n_background_events"] == n_b
        # the OFF regions are 1 / alpha times the ON region
        assert row["n_background_weighted"] == pytest.approx(background_on / ALPHA)


def test_five_sigma_li_ma_sets_the_background_limited_bin(table: QTable) -> None:
    row = table[0]
    signal, n_off = row["n_signal_weighted"], row["n_background_weighted"]
    needed = row["relative_sensitivity"] * signal
    assert li_ma(needed + ALPHA * n_off, n_off, ALPHA) == pytest.approx(5.0, abs=1e-4)
    assert needed > 10
    assert needed > 0.05 * ALPHA * n_off
    # the spectrum at the bin's centre (pyirf's: the arithmetic mean, 0.55 TeV)
    flux = SPECTRUM(0.55 * u.TeV).to_value("cm-2 s-1 TeV-1") * row["relative_sensitivity"]
    assert row["flux_sensitivity"].to_value("cm-2 s-1 TeV-1") == pytest.approx(flux)
    # error: 1/sqrt(n) from the gammas, and from the protons at most their 1/sqrt(n) / 2
    # (pure sqrt(B) scaling); more than the gammas' alone
    n_s, _, n_b, _ = CASES[0]
    error = row["relative_sensitivity_error"] / row["relative_sensitivity"]
    assert 1 / math.sqrt(n_s) < error <= math.hypot(1 / math.sqrt(n_s), 0.5 / math.sqrt(n_b))


def test_ten_events_set_the_bin_without_background(table: QTable) -> None:
    row = table[1]
    assert row["relative_sensitivity"] == pytest.approx(10 / 20)
    # the background does not matter here: the error is the 20 gammas' alone
    assert row["relative_sensitivity_error"] == pytest.approx(0.5 / math.sqrt(20))


def test_five_percent_of_the_background_sets_the_bin_with_most(table: QTable) -> None:
    row = table[2]
    assert row["relative_sensitivity"] == pytest.approx(0.05 * 1.0e6 / 5000)
    # linear in the background: both counts' errors add in full
    assert row["relative_sensitivity_error"] == pytest.approx(10 * math.sqrt(1 / 50 + 1 / 200))


def test_the_table_survives_fits_and_agrees_with_pyirf(table: QTable, tmp_path: Path) -> None:
    path = tmp_path / "s.fits"
    fits.HDUList([fits.PrimaryHDU(), sensitivity.to_hdu(table, 50 * u.hour)]).writeto(path)
    with fits.open(path) as hdul:
        read = sensitivity.table_from_hdu(hdul["SENSITIVITY"], "s.fits")
    assert read["observation_time_h"] == 50.0
    assert read["alpha"] == ALPHA
    assert (read["min_significance"], read["min_signal_events"]) == (5.0, 10.0)
    for row in read["bins"]:
        s, off = row["n_signal_weighted"], row["n_background_weighted"]
        expected = float(relative_sensitivity(s + ALPHA * off, off, ALPHA))
        assert row["relative_sensitivity"] == pytest.approx(expected)


def _bin(low: float, rel: float | None, fraction: float | None, n: int = 100) -> dict[str, Any]:
    """A sensitivity bin whose error is ``fraction`` of its sensitivity."""
    return {
        "reco_energy_low_tev": low,
        "reco_energy_high_tev": low * 10,
        "n_signal_events": n,
        "n_background_events": n,
        "relative_sensitivity": rel,
        "relative_sensitivity_error": None if rel is None or fraction is None else rel * fraction,
    }


def test_figure_of_merit_is_the_geometric_mean_ratio_with_its_error() -> None:
    previous = [_bin(0.1, 0.01, 0.1), _bin(1, 0.02, 0.1), _bin(10, 0.05, 0.1, n=3)]
    new = [_bin(0.1, 0.008, 0.1), _bin(1, 0.01, 0.1), _bin(10, 0.001, 0.1, n=3)]
    merit = sensitivity.figure_of_merit(previous, new)
    # the third bin has too few simulated events to count
    assert merit["bins_used"] == [[0.1, 1.0], [1, 10]]
    assert merit["ratio"] == pytest.approx(math.sqrt(0.8 * 0.5))
    # each log-ratio has error sqrt(0.1^2 + 0.1^2); their mean sqrt(2 * 0.02) / 2
    assert merit["ratio_error"] == pytest.approx(math.sqrt(0.4) * 0.1)
    assert merit["improvement_sigmas"] == pytest.approx(
        (1 - math.sqrt(0.4)) / merit["ratio_error"]
    )
    none = sensitivity.figure_of_merit([_bin(1, None, None)], [_bin(1, 0.1, 0.1)])
    assert none["ratio"] is None
    assert none["bins_used"] == []


def test_the_sensitivity_over_all_energies_sums_the_bins(table: QTable, tmp_path: Path) -> None:
    """Bins 0 and 1 together: signal 1020 from 120 gammas, background 100.01 (ON) from 401
    protons; the background's error is the first bin's (the second's protons weigh nothing)."""
    path = tmp_path / "s.fits"
    fits.HDUList([fits.PrimaryHDU(), sensitivity.to_hdu(table[:2], 50 * u.hour)]).writeto(path)
    with fits.open(path) as hdul:
        bins = sensitivity.table_from_hdu(hdul["SENSITIVITY"], "s.fits")["bins"]
    whole = sensitivity.integral(bins)
    assert (whole["n_signal_events"], whole["n_background_events"]) == (120, 401)
    signal, n_off = 1020.0, 100.01 / ALPHA
    needed = whole["relative_sensitivity"] * signal
    assert li_ma(needed + ALPHA * n_off, n_off, ALPHA) == pytest.approx(5.0, abs=1e-4)
    # gammas: weights 10 (100 of them) and 1 (20): equivalent to 1020^2 / (100 * 10^2 + 20)
    equivalent = 1020.0**2 / (100 * 10.0**2 + 20 * 1.0**2)
    error = whole["relative_sensitivity_error"] / whole["relative_sensitivity"]
    assert 1 / math.sqrt(equivalent) < error < math.hypot(1 / math.sqrt(equivalent), 0.05)
    ratio = sensitivity.ratio_of(
        {"relative_sensitivity": 0.02, "relative_sensitivity_error": 0.002},
        {"relative_sensitivity": 0.01, "relative_sensitivity_error": 0.001},
    )
    assert ratio["ratio"] == pytest.approx(0.5)
    assert ratio["ratio_error"] == pytest.approx(0.5 * math.hypot(0.1, 0.1))
    assert ratio["improvement_sigmas"] == pytest.approx(0.5 / ratio["ratio_error"])
    nothing = sensitivity.integral([{**b, "n_background_weighted": 0.0} for b in bins])
    assert nothing["relative_sensitivity"] is None


def test_the_sensitivity_a_nights_counts_imply() -> None:
    """ON 48, OFF 3 (alpha 0.2) in one hour, scaled to 50 h: excess 2370, background 30."""
    m = sensitivity.implied_by_counts(48, 3, 0.2, 3600.0)
    assert m["excess_rate_per_h"] == pytest.approx(47.4)
    assert m["background_rate_per_h"] == pytest.approx(0.6)
    assert m["background_rate_error_per_h"] == pytest.approx(0.2 * math.sqrt(3))
    needed = m["relative_sensitivity"] * 47.4 * 50
    assert li_ma(needed + 30, 150, 0.2) == pytest.approx(5.0, abs=1e-4)
    signal_only = math.sqrt(48 + 0.04 * 3) / 47.4
    assert m["relative_sensitivity_error"] > signal_only * m["relative_sensitivity"]
    assert "3 OFF events" in m["note"]
    plenty = sensitivity.implied_by_counts(4800, 3000, 0.2, 3600.0)
    assert plenty["note"] is None
    nothing = sensitivity.implied_by_counts(0, 5, 0.2, 3600.0)
    assert nothing["relative_sensitivity"] is None
    assert "no excess" in nothing["note"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 3, 0.2, 10.0), "must not be negative"),
        ((5, 3, 0.0, 10.0), "alpha must lie"),
        ((5, 3, 0.2, 0.0), "livetime must be positive"),
    ],
)
def test_impossible_counts_are_refused(
    args: tuple[float, float, float, float], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        sensitivity.implied_by_counts(*args)


def test_bad_inputs_are_refused_clearly() -> None:
    gammas, protons = _samples()
    cuts = irf.fixed_cuts(BINS, 0.5, THETA, 2)
    del protons["weight"]
    with pytest.raises(InvalidInput, match="protons: no weight column"):
        sensitivity.from_events(
            gammas, protons, cuts, BINS, fov_offset_max=RING, spectrum=SPECTRUM
        )
    with pytest.raises(InvalidInput, match="must not be negative"):
        sensitivity.relative_errors(
            np.array([-1.0]), np.array([1]), np.array([1.0]), np.array([1])
        )
    with pytest.raises(InvalidInput, match="different energy bins"):
        sensitivity.figure_of_merit([_bin(1, 0.1, 0.1)], [_bin(2, 0.1, 0.1)])
    broken = fits.BinTableHDU(QTable({"x": [1.0]}), name="SENSITIVITY")
    with pytest.raises(InvalidInput, match="unreadable SENSITIVITY table"):
        sensitivity.table_from_hdu(broken, "broken.fits")


def test_datapipe_irf_writes_the_sensitivity_when_it_has_protons(
    irf_file: Path, production: dict[str, Path], tmp_path: Path
) -> None:
    with fits.open(irf_file) as hdul:
        read = sensitivity.table_from_hdu(hdul["SENSITIVITY"], irf_file.name)
    assert read["observation_time_h"] == 50.0
    finite = [b for b in read["bins"] if b["relative_sensitivity_error"] is not None]
    assert len(finite) >= 5
    assert all(b["n_signal_events"] > 0 and b["n_background_events"] > 0 for b in finite)
    fixed = {"cuts": "fixed", "gh_cut": 0.5, "theta_cut_deg": 0.2}
    result = run_tool("datapipe-irf", fixed, {"gammas": [production["gamma"]]}, tmp_path)
    assert result.exit_code == EXIT_OK, result.error
    with fits.open(tmp_path / "irf.fits") as hdul:
        assert "SENSITIVITY" not in hdul  # no protons, no background, no sensitivity
