"""The analysis checked against the simulation (``dl3_truth``): the OFF regions' counts
against the background IRF's prediction, and the pulls, on the toy chain's known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dpps.pipelines.datapipe import toy_dl2 as dl2_factory
from dpps.pipelines.datapipe.dl3_analysis import OffExposure, fit_power_law
from dpps.pipelines.datapipe.dl3_truth import (
    PULL_LIMIT,
    BackgroundIRF,
    check,
    predict_off,
    read_background,
)
from dpps.pipelines.tool import run_tool


def _exposure(counts_off: int = 4, offset: float = 0.4) -> OffExposure:
    return OffExposure(
        obs_id=1,
        livetime_s=100.0,
        offset_deg=offset,
        energy_edges_tev=(0.1, 1.0, 10.0),
        safe=(True, False),
        n_regions=(3.0, 3.0),
        rad_max_deg=(0.1, 0.2),
        counts_off=(counts_off, 7),
    )


def test_prediction_is_rate_times_energy_solid_angle_and_time() -> None:
    """A flat rate over one IRF bin: the prediction is rate x dE x OFF solid angle x time for
    the safe analysis bins only, its error the rate's Poisson error of the simulated
    protons behind it."""
    irf = BackgroundIRF(
        energy_edges_tev=np.array([0.01, 100.0]),
        offset_edges_deg=np.array([0.0, 1.0]),
        rate=np.array([[2.0]]),  # s-1 TeV-1 sr-1
        events=np.array([[25.0]]),
    )
    got = predict_off(irf, [_exposure()])
    omega = 3 * math.pi * 0.1**2 * (math.pi / 180) ** 2
    expected = 2.0 * 0.9 * omega * 100.0
    assert got.predicted == pytest.approx(expected)
    assert got.predicted_error == pytest.approx(expected / 5)  # 1 / sqrt(25)
    assert got.measured == 4  # the unsafe bin's 7 do not count
    assert got.ratio == pytest.approx(4 / expected)
    assert got.pull == pytest.approx((4 - expected) / math.sqrt(expected + (expected / 5) ** 2))


def test_an_offset_outside_the_background_irf_is_refused() -> None:
    irf = BackgroundIRF(
        np.array([0.01, 100.0]), np.array([0.0, 0.3]), np.ones((1, 1)), np.ones((1, 1))
    )
    with pytest.raises(Exception, match="not in IRF"):
        predict_off(irf, [_exposure(offset=0.4)])


@pytest.mark.verifies_usecase("UC-130-1.6")
def test_off_counts_agree_with_the_background_irf_and_the_spectrum_with_the_simulation(
    production: dict[str, Path], observations: list[Path], tmp_path: Path
) -> None:
    """The toy chain's observations hold protons at the cosmic-ray flux the IRF's protons are
    weighted to: the reflected regions' counts must agree with the background IRF within the
    statistics of both (the bound is computed from the counts), and the fitted spectrum with
    the simulated one; nothing is flagged."""
    inputs = {"gammas": [production["gamma"]], "protons": [production["proton"]]}
    irf_dir, dl3_dir = tmp_path / "irf", tmp_path / "dl3"
    result = run_tool("datapipe-irf", {"background": True}, inputs, irf_dir)
    assert result.exit_code == 0, result.error
    irf_file = irf_dir / "irf.fits"
    result = run_tool("datapipe-dl3", {}, {"dl2": observations, "irf": [irf_file]}, dl3_dir)
    assert result.exit_code == 0, result.error
    fit = fit_power_law(dl3_dir, dl2_factory.CRAB_RA, dl2_factory.CRAB_DEC)
    background = predict_off(read_background(irf_file), fit.off_exposure)
    assert background.measured == fit.n_off > 0
    bound = 3 * math.sqrt(background.predicted + background.predicted_error**2)
    assert abs(background.measured - background.predicted) <= bound, background
    assert background.ratio_error > 0
    truth = check(fit, dl2_factory.SOURCE_INDEX, dl2_factory.SOURCE_AMPLITUDE, background)
    assert truth.flags == (), truth
    assert math.isfinite(fit.significance)
    assert math.isfinite(fit.alpha)


def test_a_pull_beyond_the_limit_is_flagged(
    production: dict[str, Path], observations: list[Path], dl3_dir: Path
) -> None:
    """A spectrum 'simulated' far from the fitted one is flagged, by name."""
    fit = fit_power_law(dl3_dir, dl2_factory.CRAB_RA, dl2_factory.CRAB_DEC)
    irf = BackgroundIRF(
        np.array([0.01, 100.0]), np.array([0.0, 2.0]), np.ones((1, 1)), np.ones((1, 1))
    )
    background = predict_off(irf, fit.off_exposure)
    wrong_index = fit.index + (PULL_LIMIT + 1) * fit.index_error
    truth = check(fit, wrong_index, fit.amplitude, background)
    assert any(f.startswith("index pull") for f in truth.flags)
    assert not any(f.startswith("amplitude") for f in truth.flags)
