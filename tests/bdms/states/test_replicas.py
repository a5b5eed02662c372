"""Replica transitions (dpps.bdms.states.replicas): each from its source states only."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from dpps.bdms.archive import Archive
from dpps.bdms.states import replicas as replica_states
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, EventRow, ReplicaRow, RSERow, RuleRow
from dpps.core.clock import utcnow
from dpps.core.errors import Conflict
from tests.bdms.replication_helpers import ingest_dataset

pytestmark = pytest.mark.verifies_usecase("UC-110-1.7")


@pytest.fixture
def one(archive: Archive, tmp_path: Path) -> tuple[int, int]:
    """(file id, CTAO-N id) of one ingested file, its only replica AVAILABLE on CTAO-N."""
    [did] = ingest_dataset(archive, tmp_path / "in", 1)
    with archive.sessions() as session:
        did_id = session.scalars(select(DIDRow.id).where(DIDRow.name == did.split(":")[1])).one()
        rse_id = session.scalars(select(RSERow.id).where(RSERow.name == "CTAO-N")).one()
    return did_id, rse_id


def _state(archive: Archive, did_id: int, rse_id: int) -> str | None:
    with archive.sessions() as session:
        return session.scalar(
            select(ReplicaRow.state).where(
                ReplicaRow.did_id == did_id, ReplicaRow.rse_id == rse_id
            )
        )


def _set(archive: Archive, did_id: int, rse_id: int, state: str) -> None:
    with transaction(archive.sessions) as session:
        session.execute(
            update(ReplicaRow)
            .where(ReplicaRow.did_id == did_id, ReplicaRow.rse_id == rse_id)
            .values(state=state)
        )


def _actions(archive: Archive, did_id: int) -> list[str]:
    with archive.sessions() as session:
        return list(
            session.scalars(
                select(EventRow.action).where(EventRow.did_id == did_id).order_by(EventRow.id)
            )
        )


def test_declare_bad_marks_makes_rules_due_and_reports_the_file_lost(
    archive: Archive, one: tuple[int, int]
) -> None:
    did_id, rse_id = one
    rule_id = archive.add_rule("/ctao/dl0/run1", copies=1, rses="CTAO-N")
    with transaction(archive.sessions) as session:
        session.execute(update(RuleRow).values(next_evaluation_at=None))
    damaged = replica_states.Damaged(did_id, rse_id, "checksum mismatch", rse="CTAO-N")
    with transaction(archive.sessions) as session:
        declared = replica_states.declare_bad(
            session, [damaged], account="test", lost_reason="no copy left"
        )
    assert declared.marked == [damaged]
    assert declared.lost == [damaged]  # its only copy
    assert _state(archive, did_id, rse_id) == "BAD"
    assert _actions(archive, did_id)[-2:] == ["replica.bad", "file.lost"]
    with archive.sessions() as session:
        rule = session.get(RuleRow, rule_id)
        assert rule is not None
        assert rule.next_evaluation_at is not None  # due again


@pytest.mark.parametrize("state", ["BAD", "COPYING", "UNAVAILABLE", "BEING_DELETED"])
def test_declare_bad_is_refused_from_any_state_but_available(
    archive: Archive, one: tuple[int, int], state: str
) -> None:
    did_id, rse_id = one
    _set(archive, did_id, rse_id, state)
    damaged = replica_states.Damaged(did_id, rse_id, "checksum mismatch")
    with transaction(archive.sessions) as session:  # a stale view: skipped, nothing written
        declared = replica_states.declare_bad(session, [damaged], account="t", lost_reason="x")
    assert declared.marked == []
    assert declared.lost == []
    with (
        pytest.raises(Conflict, match=f"is {state}, not AVAILABLE"),
        transaction(archive.sessions) as session,
    ):
        replica_states.declare_bad(session, [damaged], account="t", lost_reason="x", strict=True)
    assert _state(archive, did_id, rse_id) == state
    assert "replica.bad" not in _actions(archive, did_id)


@pytest.mark.parametrize("state", ["AVAILABLE", "BAD", "UNAVAILABLE", "BEING_DELETED"])
def test_copied_only_from_copying(archive: Archive, one: tuple[int, int], state: str) -> None:
    did_id, rse_id = one
    _set(archive, did_id, rse_id, state)
    with archive.sessions() as session:
        replica_id = session.scalars(
            select(ReplicaRow.id).where(ReplicaRow.did_id == did_id)
        ).one()
    with transaction(archive.sessions) as session:
        replica_states.copied(session, [(replica_id, 1)])
    assert _state(archive, did_id, rse_id) == state
    _set(archive, did_id, rse_id, "COPYING")
    with transaction(archive.sessions) as session:
        replica_states.copied(session, [(replica_id, 1)])
    assert _state(archive, did_id, rse_id) == "AVAILABLE"


@pytest.mark.parametrize(
    ("state", "after"),
    [
        ("AVAILABLE", "AVAILABLE"),
        ("BEING_DELETED", "BEING_DELETED"),
        ("BAD", "COPYING"),
        ("UNAVAILABLE", "COPYING"),
        ("COPYING", "COPYING"),
    ],
)
def test_copying_never_overwrites_a_good_or_departing_replica(
    archive: Archive, one: tuple[int, int], state: str, after: str
) -> None:
    did_id, rse_id = one
    _set(archive, did_id, rse_id, state)
    with archive.sessions() as session:
        replica_id = session.scalars(
            select(ReplicaRow.id).where(ReplicaRow.did_id == did_id)
        ).one()
    with transaction(archive.sessions) as session:
        replica_states.copying(session, [(replica_id, "x/y")], now=utcnow())
    assert _state(archive, did_id, rse_id) == after


@pytest.mark.parametrize("state", ["AVAILABLE", "BAD", "BEING_DELETED"])
def test_copy_failed_removes_only_a_copying_replica(
    archive: Archive, one: tuple[int, int], state: str
) -> None:
    did_id, rse_id = one
    _set(archive, did_id, rse_id, state)
    with transaction(archive.sessions) as session:
        replica_states.copy_failed(session, did_id, rse_id)
    assert _state(archive, did_id, rse_id) == state
    _set(archive, did_id, rse_id, "COPYING")
    with transaction(archive.sessions) as session:
        replica_states.copy_failed(session, did_id, rse_id)
    assert _state(archive, did_id, rse_id) is None


@pytest.mark.parametrize("state", ["AVAILABLE", "BAD", "COPYING", "UNAVAILABLE", "BEING_DELETED"])
def test_being_deleted_from_any_state_but_itself_and_never_when_locked(
    archive: Archive, one: tuple[int, int], state: str
) -> None:
    did_id, rse_id = one
    _set(archive, did_id, rse_id, state)
    with archive.sessions() as session:
        replica_id = session.scalars(
            select(ReplicaRow.id).where(ReplicaRow.did_id == did_id)
        ).one()
    with transaction(archive.sessions) as session:  # a rule holds it: not without ignore_locks
        session.execute(update(ReplicaRow).values(lock_count=1))
        marked = replica_states.being_deleted(session, [replica_id], account="t", reason="r")
    assert marked == []
    assert _state(archive, did_id, rse_id) == state
    with transaction(archive.sessions) as session:
        marked = replica_states.being_deleted(
            session, [replica_id], account="t", reason="r", ignore_locks=True
        )
    assert marked == ([] if state == "BEING_DELETED" else [replica_id])
    assert _state(archive, did_id, rse_id) == "BEING_DELETED"
    assert ("replica.deleting" in _actions(archive, did_id)) == (state != "BEING_DELETED")
