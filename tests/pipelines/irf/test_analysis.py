"""The analysis check (ESCAPE analysis scenario): archive queries -> retrieval -> gammapy."""

from __future__ import annotations

from pathlib import Path

import pytest
from astropy.io import fits

from dpps.bdms.archive import Archive
from dpps.core.errors import NotFound
from dpps.pipelines.datapipe import toy_dl2 as dl2_factory
from dpps.pipelines.datapipe.dl3_analysis import (
    find_observations,
    fit_power_law,
    retrieve_observations,
)
from dpps.pipelines.tool import run_tool


@pytest.fixture(scope="session")
def other_target_dl3(irf_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short observation of another target, so the query has something to leave out."""
    base = tmp_path_factory.mktemp("mrk421")
    obs = dl2_factory.Observation(
        obs_id=2001,
        start="2026-11-22T05:00:00",
        duration_s=60.0,
        target="Mrk 421",
        ra_deg=166.1138,
        dec_deg=38.2088,
    )
    events, header = dl2_factory.observed_dl2(obs, seed=7)
    dl2 = dl2_factory.write_dl2(base / "obs_2001.dl2.fits", events, header)
    result = run_tool("datapipe-dl3", {}, {"dl2": [dl2], "irf": [irf_file]}, base / "dl3")
    assert result.exit_code == 0, result.error
    return base / "dl3"


def _ingest(archive: Archive, directory: Path, *, only: str = "*.fits") -> None:
    files = sorted(directory.glob(only))
    report = archive.ingest(files, "CTAO-N", lfn_prefix="/ctao/dl3/2026/11/21")
    assert not report.failed, report.failed
    assert report.count("registered") == len(files)


@pytest.mark.verifies_usecase("UC-130-1.6")
@pytest.mark.verifies_usecase("UC-110-1.2.2")
@pytest.mark.verifies_usecase("UC-110-1.3.1")
def test_find_retrieve_and_analyse_a_target(
    archive: Archive, dl3_dir: Path, other_target_dl3: Path, tmp_path: Path
) -> None:
    _ingest(archive, dl3_dir)
    _ingest(archive, other_target_dl3)
    # what the archive learnt from the headers is what the queries rely on
    crab = archive.list_files("data_level=DL3 and meta.target=Crab", limit=None)
    assert sorted((f.obs_id, f.product_type, f.category) for f in crab) == [
        (1001, "event list", "B"),
        (1001, "irf", "B"),
        (1002, "event list", "B"),
        (1002, "irf", "B"),
    ]
    assert all(f.observing_night is not None and f.time_start is not None for f in crab)
    found = find_observations(archive, "Crab", category="B")
    assert [f.obs_id for f in found] == [1001, 1002]
    for obs in found:
        assert obs.irf.meta["irf_id"] == obs.events.meta["irf_id"]
        assert obs.events.meta["irf_file"] == Path(obs.irf.name).name
    assert [f.obs_id for f in find_observations(archive, "Mrk 421")] == [2001]

    dest = tmp_path / "analysis"
    hdu_index, obs_index = retrieve_observations(archive, found, dest)
    assert hdu_index.parent == dest
    assert obs_index.is_file()
    fit = fit_power_law(
        dest,
        fits.getheader(dest / "obs_001001.events.fits")["RA_OBJ"],
        fits.getheader(dest / "obs_001001.events.fits")["DEC_OBJ"],
    )
    assert fit.success
    assert fit.n_observations == 2  # Mrk 421 was not retrieved
    pulls = fit.pulls(dl2_factory.SOURCE_INDEX, dl2_factory.SOURCE_AMPLITUDE)
    assert max(abs(p) for p in pulls) < 3, fit


def test_missing_data_is_reported(archive: Archive, other_target_dl3: Path) -> None:
    with pytest.raises(NotFound, match="no DL3 event list for target 'Crab'"):
        find_observations(archive, "Crab")
    _ingest(archive, other_target_dl3, only="*.events.fits")  # the IRF never made it
    with pytest.raises(NotFound, match="0 IRFs with obs_id=2001"):
        find_observations(archive, "Mrk 421")
    with pytest.raises(NotFound, match="no DL3 event list"):
        find_observations(archive, "Mrk 421", category="C")
