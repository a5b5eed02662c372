"""Registration's bulk writes (``catalog.dids.register_files`` through ``catalog.bulk``) on both
backends and both paths (COPY or the driver's executemany; an ordinary INSERT for few rows):
the rows read back as written, ids are the ones reported and later rows do not collide with
them, a duplicate the look-up did not see refuses the chunk with the database's error and
leaves nothing of it behind."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from dpps.bdms import registration
from dpps.bdms.archive import Archive
from dpps.catalog import attachments as attachment_repo
from dpps.catalog import bulk
from dpps.catalog import dids as did_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import AttachmentRow, DIDRow, EventRow, ReplicaRow
from dpps.core.identifiers import DID
from dpps.testing.postgres import TemporaryPostgres

NIGHT = dt.date(2026, 3, 14)
START = dt.datetime(2026, 3, 14, 22, 5, 0)  # no microseconds: stored with them all the same


@pytest.fixture(params=["bulk", "insert"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(bulk, "COPY_FROM", 1 if request.param == "bulk" else 10**9)
    return str(request.param)


def _file(archive: Archive, i: int, **changes: Any) -> did_repo.NewFile:
    fields: dict[str, Any] = {
        "scope": "ctao",
        # Longer than PostgreSQL's 63-character "name" type: a look-up that compared
        # through it (an easy slip with unnest) found no file and let duplicates through.
        "name": f"/ctao/dl0/north/2026/03/14/obs_{i:07d}/tel_001_chunk_{i:03d}.fits.fz",
        "bytes": 1000 + i,
        "checksums": {"adler32": f"{i:08x}", "blake3": f"{i:064x}", "md5": "d41d8cd9"},
        "rse_id": archive.rse_id("CTAO-N"),
        "path": f"ctao/dl0/obs_{i:04d}.fits.fz",
        "columns": {
            "data_level": "DL0",
            "obs_id": 1000 + i,
            "tel_id": 1,
            "observing_night": NIGHT,
            "time_start": START + dt.timedelta(microseconds=i),
        },
        "meta": {"zenith": 20.5, "run_type": "science", "lifetime_days": 10},
        "user_keys": ("run_type",),
    }
    return did_repo.NewFile(**(fields | changes))


def _register(archive: Archive, files: list[did_repo.NewFile]) -> list[did_repo.Outcome]:
    with transaction(archive.sessions) as session:
        dataset = registration.ensure_dataset(
            session, DID("ctao", "/ctao/dl0/set"), account=archive.account
        )
        return registration.register(session, files, account=archive.account, dataset=dataset)


def _counts(archive: Archive) -> tuple[int, ...]:
    with archive.sessions() as s:
        return tuple(
            int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in (DIDRow, ReplicaRow, EventRow, AttachmentRow)
        )


@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_rows_read_back_as_registered(archive: Archive, path: str) -> None:
    files = [_file(archive, i) for i in range(5)]
    outcomes = _register(archive, files)
    assert [o.status for o in outcomes] == ["registered"] * 5, path
    ids = [o.did_id for o in outcomes if o.did_id is not None]
    with archive.sessions() as s:
        rows = {r.id: r for r in s.scalars(select(DIDRow).where(DIDRow.id.in_(ids)))}
        for did_id, f in zip(ids, files, strict=True):
            row = rows[did_id]
            assert (row.name, row.version, row.is_latest, row.did_type) == (
                f.name,
                1,
                True,
                "FILE",
            )
            sums = f.checksums
            assert (row.bytes, row.adler32, row.blake3) == (
                f.bytes,
                sums["adler32"],
                sums["blake3"],
            )
            assert row.checksums == {"md5": "d41d8cd9"}
            assert (row.observing_night, row.time_start) == (
                f.columns["observing_night"],
                f.columns["time_start"],
            )
            assert row.meta == f.meta
            assert row.expires_at is not None
            assert row.created_at == row.updated_at
            assert row.expires_at - row.created_at == dt.timedelta(days=10)
        replicas = {r.did_id: r for r in s.scalars(select(ReplicaRow))}
        assert {d: (r.state, r.path, r.bytes, r.lock_count) for d, r in replicas.items()} == {
            d: ("AVAILABLE", f.path, f.bytes, 0) for d, f in zip(ids, files, strict=True)
        }
        events = s.scalars(select(EventRow).where(EventRow.action == "file.register")).all()
        assert sorted(e.did_id or 0 for e in events) == sorted(i or 0 for i in ids)
        assert events[0].details["user_keys"] == ["run_type"]
        assert events[0].details["md5"] == "d41d8cd9"
        children = set(s.scalars(select(AttachmentRow.child_id)))
        assert children == set(ids)
        # The ORM's query by time finds them: stored as SQLAlchemy stores a datetime.
        found = s.scalars(select(DIDRow.id).where(DIDRow.time_start >= START)).all()
        assert set(found) == set(ids)
    # Again: present, nothing written; other content: a conflict.
    before = _counts(archive)
    again = _register(archive, [*files[:2], _file(archive, 3, bytes=7)])
    assert [o.status for o in again] == ["present", "present", "conflict"]
    assert _counts(archive) == before
    # Rows written later (another chunk, a new collection) take new ids.
    more = _register(archive, [_file(archive, 10), _file(archive, 11)])
    with transaction(archive.sessions) as session:
        other = registration.ensure_dataset(
            session, DID("ctao", "/ctao/dl0/other"), account=archive.account
        )
    assert len({*ids, *(o.did_id for o in more), other}) == 8


@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_a_duplicate_the_look_up_missed_refuses_the_chunk_whole(
    archive: Archive, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer registered the name after this chunk's look-up (simulated: the look-up
    finds nothing): the database refuses the row, the chunk is written not at all, the error
    says which constraint, and the next chunk registers normally."""
    _register(archive, [_file(archive, 0), _file(archive, 1)])
    before = _counts(archive)
    with monkeypatch.context() as m:
        m.setattr(did_repo, "look_up", lambda *_a, **_k: ({}, []))
        with pytest.raises(IntegrityError) as refused:
            _register(archive, [_file(archive, 2), _file(archive, 1), _file(archive, 3)])
    message = str(refused.value)  # the unique constraint over (scope, name, version)
    assert "dids" in message, path
    assert "name" in message, path
    assert _counts(archive) == before
    outcomes = _register(archive, [_file(archive, 2), _file(archive, 1)])
    assert [o.status for o in outcomes] == ["registered", "present"]


@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_a_row_refused_in_a_later_table_leaves_no_file(archive: Archive, path: str) -> None:
    """The replica of the last file points to no RSE: DIDs were already written in the
    transaction, and none of them stays."""
    before = _counts(archive)
    files = [_file(archive, 0), _file(archive, 1, rse_id=999_999)]
    with pytest.raises(IntegrityError):
        _register(archive, files)
    assert _counts(archive) == before, path
    assert [o.status for o in _register(archive, files[:1])] == ["registered"]


@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_the_same_name_twice_in_a_chunk(archive: Archive, path: str) -> None:
    same, other = _file(archive, 0), _file(archive, 0, bytes=5)
    outcomes = _register(archive, [same, same, other])
    assert [o.status for o in outcomes] == ["registered", "present", "conflict"], path
    assert _counts(archive)[0] == 2  # the file and its dataset


@pytest.mark.postgres
@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_a_concurrent_writers_duplicate_refuses_the_chunk_whole(
    tmp_path: Path, postgres_server: TemporaryPostgres, path: str
) -> None:
    """A real second writer: it has written one of the chunk's names and not committed, so
    this chunk's look-up cannot see it (and reserves an id for it). The chunk's write waits
    on the other writer's index entry; when that commits, the database refuses the duplicate,
    and nothing of the chunk stays."""
    url = postgres_server.create_database()
    try:
        with Archive.init(tmp_path / "ws", catalog_url=url) as archive:
            _register(archive, [_file(archive, 0)])
            before = _counts(archive)
            other = archive.sessions()
            try:
                registration.register(other, [_file(archive, 1)], account=archive.account)
                failure: list[BaseException] = []

                def ours() -> None:
                    try:
                        _register(archive, [_file(archive, 2), _file(archive, 1)])
                    except BaseException as exc:  # handed to the test's thread
                        failure.append(exc)

                writer = threading.Thread(target=ours)
                writer.start()
                _wait_for_a_lock_wait(archive)
                other.commit()
            finally:
                other.close()
            writer.join(timeout=120)
            assert not writer.is_alive()
            assert len(failure) == 1
            assert isinstance(failure[0], IntegrityError), failure
            assert "dids" in str(failure[0]), path
            # the other writer's file (its DID, replica and event; no dataset), none of ours
            assert _counts(archive) == (before[0] + 1, before[1] + 1, before[2] + 1, before[3])
            again = _register(archive, [_file(archive, 2), _file(archive, 1)])
            assert [o.status for o in again] == ["registered", "present"]
    finally:
        postgres_server.drop_database(url)


def _wait_for_a_lock_wait(archive: Archive) -> None:
    """Until a backend of this catalog waits for a lock (the chunk's write on the other
    writer's row): the order of events the test needs, without guessing a delay."""
    stmt = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with archive.engine.connect() as conn:
            if conn.scalar(stmt):
                return
        time.sleep(0.02)
    raise AssertionError("the chunk's write never waited for the other writer")


@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_new_versions_take_ids_beyond_those_reserved(archive: Archive, path: str) -> None:
    """The look-up reserves ids only for names it does not find: a new version of a found
    name needs one more, reserved after it."""
    [first] = _register(archive, [_file(archive, 0)])
    changed = _file(archive, 0, bytes=5, new_version=True)
    outcomes = _register(archive, [_file(archive, 1), changed, _file(archive, 2)])
    assert [o.status for o in outcomes] == ["registered"] * 3, path
    assert [o.version for o in outcomes] == [1, 2, 1]
    ids = [first.did_id, *(o.did_id for o in outcomes)]
    assert len(set(ids)) == 4
    with archive.sessions() as s:
        latest = s.scalars(
            select(DIDRow.id).where(DIDRow.name == changed.name, DIDRow.is_latest.is_(True))
        ).all()
        assert latest == [outcomes[1].did_id]
        assert s.scalar(select(func.count()).select_from(ReplicaRow)) == 4


@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_a_name_holding_the_look_ups_separator_is_found(archive: Archive, path: str) -> None:
    """The look-up sends the names as one text split at newlines; a name holding one (no
    valid LFN does, but ``register_files`` takes what it is given) goes as an array."""
    odd = _file(archive, 0, name="/ctao/dl0/odd\nname.fits")
    files = [odd, _file(archive, 1)]
    assert [o.status for o in _register(archive, files)] == ["registered"] * 2, path
    before = _counts(archive)
    assert [o.status for o in _register(archive, files)] == ["present"] * 2
    assert _counts(archive) == before


@pytest.mark.verifies_usecase("UC-110-1.2.1")
def test_attach_targets_sees_a_rule_at_any_depth_and_closed_datasets(archive: Archive) -> None:
    """Registration asks one query whether any rule covers the datasets that grew: a rule on
    a container three levels above is found, a rule elsewhere is not."""
    with transaction(archive.sessions) as session:
        deep = registration.ensure_dataset(
            session, DID("ctao", "/ctao/a/b/c/set"), account=archive.account, tree_root="/ctao"
        )
        other = registration.ensure_dataset(
            session, DID("ctao", "/ctao/x/set"), account=archive.account
        )
    with archive.sessions() as s:
        assert attachment_repo.attach_targets(s, [deep, other])[1] is False
    archive.add_rule("ctao:/ctao/a", copies=1, rses="PIC")
    archive.datasets.close("ctao:/ctao/x/set")
    with archive.sessions() as s:
        targets, covered = attachment_repo.attach_targets(s, [deep, deep])
        assert covered is True
        assert [(t.id, t.name, t.is_open) for t in targets] == [(deep, "/ctao/a/b/c/set", True)]
        targets, covered = attachment_repo.attach_targets(s, [other])
        assert covered is False
        assert [(t.id, t.is_open) for t in targets] == [(other, False)]
        assert attachment_repo.attach_targets(s, []) == ([], False)


@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_a_new_version_of_a_file_of_the_same_chunk_is_the_only_latest(
    archive: Archive, path: str
) -> None:
    """Version 1 and version 2 of a name in one chunk: version 2 is the latest, alone."""
    first = _file(archive, 0)
    second = _file(archive, 0, bytes=5, new_version=True)
    outcomes = _register(archive, [first, second, _file(archive, 1)])
    assert [(o.status, o.version) for o in outcomes[:2]] == [("registered", 1), ("registered", 2)]
    with archive.sessions() as s:
        latest = s.scalars(
            select(DIDRow.version).where(DIDRow.name == first.name, DIDRow.is_latest.is_(True))
        ).all()
    assert latest == [2], path
    again = _register(archive, [second])
    assert [(o.status, o.version) for o in again] == [("present", 2)]


@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_look_up_finds_the_latest_and_reserves_one_id_per_missing_name(
    archive: Archive,
) -> None:
    [registered] = _register(archive, [_file(archive, 0)])
    known = _file(archive, 0)
    names = [known.name, "/ctao/x/new1", "/ctao/x/new1", "/ctao/x/new2"]
    with transaction(archive.sessions) as session:
        found, ids = did_repo.look_up(session, "ctao", names)
    assert list(found) == [known.name]
    row = found[known.name]
    assert (row.id, row.version, row.bytes) == (registered.did_id, 1, known.bytes)
    if archive.engine.dialect.name == "postgresql":  # reserved in the same statement
        assert len(ids) == 2
        assert ids == sorted(ids)
        assert min(ids) > (registered.did_id or 0)
    else:  # SQLite numbers them after the look-up (bulk.reserve_ids)
        assert ids == []
