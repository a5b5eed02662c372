"""Rule transitions (dpps.bdms.states.rules): each from its source states only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update

from dpps.bdms.archive import Archive
from dpps.bdms.states import rules as rule_states
from dpps.catalog.engine import transaction
from dpps.catalog.models import RuleRow
from dpps.core.clock import utcnow
from dpps.core.errors import Conflict
from dpps.core.states import RuleState
from tests.bdms.replication_helpers import ingest_dataset, rule_row

pytestmark = pytest.mark.verifies_usecase("UC-110-1.6")

ALL = [s.value for s in RuleState]


@pytest.fixture
def rule_id(archive: Archive, tmp_path: Path) -> int:
    """A REPLICATING rule with no request outstanding and no locks (nothing to copy yet)."""
    ingest_dataset(archive, tmp_path / "in", 1)
    rule = archive.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    with transaction(archive.sessions) as session:
        session.execute(
            update(RuleRow)
            .where(RuleRow.id == rule)
            .values(evaluated_generation=RuleRow.generation, next_evaluation_at=None)
        )
    return rule


def _put(archive: Archive, rule_id: int, state: str) -> None:
    with transaction(archive.sessions) as session:
        session.execute(update(RuleRow).where(RuleRow.id == rule_id).values(state=state))


def test_a_new_rule_starts_replicating_and_due() -> None:
    now = utcnow()
    assert rule_states.start(now) == {"state": "REPLICATING", "next_evaluation_at": now}


@pytest.mark.parametrize("state", ALL)
def test_suspend_from_any_state_but_suspended(archive: Archive, rule_id: int, state: str) -> None:
    _put(archive, rule_id, state)
    with transaction(archive.sessions) as session:
        rule = session.get_one(RuleRow, rule_id)
        if state == "SUSPENDED":
            with pytest.raises(Conflict, match=r"is SUSPENDED, not .*\(suspend\)"):
                rule_states.suspend(rule)
        else:
            assert rule_states.suspend(rule) == [state, "SUSPENDED"]
    assert rule_row(archive, rule_id).state == "SUSPENDED"


@pytest.mark.parametrize("state", ALL)
def test_resume_only_from_suspended(archive: Archive, rule_id: int, state: str) -> None:
    _put(archive, rule_id, state)
    generation = rule_row(archive, rule_id).generation
    with transaction(archive.sessions) as session:
        rule = session.get_one(RuleRow, rule_id)
        if state != "SUSPENDED":
            with pytest.raises(Conflict, match="not SUSPENDED: nothing to resume"):
                rule_states.resume(session, rule)
            return
        assert rule_states.resume(session, rule) == ["SUSPENDED", "REPLICATING"]
    resumed = rule_row(archive, rule_id)
    assert resumed.state == "REPLICATING"
    assert resumed.next_evaluation_at is not None  # due at once, as a counted request
    assert resumed.generation == generation + 1


@pytest.mark.parametrize("state", ALL)
def test_settle_only_from_replicating(archive: Archive, rule_id: int, state: str) -> None:
    _put(archive, rule_id, state)
    with transaction(archive.sessions) as session:
        settled = rule_states.settle(session, {rule_id}, account="t")
    assert settled == ([rule_id] if state == "REPLICATING" else [])
    assert rule_row(archive, rule_id).state == ("OK" if state == "REPLICATING" else state)
    if state != "REPLICATING":
        with (
            pytest.raises(Conflict, match=f"is {state}, not REPLICATING"),
            transaction(archive.sessions) as session,
        ):
            rule_states.settle(session, {rule_id}, account="t", strict=True)


def test_settle_waits_for_an_outstanding_request(archive: Archive, rule_id: int) -> None:
    with transaction(archive.sessions) as session:  # files attached: a request counted
        session.execute(
            update(RuleRow).where(RuleRow.id == rule_id).values(generation=RuleRow.generation + 1)
        )
    with transaction(archive.sessions) as session:
        assert rule_states.settle(session, {rule_id}, account="t") == []
    assert rule_row(archive, rule_id).state == "REPLICATING"


@pytest.mark.parametrize("state", ALL)
def test_mark_stuck_never_touches_a_suspended_rule(
    archive: Archive, rule_id: int, state: str
) -> None:
    _put(archive, rule_id, state)
    retry_at = utcnow() + dt.timedelta(seconds=60)
    with transaction(archive.sessions) as session:
        changed = rule_states.mark_stuck(
            session, {rule_id}, "a copy failed", account="t", retry_at=retry_at
        )
    row = rule_row(archive, rule_id)
    if state == "SUSPENDED":
        assert changed == []
        assert row.state == "SUSPENDED"
        with (
            pytest.raises(Conflict, match=r"is SUSPENDED, not .*\(mark_stuck\)"),
            transaction(archive.sessions) as session,
        ):
            rule_states.mark_stuck(
                session, {rule_id}, "x", account="t", retry_at=retry_at, strict=True
            )
    else:
        assert changed == [rule_id]
        assert (row.state, row.error) == ("STUCK", "a copy failed")
        assert row.next_evaluation_at == retry_at


@pytest.mark.parametrize("state", ALL)
def test_evaluated_refused_on_a_suspended_rule(archive: Archive, rule_id: int, state: str) -> None:
    _put(archive, rule_id, state)
    with transaction(archive.sessions) as session:
        rule = session.get_one(RuleRow, rule_id)

        def evaluated(generation: int) -> RuleState:
            return rule_states.evaluated(
                session,
                rule,
                state=RuleState.OK,
                error=None,
                generation=generation,
                config=archive.config.rules,
                account="t",
            )

        if state == "SUSPENDED":
            with pytest.raises(Conflict, match=r"is SUSPENDED, not .*\(evaluated\)"):
                evaluated(rule.generation)
            return
        # the request answered: OK and no longer due; one still outstanding: REPLICATING, due
        assert evaluated(rule.generation) == RuleState.OK
        assert rule.next_evaluation_at is None
        assert evaluated(rule.generation - 1) == RuleState.REPLICATING
        assert rule.next_evaluation_at is not None
