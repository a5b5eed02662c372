"""The SimPipe tool: simulated DL0 (zfits, marked SIM, lifetime) and the truth table."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable
from protozfits import File
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.catalog.dids import _expiry
from dpps.catalog.models import DIDRow
from dpps.core.errors import ConfigError
from dpps.pipelines.datapipe.dl0 import open_dl0
from dpps.pipelines.tool import PROVENANCE_NAME, run_tool

CARD = {
    "particle": "gamma",
    "n_showers": 60,
    "obs_id": 42,
    "seed": 9,
    "max_impact_m": 250.0,
    "compression": "zstd1",
}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    result = run_tool("simpipe-simulate", CARD, {}, out)
    assert result.exit_code == 0, result.error
    return out


@pytest.mark.verifies_usecase("UC-150-2.1")
def test_run_writes_simulated_dl0_and_truth(simulated: Path) -> None:
    truth_path = simulated / "sim_gamma_run000042_truth.fits"
    truth = QTable.read(truth_path, hdu="TRUTH")
    header = fits.getheader(truth_path)
    assert len(truth) == 60
    assert header["SIM_NSHW"] == 60
    assert (header["SIM_EMIN"], header["SIM_EMAX"], header["SIM_IDX"]) == (0.05, 50.0, -2.0)
    assert (header["SIM_RMAX"], header["SIM_VCON"], header["SRC_OFFS"]) == (250.0, 0.0, 0.4)
    assert header["DATACAT"] == "SIM"
    assert header["PARTICLE"] == "gamma"
    assert float(header["LIFETIME_DAYS"]) == 1096
    assert truth["true_energy"].unit == "TeV"
    assert truth["true_core_x"].unit == "m"
    assert np.all(np.hypot(truth["true_core_x"].value, truth["true_core_y"].value) <= 250.0)
    # the source is 0.4 deg above the pointing (alt 70, az 180)
    assert np.allclose(truth["true_alt"].value, 70.4)
    assert np.allclose(truth["true_az"].value, 180)
    triggered = truth[truth["triggered"]]
    assert 0 < len(triggered) < 60
    for tel_id in (1, 2, 3, 4):
        path = simulated / f"sim_gamma_run000042_tel{tel_id:03d}.fits.fz"
        dl0 = open_dl0(path)  # checksums verified, camera from INSTRUME
        assert (dl0.tel_id, dl0.obs_id, dl0.camera.name) == (tel_id, 42, "LSTCam")
        assert dl0.is_simulation
        assert float(dl0.header["LIFETIME_DAYS"]) == 1096
        assert dl0.header["DATALEVL"] == "DL0"
        assert dl0.header["SIM_NSHW"] == 60
        ids = [e.event_id for e in dl0.events()]
        seen = [int(r["event_id"]) for r in triggered if r["n_trigger"] > 0]
        assert set(ids) <= set(seen)
        assert len(ids) > 0
    record = json.loads((simulated / PROVENANCE_NAME).read_text())
    assert record["exit_code"] == 0
    assert record["config"]["n_showers"] == 60
    assert len(record["outputs"]) == 5
    assert all("adler32" in o for o in record["outputs"])


def test_same_card_same_waveforms(simulated: Path, tmp_path: Path) -> None:
    again = run_tool("simpipe-simulate", CARD, {}, tmp_path)
    assert again.exit_code == 0
    name = "sim_gamma_run000042_tel002.fits.fz"
    with File(str(simulated / name)) as a, File(str(tmp_path / name)) as b:
        first = [np.asarray(e.waveform).copy() for e in a.Events]
        second = [np.asarray(e.waveform).copy() for e in b.Events]
    assert len(first) == len(second) > 0
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))


def test_rerun_into_the_same_directory_never_overwrites(simulated: Path) -> None:
    before = (simulated / "sim_gamma_run000042_truth.fits").stat().st_mtime_ns
    result = run_tool("simpipe-simulate", CARD, {}, simulated)
    assert result.exit_code == 1
    assert "never overwritten" in str(result.error)
    assert (simulated / "sim_gamma_run000042_truth.fits").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"e_max_tev": 0.01}, "e_max_tev must be larger"),
        ({"particle": "electron"}, "particle"),
        ({"n_shower": 5}, "n_shower"),
        ({"telescopes": [1], "min_telescopes": 2}, "fewer"),
    ],
)
def test_bad_run_cards_are_configuration_errors(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_tool("simpipe-simulate", {**CARD, **change}, {}, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.verifies_usecase("UC-150-2.1")
def test_ingested_simulations_are_sim_with_a_three_year_lifetime(
    simulated: Path, archive: Archive
) -> None:
    files = sorted(p for p in simulated.iterdir() if p.name.startswith("sim_"))
    report = archive.ingest(files, "CTAO-N", lfn_prefix="/ctao/sim/test")
    assert not report.failed, report.failed
    dl0 = list(archive.list_files("category=SIM and data_level=DL0 and obs_id=42"))
    assert len(dl0) == 4
    assert {f.product_type for f in archive.list_files("category=SIM and data_level=DL2")} == {
        "simulation truth"
    }
    with archive.sessions() as s:
        rows = s.scalars(select(DIDRow).where(DIDRow.category == "SIM")).all()
    assert len(rows) == 5
    for row in rows:
        assert row.expires_at is not None
        assert row.expires_at - row.created_at == dt.timedelta(days=1096)


def test_lifetime_hints_become_an_end_of_life_and_bad_ones_are_ignored() -> None:
    now = dt.datetime(2026, 11, 22, 12, 0)
    assert _expiry({"lifetime_days": "1096.0"}, now) == now + dt.timedelta(days=1096)
    assert _expiry({"lifetime_days": 30}, now) == now + dt.timedelta(days=30)
    for bad in ("three years", None, -5, "nan", 0):
        assert _expiry({"lifetime_days": bad}, now) is None
    assert _expiry({}, now) is None
