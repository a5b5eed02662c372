"""Replicas: where the copies of a file are and in which state."""

from __future__ import annotations

from collections.abc import Sequence

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
