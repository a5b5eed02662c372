"""Locate and retrieve by identifier (UC-110-1.3.1): best replica, verification, no partials."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from dpps.bdms.archive import Archive
from dpps.catalog.dids import NewFile
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, ReplicaRow
from dpps.core.errors import Conflict, IntegrityFailure, NotFound
from dpps.storage.checksums import checksum_file
from tests.bdms.helpers import make_fits
from tests.bdms.replication_helpers import (
    drive,
    ingest_dataset,
    replicas,
    rule_row,
    tuned,
    verify_on_disk,
)

UC = "UC-110-1.3.1"
LFN = "/ctao/dl0/obs_1/tel_001.fits"


def _replicate(archive: Archive, rse: str) -> None:
    """Put a second copy on ``rse`` (the replication daemons do this in production)."""
    source = archive.config.workspace / "rse" / "CTAO-N" / f"ctao{LFN}"
    target = archive.config.workspace / "rse" / rse / f"ctao{LFN}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    rse_id = archive.rse_id(rse)
    with transaction(archive.sessions) as session:
        did_id = session.scalar(select(DIDRow.id).where(DIDRow.name == LFN))
        session.execute(
            insert(ReplicaRow).values(
                did_id=did_id,
                rse_id=rse_id,
                state="AVAILABLE",
                path=f"ctao{LFN}",
                bytes=source.stat().st_size,
                lock_count=0,
            )
        )


@pytest.fixture
def stored(archive: Archive, tmp_path: Path) -> Path:
    src = make_fits(tmp_path / "src")
    archive.ingest([src], "CTAO-N", lfn=LFN)
    return src


@pytest.mark.verifies_usecase(UC)
def test_get_writes_verified_copy(archive: Archive, stored: Path, tmp_path: Path) -> None:
    report = archive.get([LFN], tmp_path / "out" / "copy.fits")
    [result] = report.results
    assert result.status == "retrieved"
    assert result.rse == "CTAO-N"
    assert Path(result.path or "").read_bytes() == stored.read_bytes()


@pytest.mark.verifies_usecase(UC)
def test_get_many_into_directory(archive: Archive, tmp_path: Path) -> None:
    for i in range(3):
        archive.ingest(
            [make_fits(tmp_path / "src", f"f{i}.fits", seed=i)], "CTAO-N", lfn=f"/many/f{i}.fits"
        )
    report = archive.get([f"ctao:/many/f{i}.fits" for i in range(3)], tmp_path / "dest")
    assert report.count("retrieved") == 3
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == [
        "f0.fits",
        "f1.fits",
        "f2.fits",
    ]


@pytest.mark.verifies_usecase(UC)
def test_locate_prefers_disk_and_estimates_time(archive: Archive, stored: Path) -> None:
    _replicate(archive, "PIC-TAPE")
    loc = archive.locate(LFN)
    assert loc.available
    assert loc.best_rse == "CTAO-N"
    by_rse = {r.rse: r for r in loc.replicas}
    assert set(by_rse) == {"CTAO-N", "PIC-TAPE"}
    tape = archive.config.rses["PIC-TAPE"]
    assert (by_rse["PIC-TAPE"].estimated_seconds or 0) >= tape.staging_delay_s
    assert loc.estimated_seconds is not None
    assert loc.estimated_seconds < 1.0


@pytest.mark.verifies_usecase(UC)
def test_corrupt_replica_is_declared_bad_and_another_is_used(
    archive: Archive, stored: Path, tmp_path: Path
) -> None:
    _replicate(archive, "PIC")
    onsite = archive.config.workspace / "rse" / "CTAO-N" / f"ctao{LFN}"
    data = bytearray(onsite.read_bytes())
    data[-100] ^= 0xFF
    onsite.write_bytes(bytes(data))
    report = archive.get([LFN], tmp_path / "out.fits")
    [result] = report.results
    assert result.status == "retrieved"
    assert result.rse == "PIC"
    assert (tmp_path / "out.fits").read_bytes() == stored.read_bytes()
    states = {r.rse: r.state for r in archive.show(LFN).replicas}
    assert states == {"CTAO-N": "BAD", "PIC": "AVAILABLE"}
    assert "replica.bad" in [e.action for e in archive.show(LFN).events]


@pytest.mark.verifies_usecase(UC)
def test_no_good_replica_leaves_no_partial_file(
    archive: Archive, stored: Path, tmp_path: Path
) -> None:
    onsite = archive.config.workspace / "rse" / "CTAO-N" / f"ctao{LFN}"
    onsite.write_bytes(onsite.read_bytes()[:-10] + b"0123456789")
    report = archive.get([LFN], tmp_path / "out.fits")
    [result] = report.results
    assert result.status == "failed"
    # every copy damaged: the file is lost, with the exit code the CLI documents for that
    assert result.error_type == IntegrityFailure.__name__
    assert result.exit_code == IntegrityFailure.exit_code == 7
    assert list(tmp_path.glob("*out.fits*")) == []
    loc = archive.locate(LFN)
    assert not loc.available
    actions = [e.action for e in archive.show(LFN).events]
    assert "replica.bad" in actions
    assert "file.lost" in actions


@pytest.mark.verifies_usecase(UC)
def test_get_refuses_to_overwrite_and_unknown_did(
    archive: Archive, stored: Path, tmp_path: Path
) -> None:
    existing = tmp_path / "exists.fits"
    existing.write_bytes(b"mine")
    [result] = archive.get([LFN], existing).results
    assert result.error_type == Conflict.__name__
    assert existing.read_bytes() == b"mine"
    [result] = archive.get(["/does/not/exist.fits"], tmp_path / "x.fits").results
    assert result.error_type == NotFound.__name__
    [result] = archive.get([LFN], existing, overwrite=True).results
    assert result.status == "retrieved"
    assert checksum_file(existing, ["adler32"])[1]["adler32"] == archive.show(LFN).file.adler32


@pytest.mark.verifies_usecase("UC-110-1.2.1")
def test_register_api_and_lookup_by_lfn(archive: Archive) -> None:
    rse_id = archive.rse_id("CTAO-N")
    files = [
        NewFile(
            "ctao",
            f"/reg/f{i}.fits",
            10 + i,
            {"adler32": f"{i:08x}"},
            rse_id,
            f"ctao/reg/f{i}.fits",
            {"obs_id": i},
        )
        for i in range(5)
    ]
    outcomes = archive.register(files)
    assert [o.status for o in outcomes] == ["registered"] * 5
    assert [o.status for o in archive.register(files[:2])] == ["present"] * 2
    assert archive.show("ctao:/reg/f3.fits").file.obs_id == 3
    with pytest.raises(NotFound):
        archive.show("ctao:/reg/f9.fits")


@pytest.mark.verifies_usecase("UC-110-1.7")
@pytest.mark.verifies_usecase(UC)
def test_a_damaged_copy_found_by_get_is_repaired_by_the_next_passes(
    archive: Archive, tmp_path: Path
) -> None:
    """Issue 15, defect 3: ``get`` declares the copy it found damaged BAD *and* makes the
    rules counting on it due, so the next evaluator and transfer passes copy it again."""
    arch = tuned(archive)
    [did] = ingest_dataset(arch, tmp_path / "in", 1)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=2, rses="CTAO-N|PIC")
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert rule_row(arch, rule_id).next_evaluation_at is None
    before = rule_row(arch, rule_id).generation
    best = arch.locate(did).best_rse
    assert best is not None
    other = ({"CTAO-N", "PIC"} - {best}).pop()
    info = arch.show(did).file
    damaged = Path(arch.storage(best).resolve(f"{info.scope}{info.name}"))
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))

    [result] = arch.get([did], tmp_path / "out.dat").results
    assert result.status == "retrieved"
    assert result.rse == other
    assert {r.rse: r.state for r in arch.show(did).replicas} == {best: "BAD", other: "AVAILABLE"}
    due = rule_row(arch, rule_id)
    assert due.next_evaluation_at is not None  # due again: the damaged copy no longer counts
    assert due.generation > before

    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert replicas(arch)[info.name] == {"CTAO-N", "PIC"}  # a new good copy where it was bad
    assert verify_on_disk(arch) == 2
    assert "file.lost" not in [e.action for e in arch.show(did).events]
