"""Ingest of generic data products (UC-110-1.1.3): copies, in place, duplicates, versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpps.bdms.archive import Archive
from dpps.core.errors import Conflict
from tests.bdms.helpers import make_fits, make_hdf5, snapshot

UC = "UC-110-1.1.3"


@pytest.mark.verifies_usecase(UC)
def test_ingest_copies_verifies_and_registers(archive: Archive, tmp_path: Path) -> None:
    src = make_fits(tmp_path / "in", obs_id=4242, tel_id=3)
    report = archive.ingest(
        [src],
        "CTAO-N",
        lfn="/ctao/dl0/obs_4242/tel_003.fits",
        meta={"run_type": "science", "zenith": "21.5"},
    )
    assert [r.status for r in report.results] == ["registered"]
    details = archive.show("/ctao/dl0/obs_4242/tel_003.fits")
    f = details.file
    assert (f.obs_id, f.tel_id, f.data_level, str(f.observing_night)) == (
        4242,
        3,
        "DL0",
        "2026-11-21",
    )
    assert f.bytes == src.stat().st_size
    assert f.adler32 is not None
    assert len(f.adler32) == 8
    assert f.blake3 is not None
    assert len(f.blake3) == 64
    assert f.meta["run_type"] == "science"
    assert f.meta["zenith"] == 21.5
    [replica] = details.replicas
    assert (replica.rse, replica.state) == ("CTAO-N", "AVAILABLE")
    stored = archive.config.workspace / "rse" / "CTAO-N" / "ctao/ctao/dl0/obs_4242/tel_003.fits"
    assert stored.read_bytes() == src.read_bytes()
    assert "file.register" in [e.action for e in details.events]


@pytest.mark.verifies_usecase(UC)
def test_ingest_hdf5_and_dataset(archive: Archive, tmp_path: Path) -> None:
    src_dir = tmp_path / "in"
    make_hdf5(src_dir, "a.h5", obs_id=7, tel_id=1)
    make_hdf5(src_dir, "b.h5", obs_id=7, tel_id=2, seed=1)
    report = archive.ingest(
        [src_dir], "PIC", lfn_prefix="/ctao/dl1/obs_7", recursive=True, dataset="/ctao/dl1/obs_7"
    )
    assert report.count("registered") == 2
    files = archive.list_files("name like /ctao/dl1/obs_7/%")
    assert [f.name for f in files] == ["/ctao/dl1/obs_7/a.h5", "/ctao/dl1/obs_7/b.h5"]
    assert {f.data_level for f in files} == {"DL1"}
    dataset = archive.show("/ctao/dl1/obs_7")
    assert dataset.file.did_type == "DATASET"
    assert dataset.children == ["ctao:/ctao/dl1/obs_7/a.h5", "ctao:/ctao/dl1/obs_7/b.h5"]


@pytest.mark.verifies_usecase(UC)
def test_register_in_place_does_not_copy(archive: Archive) -> None:
    root = archive.config.workspace / "rse" / "CTAO-S" / "landing" / "2026"
    src = make_fits(root, "tel_001.fits")
    before = snapshot(archive)["files"]
    report = archive.ingest([src], "CTAO-S")
    [result] = report.results
    assert result.status == "registered"
    assert result.did == "ctao:/landing/2026/tel_001.fits"
    assert result.path == "landing/2026/tel_001.fits"
    assert snapshot(archive)["files"] == before  # no copy was made


@pytest.mark.verifies_usecase(UC)
def test_same_content_again_is_present_and_changes_nothing(
    archive: Archive, tmp_path: Path
) -> None:
    src = make_fits(tmp_path)
    archive.ingest([src], "CTAO-N", lfn="/x/a.fits")
    before = snapshot(archive)
    report = archive.ingest([src], "CTAO-N", lfn="/x/a.fits")
    assert [r.status for r in report.results] == ["present"]
    assert snapshot(archive) == before


@pytest.mark.verifies_usecase(UC)
def test_other_content_same_lfn_is_conflict_then_new_version(
    archive: Archive, tmp_path: Path
) -> None:
    first = make_fits(tmp_path / "1", seed=1)
    second = make_fits(tmp_path / "2", seed=2)
    archive.ingest([first], "CTAO-N", lfn="/x/a.fits")
    before = snapshot(archive)
    report = archive.ingest([second], "CTAO-N", lfn="/x/a.fits")
    [result] = report.results
    assert result.status == "failed"
    assert result.error_type == Conflict.__name__
    assert "other content" in (result.error or "")
    assert snapshot(archive) == before

    report = archive.ingest([second], "CTAO-N", lfn="/x/a.fits", new_version=True)
    assert [(r.status, r.version) for r in report.results] == [("registered", 2)]
    latest = archive.show("/x/a.fits")
    assert latest.file.version == 2
    assert latest.versions == [1, 2]
    assert latest.file.adler32 != archive.show("/x/a.fits@v1").file.adler32
    # queries return the latest version unless asked for all of them
    assert [f.version for f in archive.list_files("name=/x/a.fits")] == [2]
    assert [f.version for f in archive.list_files("name=/x/a.fits", all_versions=True)] == [1, 2]
    assert [f.version for f in archive.list_files("name=/x/a.fits and version=1")] == [1]


@pytest.mark.verifies_usecase(UC)
def test_bulk_ingest_in_chunks(archive: Archive, tmp_path: Path) -> None:
    src_dir = tmp_path / "many"
    for i in range(23):
        make_fits(src_dir, f"f{i:02d}.fits", obs_id=500 + i, seed=i)
    ticks: list[int] = []
    small = archive.config.model_copy(
        update={"ingest": archive.config.ingest.model_copy(update={"chunk_size": 5})}
    )
    archive.config = small
    report = archive.ingest(
        [src_dir], "DESY", lfn_prefix="/bulk", recursive=True, progress=ticks.append
    )
    assert report.count("registered") == 23
    assert sum(ticks) == 23
    assert len(ticks) == 5
    assert archive.count("obs_id>=500 and obs_id<523") == 23
