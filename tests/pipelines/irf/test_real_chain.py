"""IRFs and DL3 on the real chain: SimPipe -> DataPipe DL2 (simulated and observed) -> DL3.

The toy-DL2 tests prove the physics against known answers; this one proves that the files the
real chain writes go through ``datapipe-irf`` and ``datapipe-dl3`` and come out as a data
store gammapy loads. The statistics of a test-sized chain are far too small for a spectrum fit.
"""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from dpps.pipelines.tool import run_tool

pytest.importorskip("dpps.pipelines.simpipe", reason="the real chain (SimPipe) is not installed")

from dpps.acada.simulate import SimulationConfig, simulate
from dpps.instrument.dl0 import quiet_native_stdout
from tests.pipelines.datapipe.chain import Chain, shared_chain


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return shared_chain(tmp_path_factory)


def _ok(result: object, what: str) -> None:
    assert getattr(result, "exit_code", None) == 0, f"{what}: {getattr(result, 'error', None)}"


@pytest.mark.verifies_usecase("UC-130-1.6")
def test_real_chain_to_dl3(chain: Chain, tmp_path: Path) -> None:
    # IRFs from the chain's simulated test DL2 (fixed cuts: a test-sized production is too
    # small to optimise on)
    irf = run_tool(
        "datapipe-irf",
        {"cuts": "fixed", "gh_cut": 0.5, "theta_cut_deg": 0.3},
        {"gammas": [chain.dl2["gamma_test"]], "protons": [chain.dl2["proton_test"]]},
        tmp_path / "irf",
    )
    _ok(irf, "datapipe-irf")
    aeff = fits.getdata(tmp_path / "irf" / "irf.fits", "EFFECTIVE AREA")["EFFAREA"]
    assert np.all(np.isfinite(aeff))
    assert aeff.max() > 0
    # (per bin, a few hundred showers fluctuate too much to compare with the thrown area)
    selected = fits.getheader(tmp_path / "irf" / "irf.fits")["NGAMSEL"]
    assert 0 < selected <= fits.getheader(chain.dl2["gamma_test"])["SIM_NSHW"]
    # an observation: ACADA-simulated DL0 -> DL1 (default calibration) -> DL2 with the models
    config = SimulationConfig(
        duration_s=12.0,
        event_rate_hz=12.0,
        triggers=False,
        calibration_fraction=0.0,
        muon_fraction=0.0,
        seed=5,
        events_per_chunk=1000,
    )
    with quiet_native_stdout():
        files = simulate(tmp_path / "acada", config)
    shower = [f for f in files if f.name.endswith("_TEL_SHOWER_CHUNK000.fits.fz")]
    pointing = [f for f in files if f.name.endswith("_POINTING.fits")][:1]
    dl1 = run_tool("datapipe-dl1", {}, {"dl0": shower, "pointing": pointing}, tmp_path / "dl1")
    _ok(dl1, "datapipe-dl1")
    target = {"name": "Crab", "ra_deg": 83.63, "dec_deg": 22.01}
    dl2 = run_tool(
        "datapipe-dl2",
        {"target": target},
        {"dl1": [dl1.outputs[0].path], "models": [chain.models]},
        tmp_path / "dl2",
    )
    _ok(dl2, "datapipe-dl2")
    dl3 = run_tool(
        "datapipe-dl3",
        {"pointing_tolerance_deg": 0.2},
        {"dl2": [dl2.outputs[0].path], "irf": [tmp_path / "irf" / "irf.fits"]},
        tmp_path / "dl3",
    )
    _ok(dl3, "datapipe-dl3")
    from gammapy.data import DataStore

    store = DataStore.from_dir(tmp_path / "dl3")
    obs_id = int(store.obs_table["OBS_ID"][0])
    observation = store.obs(obs_id, required_irf="point-like")
    header = fits.getheader(next((tmp_path / "dl3").glob("*.events.fits")), "EVENTS")
    pointing_sky = SkyCoord(header["RA_PNT"] * u.deg, header["DEC_PNT"] * u.deg)
    events = observation.events.radec
    assert len(events) > 0
    # the ACADA model's showers come from the camera centre: events near the pointing
    assert np.median(events.separation(pointing_sky).deg) < 1.0
    assert observation.aeff.data.max() > 0
