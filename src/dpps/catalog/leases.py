"""Claiming work rows with a lease, so that killed workers lose nothing and no row is done twice.

A claimed row carries ``lease_owner`` and ``lease_expires_at``. Another worker may take it once
the lease expired (its owner died or hung), or, when the claimer passes ``reclaim``, at once
from an owner known to be dead. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``, so
concurrent claimers never wait for each other; SQLite claims inside the writer's
``BEGIN IMMEDIATE`` transaction, which already serialises claimers.

Why ``reclaim``: a lease must outlast the longest pause of a live owner (a renewal held up by a
busy catalog), so it is long - two minutes for transfers - and a SIGKILLed transfer daemon's
copies, counted against their link's limit while ACTIVE, used to block that link for the whole
lease after every restart. A restarted daemon now asks ``dead_owners`` which owners of live
leases are known dead (``dpps.catalog.heartbeats.dead_instances``: same host, process gone)
and takes their rows in the same claim; a live owner is never among them, so no row is ever
worked on by two live owners. Owners not known dead (another host, a one-off run) keep the
lease until it expires, as before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, or_, select, update
from sqlalchemy.orm import Session

from dpps.catalog.heartbeats import dead_instances
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
    reclaim: Collection[str] = (),
) -> list[T]:
    """Lease up to ``limit`` rows of ``model`` matching ``where`` to ``owner``; caller commits.
    Rows leased to one of ``reclaim`` (owners known dead) count as free."""
    now = utcnow()
    table: Any = model
    free = _free(table, now, reclaim)
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
    reclaim: Collection[str] = (),
) -> list[Row[Any]]:
    """The rows ``claim`` would lease, as plain rows of ``columns``, locked but not leased.

    For hot paths that decide per row and then write each kept row once (lease and new state
    in the same UPDATE) instead of twice: the caller leases the rows it keeps, in the same
    transaction. ``columns`` are columns of one model, which needs ``lease_expires_at``.
    """
    if limit <= 0:
        return []
    table = columns[0].class_
    free = _free(table, utcnow(), reclaim)
    stmt = select(*columns).where(*where, free).order_by(*order_by).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.execute(stmt))


def dead_owners(
    session: Session, model: type[Any], *, where: Sequence[ColumnElement[bool]]
) -> set[str]:
    """Owners of unexpired leases on rows of ``model`` matching ``where`` that are known dead
    (their heartbeats are forgotten): what a claimer passes as ``reclaim``."""
    owners = session.scalars(
        select(model.lease_owner)
        .distinct()
        .where(*where, model.lease_owner.is_not(None), model.lease_expires_at >= utcnow())
    )
    return dead_instances(session, owners)


def _free(table: Any, now: dt.datetime, reclaim: Collection[str]) -> ColumnElement[bool]:
    free = [table.lease_expires_at.is_(None), table.lease_expires_at < now]
    if reclaim:
        free.append(table.lease_owner.in_(sorted(reclaim)))
    return or_(*free)


def release(session: Session, row: Any) -> None:
    """Give a row back (its work is finished or will be retried by anyone)."""
    row.lease_owner = None
    row.lease_expires_at = None
