"""Replicas: where the copies of a file are and in which state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from dpps.catalog.models import ReplicaRow, RSERow


def replicas_of(session: Session, did_id: int) -> Sequence[tuple[ReplicaRow, RSERow]]:
    stmt = (
        select(ReplicaRow, RSERow)
        .join(RSERow, RSERow.id == ReplicaRow.rse_id)
        .where(ReplicaRow.did_id == did_id)
        .order_by(RSERow.name)
    )
    return [(row[0], row[1]) for row in session.execute(stmt)]


class ReplicaCopy(NamedTuple):
    """A replica's columns as a joined read selects them (no ORM object to build)."""

    state: str
    path: str
    bytes: int
    last_verified_at: dt.datetime | None


class RSEPlace(NamedTuple):
    """The columns of the RSE holding a replica, beside ``ReplicaCopy``."""

    name: str
    site: str
    kind: str
    available: bool


#: A replica's columns then its RSE's, for a read that outer-joins them onto its own rows
#: (``copy_from`` reads them back; ``bdms.retrieve.locate``: a file and its copies in one
#: statement). Order them by ``RSERow.name``, as ``replicas_of`` does.
COPY_COLUMNS = (
    ReplicaRow.state,
    ReplicaRow.path,
    ReplicaRow.bytes,
    ReplicaRow.last_verified_at,
    RSERow.name,
    RSERow.site,
    RSERow.kind,
    RSERow.available,
)


def copy_from(values: Sequence[Any]) -> tuple[ReplicaCopy, RSEPlace] | None:
    """The replica and its RSE from the values of ``COPY_COLUMNS``, in their order; None for
    the row an outer join gives a file with no replica at all."""
    if values[0] is None:
        return None
    return ReplicaCopy(*values[:4]), RSEPlace(*values[4:8])
