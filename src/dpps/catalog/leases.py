"""Claiming work rows with a lease, so that killed workers lose nothing and no row is done twice.

A claimed row carries ``lease_owner`` and ``lease_expires_at``. Another worker may take it only
once the lease expired (its owner died or hung). PostgreSQL claims with
``FOR UPDATE SKIP LOCKED``, so concurrent claimers never wait for each other; SQLite claims
inside the writer's ``BEGIN IMMEDIATE`` transaction, which already serialises claimers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, or_, select, update
from sqlalchemy.orm import Session

from dpps.core.clock import utcnow


def claim[T](
    session: Session,
    model: type[T],
    *,
    owner: str,
    lease_s: float,
    where: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any] = (),
    limit: int = 100,
) -> list[T]:
    """Lease up to ``limit`` rows of ``model`` matching ``where`` to ``owner``; caller commits."""
    now = utcnow()
    table: Any = model
    free = or_(table.lease_expires_at.is_(None), table.lease_expires_at < now)
    stmt = select(model).where(*where, free).order_by(*order_by).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.scalars(stmt))
    if not rows:
        return rows
    ids = [r.id for r in rows]  # type: ignore[attr-defined]
    session.execute(
        update(model)
        .where(table.id.in_(ids))
        .values(lease_owner=owner, lease_expires_at=now + dt.timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    # One query reloads every claimed row (a refresh per row costs a round trip each).
    fresh = session.scalars(
        select(model).where(table.id.in_(ids)).execution_options(populate_existing=True)
    )
    by_id = {r.id: r for r in fresh}  # type: ignore[attr-defined]
    return [by_id[i] for i in ids]


def lock_free(
    session: Session,
    columns: Sequence[Any],
    *,
    where: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any] = (),
    limit: int = 100,
) -> list[Row[Any]]:
    """The rows ``claim`` would lease, as plain rows of ``columns``, locked but not leased.

    For hot paths that decide per row and then write each kept row once (lease and new state
    in the same UPDATE) instead of twice: the caller leases the rows it keeps, in the same
    transaction. ``columns`` are columns of one model, which needs ``lease_expires_at``.
    """
    if limit <= 0:
        return []
    table = columns[0].class_
    free = or_(table.lease_expires_at.is_(None), table.lease_expires_at < utcnow())
    stmt = select(*columns).where(*where, free).order_by(*order_by).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.execute(stmt))


def release(session: Session, row: Any) -> None:
    """Give a row back (its work is finished or will be retried by anyone)."""
    row.lease_owner = None
    row.lease_expires_at = None
