"""Datasets and containers as first-class objects (issue 14): Rucio's semantics, on both
catalogs, through the ``Archive`` facade (``archive.datasets``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.catalog.models import EventRow, ReplicaRow, RuleLockRow
from dpps.core.errors import Conflict, InvalidInput, NotFound
from tests.bdms.replication_helpers import (
    drive,
    ingest_dataset,
    random_files,
    replicas,
    rule_row,
    tuned,
)


def _files(archive: Archive, directory: Path, count: int, seed: int = 0) -> list[str]:
    """Files ingested under /ctao/loose, attached to no dataset."""
    paths = random_files(directory, count, seed=seed)
    report = archive.ingest(paths, "CTAO-N", lfn_prefix="/ctao/loose")
    assert not report.failed, report.failed
    return [r.did or "" for r in report.results]


@pytest.mark.verifies_usecase("UC-110-1.12")
def test_build_a_tree_list_it_and_select_by_membership(archive: Archive, tmp_path: Path) -> None:
    files = _files(archive, tmp_path / "a", 3)
    ds = archive.datasets
    made = ds.add_dataset("/ctao/dl0/obs_42", meta={"site": "north"})
    assert (made.did_type, made.is_open, made.meta) == ("DATASET", True, {"site": "north"})
    ds.add_dataset("/ctao/dl0/obs_43")
    ds.add_container("/ctao/dl0/night")
    assert ds.attach("/ctao/dl0/obs_42", files[:2]) == files[:2]
    assert ds.attach("/ctao/dl0/obs_43", files[2:]) == files[2:]
    ds.attach("/ctao/dl0/night", ["/ctao/dl0/obs_42", "/ctao/dl0/obs_43"])

    content = ds.list_content("/ctao/dl0/night")
    assert [c.did for c in content] == ["ctao:/ctao/dl0/obs_42", "ctao:/ctao/dl0/obs_43"]
    assert [c.did_type for c in content] == ["DATASET", "DATASET"]
    below = ds.list_content("/ctao/dl0/night", recursive=True)
    assert sorted(c.did for c in below) == sorted(files)
    assert all(c.adler32 for c in below)
    assert ds.list_content(files[0], recursive=True)[0].did == files[0]  # a file is its files
    assert len(ds.list_content("/ctao/dl0/night", recursive=True, limit=2, offset=2)) == 1

    assert [f.did for f in archive.list_files(dataset="/ctao/dl0/obs_42")] == files[:2]
    assert archive.count(dataset="/ctao/dl0/night") == 3
    assert archive.count("name like '%0001%'", dataset="/ctao/dl0/night") == 1
    got = archive.list_files(dataset="/ctao/dl0/night", did_type="DATASET")
    assert [g.did for g in got] == ["ctao:/ctao/dl0/obs_42", "ctao:/ctao/dl0/obs_43"]
    details = archive.show("/ctao/dl0/obs_42")
    assert details.children == files[:2]
    assert details.parents == ["ctao:/ctao/dl0/night"]
    assert archive.show(files[0]).parents == ["ctao:/ctao/dl0/obs_42"]

    assert ds.detach("/ctao/dl0/obs_42", [files[0]]) == [files[0]]
    assert archive.count(dataset="/ctao/dl0/night") == 2
    with archive.sessions() as session:
        actions = set(session.scalars(select(EventRow.action)))
    assert {"dataset.create", "container.create", "did.attach", "did.detach"} <= actions


@pytest.mark.verifies_usecase("UC-110-1.12")
def test_wrong_attachments_are_refused_and_change_nothing(
    archive: Archive, tmp_path: Path
) -> None:
    files = _files(archive, tmp_path / "a", 2)
    ds = archive.datasets
    ds.add_dataset("/ctao/ds")
    ds.add_container("/ctao/c1")
    ds.add_container("/ctao/c2")
    ds.attach("/ctao/c1", ["/ctao/c2"])

    with pytest.raises(InvalidInput, match="container holds datasets and containers"):
        ds.attach("/ctao/c1", [files[0]])
    with pytest.raises(InvalidInput, match="a dataset holds files only"):
        ds.attach("/ctao/ds", ["/ctao/c1"])
    with pytest.raises(InvalidInput, match="cycle"):
        ds.attach("/ctao/c2", ["/ctao/c1"])
    with pytest.raises(InvalidInput, match="cycle"):
        ds.attach("/ctao/c1", ["/ctao/c1"])
    with pytest.raises(NotFound, match="no such DID"):
        ds.attach("/ctao/ds", [files[0], "/ctao/nothing.dat"])
    assert ds.list_content("/ctao/ds") == []  # all or none: files[0] was not attached
    with pytest.raises(NotFound):
        ds.attach("/ctao/missing", [files[0]])
    with pytest.raises(InvalidInput, match="is a file"):
        ds.attach(files[0], [files[1]])
    with pytest.raises(Conflict, match="exists already"):
        ds.add_dataset("/ctao/c1")
    with pytest.raises(Conflict, match="exists already"):
        ds.add_container(files[0].partition(":")[2])
    with pytest.raises(InvalidInput, match="no versions"):
        ds.add_dataset("/ctao/other@v2")

    ds.attach("/ctao/ds", [files[0]])
    with pytest.raises(Conflict, match="already attached"):  # Rucio: a duplicate is an error
        ds.attach("/ctao/ds", [files[0], files[1]])
    assert [c.did for c in ds.list_content("/ctao/ds")] == [files[0]]
    assert ds.attach("/ctao/ds", [files[0], files[1]], ignore_duplicates=True) == [files[1]]
    with pytest.raises(NotFound, match="not attached"):
        ds.detach("/ctao/c1", ["/ctao/ds"])

    closed = ds.close("/ctao/ds")
    assert closed.is_open is False
    assert archive.show("/ctao/ds").file.is_open is False
    with pytest.raises(Conflict, match="closed"):
        ds.attach("/ctao/ds", [files[0]], ignore_duplicates=True)
    with pytest.raises(Conflict, match="closed"):
        ds.detach("/ctao/ds", [files[0]])
    assert ds.close("/ctao/ds").is_open is False  # closing twice changes nothing
    assert ds.reopen("/ctao/ds").is_open is True
    assert ds.detach("/ctao/ds", [files[0]]) == [files[0]]
    with archive.sessions() as session:
        actions = list(session.scalars(select(EventRow.action).order_by(EventRow.id)))
    assert actions.count("dataset.close") == 1
    assert actions.count("dataset.open") == 1


@pytest.mark.verifies_usecase("UC-110-1.6")
@pytest.mark.verifies_usecase("UC-110-1.12")
def test_a_rule_on_a_dataset_replicates_a_file_attached_later_and_releases_a_detached_one(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    first = ingest_dataset(arch, tmp_path / "first", 2)
    later = _files(arch, tmp_path / "later", 1, seed=5)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert "PIC" not in replicas(arch).get(later[0].partition(":")[2], set())

    arch.datasets.attach("/ctao/dl0/run1", later)
    assert rule_row(arch, rule_id).state == "REPLICATING"  # at once, before any daemon
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert "PIC" in replicas(arch)[later[0].partition(":")[2]]

    arch.datasets.detach("/ctao/dl0/run1", [first[0]])
    with arch.sessions() as session:
        locked = set(
            session.scalars(select(RuleLockRow.did_id).where(RuleLockRow.rule_id == rule_id))
        )
        counts = dict(session.execute(select(ReplicaRow.did_id, ReplicaRow.lock_count)).all())
        detached = arch.show(first[0])
    assert len(locked) == 2  # the other file of the dataset and the one attached later
    gone_id = next(i for i in counts if i not in locked and counts[i] == 0)
    assert gone_id
    assert detached.parents == []
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"


@pytest.mark.verifies_usecase("UC-110-1.3.1")
@pytest.mark.verifies_usecase("UC-110-1.12")
def test_get_a_dataset_or_container_resumes_and_skips_identical_files(
    archive: Archive, tmp_path: Path
) -> None:
    files = ingest_dataset(archive, tmp_path / "src", 3, dataset="/ctao/dl0/obs_42")
    archive.datasets.add_container("/ctao/dl0/night")
    archive.datasets.attach("/ctao/dl0/night", ["/ctao/dl0/obs_42"])
    out = tmp_path / "out"  # no trailing slash, does not exist: a dataset makes it a directory

    report = archive.get(["/ctao/dl0/obs_42"], out)
    assert [r.status for r in report.results] == ["retrieved"] * 3
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(f).name for f in files)

    (out / Path(files[0]).name).unlink()  # an interrupted earlier run: one file missing
    again = archive.get(["/ctao/dl0/night"], out)
    assert sorted(r.status for r in again.results) == ["present", "present", "retrieved"]

    damaged = out / Path(files[1]).name
    damaged.write_bytes(b"x" * damaged.stat().st_size)  # same size, other bytes
    third = archive.get(["/ctao/dl0/obs_42"], out)
    failed = [r for r in third.results if r.status == "failed"]
    assert len(failed) == 1
    assert failed[0].error_type == "Conflict"
    assert "other content" in (failed[0].error or "")
    fixed = archive.get(["/ctao/dl0/obs_42"], out, overwrite=True)
    assert {r.status for r in fixed.results} == {"retrieved"}

    empty = archive.datasets.add_dataset("/ctao/dl0/empty")
    assert archive.get([empty.did], tmp_path / "none").results == []


@pytest.mark.verifies_usecase("UC-110-1.12")
def test_ingest_into_a_closed_dataset_is_refused_and_leaves_nothing(
    archive: Archive, tmp_path: Path
) -> None:
    files = ingest_dataset(archive, tmp_path / "a", 2, dataset="/ctao/dl0/fixed")
    archive.datasets.close("/ctao/dl0/fixed")
    stored = sorted((archive.config.workspace / "rse").rglob("*.dat"))
    with pytest.raises(Conflict, match="is closed"):
        ingest_dataset(archive, tmp_path / "b", 1, dataset="/ctao/dl0/fixed", seed=3)
    assert sorted((archive.config.workspace / "rse").rglob("*.dat")) == stored  # no orphan
    assert archive.count("name like '/ctao/dl0/fixed/f_3%'") == 0
    again = ingest_dataset(archive, tmp_path / "a", 2, dataset="/ctao/dl0/fixed")
    assert again == files  # the same files, members already: reported present, not refused


@pytest.mark.verifies_usecase("UC-110-1.12")
def test_detach_keeps_the_locks_of_files_a_rule_still_covers_another_way(
    archive: Archive, tmp_path: Path
) -> None:
    """A file in two datasets of a ruled container stays locked when it leaves one of them."""
    arch = tuned(archive)
    files = _files(arch, tmp_path / "a", 2)
    ds = arch.datasets
    ds.add_container("/ctao/box")
    for name in ("/ctao/one", "/ctao/two"):
        ds.add_dataset(name)
        ds.attach("/ctao/box", [name])
    ds.attach("/ctao/one", files)
    ds.attach("/ctao/two", files[:1])
    rule_id = arch.add_rule("/ctao/box", copies=1, rses="PIC")
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"

    def locked() -> int:
        with arch.sessions() as session:
            stmt = select(RuleLockRow.did_id).where(RuleLockRow.rule_id == rule_id)
            return len(set(session.scalars(stmt)))

    assert locked() == 2
    ds.detach("/ctao/one", files)  # files[0] is still in /ctao/two, files[1] is gone
    assert locked() == 1
    with arch.sessions() as session:
        released = session.scalars(
            select(EventRow.details).where(EventRow.action == "rule.release")
        ).all()
    assert released == [{"rule_id": rule_id, "locks": 1}]
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
