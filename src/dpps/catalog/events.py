"""The preservation record: every state change appends an event in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from dpps.catalog import bulk
from dpps.catalog.models import EventRow
from dpps.core.clock import utcnow


def record(
    session: Session,
    *,
    account: str,
    action: str,
    did_id: int | None = None,
    rse_id: int | None = None,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    record_many(
        session,
        [
            {
                "account": account,
                "action": action,
                "did_id": did_id,
                "rse_id": rse_id,
                "reason": reason,
                "details": dict(details or {}),
            }
        ],
    )


#: The columns ``record_many`` writes, in the order of its value lists.
COLUMNS = ("ts", "account", "action", "did_id", "rse_id", "reason", "details")


def record_many(session: Session, events: Iterable[Mapping[str, Any]]) -> None:
    """Append events in one statement; the hot path of bulk registration."""
    now = utcnow()
    values = [
        (
            now,
            e["account"],
            e["action"],
            e.get("did_id"),
            e.get("rse_id"),
            e.get("reason"),
            dict(e.get("details") or {}),
        )
        for e in events
    ]
    bulk.insert_values(session, cast(Table, EventRow.__table__), COLUMNS, values)


def events_for(session: Session, did_id: int, limit: int = 100) -> Sequence[EventRow]:
    stmt = (
        select(EventRow)
        .where(EventRow.did_id == did_id)
        .order_by(EventRow.ts.desc(), EventRow.id.desc())
        .limit(limit)
    )
    return session.scalars(stmt).all()
