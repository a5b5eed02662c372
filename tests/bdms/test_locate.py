"""``locate`` (UC-110-1.3.1) in one statement: each case the ORM path answered keeps its answer
on both catalogs (latest and given versions, deleted files, replicas that cannot be read, a file
without any replica, names that are no file), and the read leaves no transaction behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, update

from dpps.bdms.archive import Archive
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, ReplicaRow, RSERow
from dpps.core.clock import utcnow
from dpps.core.errors import InvalidInput, NotFound
from tests.bdms.helpers import make_fits

UC = pytest.mark.verifies_usecase("UC-110-1.3.1")
LFN = "/ctao/dl0/obs_7/tel_003.fits"


def _copy(archive: Archive, rse: str, state: str, *, tombstone: bool = False) -> None:
    """A replica of the latest ``LFN`` on ``rse`` in ``state`` (as the transfer daemon, the
    auditor or the reaper would leave it)."""
    with transaction(archive.sessions) as session:
        did = session.scalars(select(DIDRow).where(DIDRow.name == LFN, DIDRow.is_latest)).one()
        session.execute(
            insert(ReplicaRow).values(
                did_id=did.id,
                rse_id=archive.rse_id(rse),
                state=state,
                path=f"ctao{LFN}",
                bytes=did.bytes,
                lock_count=0,
                tombstone_at=utcnow() if tombstone else None,
            )
        )


@pytest.fixture
def stored(archive: Archive, tmp_path: Path) -> Archive:
    archive.ingest([make_fits(tmp_path / "v1", seed=1)], "CTAO-N", lfn=LFN)
    return archive


@UC
def test_the_latest_version_unless_one_is_named(stored: Archive, tmp_path: Path) -> None:
    second = make_fits(tmp_path / "v2", "tel_003.fits", seed=2)
    stored.ingest([second], "CTAO-N", lfn=LFN, new_version=True)
    latest = stored.locate(LFN)
    assert latest.did == f"ctao:{LFN}"
    assert latest.bytes == second.stat().st_size
    assert [r.path for r in latest.replicas] == [f"ctao{LFN}@v2"]
    first = stored.locate(f"ctao:{LFN}@v1")
    assert first.did == f"ctao:{LFN}@v1"  # not the latest: the label says which
    assert [(r.rse, r.path) for r in first.replicas] == [("CTAO-N", f"ctao{LFN}")]
    assert (first.available, first.best_rse) == (True, "CTAO-N")
    assert stored.locate(f"ctao:{LFN}@v2") == latest
    with pytest.raises(NotFound, match="no such DID"):
        stored.locate(f"ctao:{LFN}@v3")


@UC
def test_replicas_that_cannot_be_read_are_listed_but_never_best(stored: Archive) -> None:
    _copy(stored, "PIC", "AVAILABLE", tombstone=True)  # tombstoned: readable until reaped
    _copy(stored, "DESY", "BAD")
    _copy(stored, "CSCS", "UNAVAILABLE")
    _copy(stored, "FRASCATI", "AVAILABLE")
    with transaction(stored.sessions) as session:  # the RSE is down
        session.execute(update(RSERow).where(RSERow.name == "FRASCATI").values(available=False))
    loc = stored.locate(LFN)
    states = [(r.rse, r.state) for r in loc.replicas]
    assert states == [  # every replica, by RSE name
        ("CSCS", "UNAVAILABLE"),
        ("CTAO-N", "AVAILABLE"),
        ("DESY", "BAD"),
        ("FRASCATI", "AVAILABLE"),
        ("PIC", "AVAILABLE"),
    ]
    assert loc.available
    assert loc.best_rse in {"CTAO-N", "PIC"}  # the readable ones only
    by_rse = {r.rse: r for r in loc.replicas}
    assert loc.estimated_seconds == by_rse[loc.best_rse].estimated_seconds
    assert all(r.estimated_seconds is not None and r.bytes == loc.bytes for r in loc.replicas)
    assert (by_rse["CTAO-N"].site, by_rse["CTAO-N"].kind) == ("CTAO-North", "disk")

    with transaction(stored.sessions) as session:  # now none of them can be read
        session.execute(
            update(ReplicaRow)
            .where(ReplicaRow.rse_id.in_([stored.rse_id("CTAO-N"), stored.rse_id("PIC")]))
            .values(state="BAD")
        )
    lost = stored.locate(LFN)
    assert (lost.available, lost.best_rse, lost.estimated_seconds) == (False, None, None)
    assert len(lost.replicas) == 5


@UC
def test_a_file_without_any_replica_is_located_as_unavailable(stored: Archive) -> None:
    with transaction(stored.sessions) as session:
        session.execute(delete(ReplicaRow))
    loc = stored.locate(LFN)
    assert (loc.did, loc.available, loc.replicas, loc.best_rse) == (
        f"ctao:{LFN}",
        False,
        [],
        None,
    )
    assert (loc.bytes or 0) > 0


@UC
def test_a_deleted_file_is_located_without_its_replicas(stored: Archive, tmp_path: Path) -> None:
    stored.ingest([make_fits(tmp_path / "v2", seed=2)], "CTAO-N", lfn=LFN, new_version=True)
    stored.preservation.delete(LFN, reason="test")  # the latest version
    loc = stored.locate(LFN)
    assert (loc.did, loc.available, loc.replicas) == (f"ctao:{LFN}", False, [])
    stored.preservation.reap()
    assert stored.locate(LFN) == loc
    assert stored.locate(f"ctao:{LFN}@v1").available  # the older version is untouched


@UC
def test_names_that_are_no_file_and_malformed_dids_are_refused(stored: Archive) -> None:
    with pytest.raises(NotFound, match=r"no such DID ctao:/ctao/dl0/obs_7/nothing\.fits"):
        stored.locate("/ctao/dl0/obs_7/nothing.fits")
    stored.datasets.add_dataset("/ctao/dl0/obs_7")
    with pytest.raises(NotFound, match="no such DID"):  # a dataset is not a file
        stored.locate("/ctao/dl0/obs_7")
    with pytest.raises(InvalidInput, match="invalid"):
        stored.locate("ctao:/ctao/dl0/obs_7/tel_003.fits@v0")


def test_a_locate_leaves_the_pool_transactional(stored: Archive) -> None:
    """The reads run in autocommit on PostgreSQL; the connection they used must come back to
    the pool as it was, or a later transaction would commit statement by statement."""
    for _ in range(3):
        stored.locate(LFN)

    def abandoned() -> None:
        with transaction(stored.sessions) as session:
            session.execute(delete(ReplicaRow))
            raise RuntimeError("abandon the transaction")

    with pytest.raises(RuntimeError):
        abandoned()
    assert len(stored.locate(LFN).replicas) == 1  # rolled back: the delete never happened
