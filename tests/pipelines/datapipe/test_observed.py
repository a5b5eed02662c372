"""Observed data: ACADA-simulated DL0 with CalibPipe products -> DL1 -> DL2 (observed keywords)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits

from dpps.acada.simulate import SimulationConfig, simulate
from dpps.core.errors import ConfigError
from dpps.instrument.dl0 import quiet_native_stdout
from dpps.pipelines.datapipe.dl2_contract import read_dl2
from dpps.pipelines.tool import EXIT_FAILURE, run_tool
from tests.pipelines.datapipe.chain import Chain


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    landing = tmp_path_factory.mktemp("acada")
    config = SimulationConfig(
        duration_s=12.0,
        event_rate_hz=12.0,
        triggers=False,
        calibration_fraction=0.15,
        muon_fraction=0.0,
        seed=5,
        events_per_chunk=1000,
    )
    with quiet_native_stdout():
        files = simulate(landing, config)
    return {
        "shower": [f for f in files if f.name.endswith("_TEL_SHOWER_CHUNK000.fits.fz")],
        "cal": [f for f in files if "_TEL_CAL_" in f.name],
        "pointing": [f for f in files if f.name.endswith("_POINTING.fits")],
    }


@pytest.mark.verifies_usecase("UC-130-1.2.1")
@pytest.mark.verifies_usecase("UC-130-1.2.2")
def test_observation_with_calibration_products(
    night: dict[str, list[Path]], chain: Chain, tmp_path: Path
) -> None:
    cal = run_tool("calibpipe-camera", {"min_events": 4}, {"dl0": night["cal"]}, tmp_path / "cal")
    assert cal.exit_code == 0, cal.error
    products = [o.path for o in cal.outputs]
    assert len(products) == 4
    dl1 = run_tool(
        "datapipe-dl1",
        {},
        {"dl0": night["shower"], "calibration": products, "pointing": night["pointing"][:1]},
        tmp_path / "dl1",
    )
    assert dl1.exit_code == 0, dl1.error
    with h5py.File(dl1.outputs[0].path) as f:
        calib = str(f.attrs["CALIB"])
        assert all(f"{t}:TEL{t:03d}_" in calib for t in (1, 2, 3, 4))  # products, not defaults
        assert f.attrs["PNT_ALT"] == pytest.approx(70.0, abs=0.01)
        assert "simulation" not in f
    dl2 = run_tool(
        "datapipe-dl2",
        {"target": {"name": "Crab", "ra_deg": 83.63, "dec_deg": 22.01}},
        {"dl1": [dl1.outputs[0].path], "models": [chain.models]},
        tmp_path / "dl2",
    )
    assert dl2.exit_code == 0, dl2.error
    events = read_dl2(dl2.outputs[0].path, simulated=False).events  # the contract's reader
    header = fits.getheader(dl2.outputs[0].path)
    assert header["OBSERVAT"] == "CTAO-North"
    assert header["OBJECT"] == "Crab"
    assert header["OBS_ID"] == 1
    assert header["DATACAT"] == "B"
    assert header["RA_OBJ"] == 83.63
    assert header["GEOLAT"] == pytest.approx(28.76, abs=0.01)
    start = dt.datetime.fromisoformat(header["DATE-OBS"])
    assert dt.datetime(2026, 11, 21, 22) <= start < dt.datetime(2026, 11, 21, 22, 0, 12)
    assert len(events) > 10
    # the ACADA model's source sits at the camera centre: gamma-like events come from there
    # (90 % of its showers are hadrons, whose lumpy images point anywhere)
    offset = np.hypot(
        np.asarray(events["reco_alt"].value) - 70.0,
        (np.asarray(events["reco_az"].value) - 180.0) * np.cos(np.radians(70)),
    )
    gamma_like = np.asarray(events["gh_score"]) > 0.5
    assert gamma_like.sum() >= 5
    assert np.median(offset[gamma_like]) < 0.4
    assert np.median(offset[gamma_like]) < np.median(offset[~gamma_like])


def test_observed_dl1_names_the_category_of_the_processing_that_made_it(
    night: dict[str, list[Path]], tmp_path: Path
) -> None:
    """DL1 is reproducible: a reprocessing's DL1 may hold the very parameters of the night's,
    and only its category (DATACAT) keeps it from being taken for the night's file."""
    inputs = {"dl0": night["shower"], "pointing": night["pointing"][:1]}
    made = {c: run_tool("datapipe-dl1", {"category": c}, inputs, tmp_path / c) for c in "BC"}
    assert all(r.exit_code == 0 for r in made.values()), {c: r.error for c, r in made.items()}
    files = {c: h5py.File(r.outputs[0].path) for c, r in made.items()}
    with files["B"] as b, files["C"] as c:
        assert (b.attrs["DATACAT"], c.attrs["DATACAT"]) == ("B", "C")
        assert b["dl1/parameters"][()].tobytes() == c["dl1/parameters"][()].tobytes()
    assert made["C"].outputs[0].metadata["category"] == "C"
    with pytest.raises(ConfigError, match="category: Input should be 'A', 'B' or 'C'"):
        run_tool("datapipe-dl1", {"category": "X"}, inputs, tmp_path / "X")


def test_calibration_product_out_of_validity_is_an_error(
    night: dict[str, list[Path]], tmp_path: Path
) -> None:
    cal = run_tool(
        "calibpipe-camera", {"min_events": 4}, {"dl0": night["cal"][:1]}, tmp_path / "cal"
    )
    assert cal.exit_code == 0, cal.error
    with fits.open(cal.outputs[0].path, mode="update") as hdul:  # valid only far in the past
        for hdu in hdul:
            if "VALID_FROM" in hdu.header:
                hdu.header["VALID_FROM"] = "2020-01-01T00:00:00"
                hdu.header["VALID_TO"] = "2020-01-02T00:00:00"
    tel = night["shower"][0]
    dl1 = run_tool(
        "datapipe-dl1",
        {},
        {"dl0": [tel], "calibration": [cal.outputs[0].path], "pointing": night["pointing"][:1]},
        tmp_path / "dl1",
    )
    assert dl1.exit_code == EXIT_FAILURE
    assert "no calibration product for telescope 1 is valid" in str(dl1.error)


def test_calibration_events_alone_make_no_dl1(
    night: dict[str, list[Path]], tmp_path: Path
) -> None:
    result = run_tool(
        "datapipe-dl1", {}, {"dl0": night["cal"][:1], "pointing": night["pointing"][:1]}, tmp_path
    )
    assert result.exit_code == EXIT_FAILURE
    assert "no array-triggered shower events" in str(result.error)
    assert not list(tmp_path.glob("*.h5"))
