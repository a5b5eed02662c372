"""datapipe-dl3: GADF event lists with their IRFs and index tables, validated with gammapy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.io import fits
from astropy.table import QTable
from astropy.time import Time
from astropy.utils import iers

from dpps.pipelines.datapipe import toy_dl2 as dl2_factory
from dpps.pipelines.datapipe.dl2_contract import read_dl2
from dpps.pipelines.datapipe.dl3_analysis import fit_power_law
from dpps.pipelines.tool import EXIT_FAILURE, EXIT_OK, run_tool, wms_entry
from tests.pipelines.irf.oracle import gh_pass

OBS_IDS = (1001, 1002)


def test_dl3_layout_and_archive_headers(dl3_dir: Path, irf_file: Path) -> None:
    names = sorted(p.name for p in dl3_dir.iterdir())
    assert names == [
        "hdu-index.fits.gz",
        "obs-index.fits.gz",
        "obs_001001.events.fits",
        "obs_001001.irf.fits",
        "obs_001002.events.fits",
        "obs_001002.irf.fits",
        "provenance.json",
    ]
    irf_id = fits.getheader(irf_file)["IRF_ID"]
    for obs_id in OBS_IDS:
        with fits.open(dl3_dir / f"obs_{obs_id:06d}.events.fits") as hdul:
            assert [h.name for h in hdul[1:]] == ["EVENTS", "GTI", "POINTING"]
            primary = hdul[0].header
            assert (primary["DATALEVL"], primary["DATACAT"], primary["DATATYPE"]) == (
                "DL3",
                "B",
                "event list",
            )
            assert (primary["OBS_ID"], primary["TARGET"], primary["IRF_ID"]) == (
                obs_id,
                "Crab",
                irf_id,
            )
            assert primary["OBSNIGHT"] == "2026-11-21"  # the night began on the 21st
            events = hdul["EVENTS"].header
            for key, value in {
                "HDUCLASS": "GADF",
                "HDUCLAS1": "EVENTS",
                "OBS_ID": obs_id,
                "TIMESYS": "TAI",
                "MJDREFI": 51910,
                "OBS_MODE": "POINTING",
                "RADECSYS": "ICRS",
                "OBJECT": "Crab",
            }.items():
                assert events[key] == value, key
            assert events["ONTIME"] == pytest.approx(600.0)
            assert events["TSTOP"] - events["TSTART"] == pytest.approx(600.0)
            assert hdul.fileinfo(1)["datSpan"] > 0
            for hdu in hdul:
                assert hdu.verify_checksum() == 1  # the archive verifies these at ingest
        with fits.open(dl3_dir / f"obs_{obs_id:06d}.irf.fits") as irf, fits.open(irf_file) as ref:
            assert irf[0].header["DATATYPE"] == "irf"
            for name in ("EFFECTIVE AREA", "ENERGY DISPERSION", "RAD_MAX", "GH_CUTS"):
                assert irf[name].header["OBS_ID"] == obs_id
                for column in ref[name].columns.names:
                    assert np.array_equal(irf[name].data[column], ref[name].data[column])
    index = QTable.read(dl3_dir / "hdu-index.fits.gz")
    assert sorted(set(index["HDU_TYPE"])) == sorted(
        ["events", "gti", "pointing", "aeff", "edisp", "rad_max"]
    )
    assert len(index) == 2 * 6  # GH_CUTS is not a GADF HDU: not indexed
    obs = QTable.read(dl3_dir / "obs-index.fits.gz")
    assert list(obs["OBS_ID"]) == list(OBS_IDS)


def test_events_are_exactly_the_gamma_like_ones(
    dl3_dir: Path, observations: list[Path], irf_file: Path
) -> None:
    gh = QTable.read(irf_file, hdu="GH_CUTS")
    multiplicity = fits.getheader(irf_file, "GH_CUTS")["MULTIMIN"]
    for path, obs_id in zip(observations, OBS_IDS, strict=True):
        dl2 = read_dl2(path, simulated=False).events
        expected = np.asarray(dl2["event_id"][gh_pass(dl2, gh, multiplicity)])
        events = QTable.read(dl3_dir / f"obs_{obs_id:06d}.events.fits", hdu="EVENTS")
        assert 0 < len(events) < len(dl2)
        assert np.array_equal(np.sort(np.asarray(events["EVENT_ID"])), np.sort(expected))


def test_times_and_sky_directions(dl3_dir: Path, observations: list[Path]) -> None:
    dl2 = read_dl2(observations[0], simulated=False)
    by_id = {int(i): k for k, i in enumerate(dl2.events["event_id"])}
    with fits.open(dl3_dir / "obs_001001.events.fits") as hdul:
        events = QTable.read(hdul["EVENTS"])
        header = hdul["EVENTS"].header
    rows = [by_id[int(i)] for i in events["EVENT_ID"]]
    source = dl2.events[rows]
    # TIME: TAI seconds since MJDREF, back to the DL2's UTC unix seconds
    back = (Time(51910.0, format="mjd", scale="tai") + events["TIME"]).utc.unix
    assert np.max(np.abs(back - source["time"].to_value(u.s))) < 1e-5
    # RA/Dec against an exact (not interpolated) astropy conversion of a sample
    site = EarthLocation(
        lon=header["GEOLON"] * u.deg, lat=header["GEOLAT"] * u.deg, height=header["ALTITUDE"] * u.m
    )
    sample = np.linspace(0, len(events) - 1, 25).astype(int)
    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None):
        times = Time(source["time"][sample].to_value(u.s), format="unix", scale="utc")
        exact = SkyCoord(
            alt=source["reco_alt"][sample],
            az=source["reco_az"][sample],
            frame=AltAz(obstime=times, location=site),
        ).icrs
    written = SkyCoord(events["RA"][sample], events["DEC"][sample])
    assert written.separation(exact).max() < 0.1 * u.arcsec
    # the pointing is the wobble position, 0.4 deg from the target
    target = SkyCoord(dl2_factory.CRAB_RA * u.deg, dl2_factory.CRAB_DEC * u.deg)
    pointing = SkyCoord(header["RA_PNT"] * u.deg, header["DEC_PNT"] * u.deg)
    assert pointing.separation(target).deg == pytest.approx(0.4, abs=1e-3)
    # bright, well-reconstructed events cluster on the target
    bright = events[(events["ENERGY"] > 1 * u.TeV) & (events["GH_SCORE"] > 0.9)]
    near = SkyCoord(bright["RA"], bright["DEC"]).separation(target) < 0.15 * u.deg
    assert near.mean() > 0.5


@pytest.mark.verifies_usecase("UC-130-1.6")
def test_gammapy_fit_recovers_the_simulated_spectrum(dl3_dir: Path) -> None:
    """The issue's acceptance test: DataStore load, reflected-region ON/OFF, power-law fit."""
    from gammapy.data import DataStore

    store = DataStore.from_dir(dl3_dir)
    assert list(store.obs_table["OBS_ID"]) == list(OBS_IDS)
    observation = store.obs(OBS_IDS[0], required_irf="point-like")
    assert len(observation.events.table) > 100
    assert observation.rad_max is not None
    fit = fit_power_law(dl3_dir, dl2_factory.CRAB_RA, dl2_factory.CRAB_DEC)
    assert fit.success
    assert fit.n_observations == 2
    assert fit.n_off > 0  # the background really came from the reflected regions
    assert fit.significance > 20
    pull_index, pull_amplitude = fit.pulls(dl2_factory.SOURCE_INDEX, dl2_factory.SOURCE_AMPLITUDE)
    assert abs(pull_index) < 3, fit
    assert abs(pull_amplitude) < 3, fit
    assert fit.index_error < 0.1  # precise enough for the pull to mean something


def test_category_c_through_the_wms_entry(
    observations: list[Path], irf_file: Path, tmp_path: Path
) -> None:
    code = wms_entry(
        inputs={"dl2": [str(observations[1])], "irf": str(irf_file)},
        parameters={"tool": "datapipe-dl3", "config": {"category": "C"}},
        outdir=tmp_path,
    )
    assert code == EXIT_OK
    manifest = json.loads((tmp_path / "outputs.json").read_text())
    kinds = sorted((Path(m["path"]).name, m["product_type"]) for m in manifest)
    assert kinds == [
        ("hdu-index.fits.gz", "index"),
        ("obs-index.fits.gz", "index"),
        ("obs_001002.events.fits", "event list"),
        ("obs_001002.irf.fits", "irf"),
    ]
    assert all(m["metadata"]["category"] == "C" for m in manifest)
    assert fits.getheader(tmp_path / "obs_001002.events.fits")["DATACAT"] == "C"


def _edit(src: Path, dst: Path, **keys: object) -> Path:
    with fits.open(src) as hdul:
        for key, value in keys.items():
            if value is None:
                del hdul[0].header[key]
            else:
                hdul[0].header[key] = value
        hdul.writeto(dst)
    return dst


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_site", "GEOLAT"),
        ("simulated_as_observed", "primary header of observed DL2 lacks"),
        ("not_an_irf", "not a datapipe-irf output"),
        ("two_irfs", "exactly one IRF file"),
        ("times_outside", "events lie outside DATE-OBS..DATE-END"),
        ("bad_date", "DATE-OBS is not an ISO time"),
    ],
)
def test_bad_input_is_refused_clearly(
    case: str,
    message: str,
    observations: list[Path],
    irf_file: Path,
    production: dict[str, Path],
    tmp_path: Path,
) -> None:
    dl2, irfs = [observations[0]], [irf_file]
    if case == "no_site":
        dl2 = [_edit(observations[0], tmp_path / "o.fits", GEOLAT=None)]
    elif case == "simulated_as_observed":
        dl2 = [production["gamma"]]
    elif case == "not_an_irf":
        irfs = [observations[1]]
    elif case == "two_irfs":
        irfs = [irf_file, irf_file]
    elif case == "times_outside":
        dl2 = [_edit(observations[0], tmp_path / "o.fits", **{"DATE-END": "2026-11-22T01:35:00"})]
    elif case == "bad_date":
        dl2 = [_edit(observations[0], tmp_path / "o.fits", **{"DATE-OBS": "yesterday"})]
    out = tmp_path / "out"
    result = run_tool("datapipe-dl3", {}, {"dl2": dl2, "irf": irfs}, out)
    assert result.exit_code == EXIT_FAILURE
    assert result.error is not None
    assert message in result.error
    assert result.outputs == []
    assert not list(out.glob("*.fits*"))


def test_pointing_modes(observations: list[Path], irf_file: Path) -> None:
    """Tracking -> POINTING (tested above); fixed alt/az -> DRIFT; anything else is refused."""
    from dpps.core.errors import InvalidInput
    from dpps.pipelines.datapipe.dl3 import convert_observation, read_irf

    _, cuts, _ = read_irf(irf_file)
    dl2 = read_dl2(observations[0], simulated=False)
    options: dict[str, Any] = {
        "telescope": "CTAO",
        "instrument": None,
        "pointing_interval_s": 60.0,
        "pointing_tolerance_deg": 0.05,
        "time_tolerance_s": 1.0,
        "label": "run",
    }
    drift = dl2.events.copy()
    drift["pointing_alt"] = np.full(len(drift), 70.0) * u.deg
    drift["pointing_az"] = np.full(len(drift), 180.0) * u.deg
    obs = convert_observation(drift, dl2.header, cuts, **options)
    events = obs.hdus[0].header
    assert (events["OBS_MODE"], events["ALT_PNT"], events["AZ_PNT"]) == pytest.approx(
        ("DRIFT", 70.0, 180.0)
    )
    wander = drift.copy()
    wander["pointing_alt"] = np.linspace(60, 80, len(wander)) * u.deg
    with pytest.raises(InvalidInput, match="neither a tracking run nor a drift scan"):
        convert_observation(wander, dl2.header, cuts, **options)
