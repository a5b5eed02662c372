"""Storage elements as the catalog knows them, kept in step with the configuration."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from dpps.catalog import events
from dpps.catalog.models import RSERow
from dpps.core.config import Config
from dpps.core.errors import NotFound


def sync_rses(session: Session, config: Config, account: str) -> dict[str, int]:
    """Create or update one row per configured RSE; RSEs dropped from the config are kept.

    The catalog never forgets an RSE that held replicas: a removed one is marked unavailable
    so its replicas stay on record and can be repaired elsewhere.
    """
    existing = {row.name: row for row in session.scalars(select(RSERow))}
    for name, rse in config.rses.items():
        values = {
            "site": rse.site,
            "kind": rse.kind.value,
            "onsite": rse.onsite,
            "url": config.rse_url(name),
            "attributes": dict(rse.attributes),
            "available": True,
        }
        row = existing.get(name)
        if row is None:
            row = RSERow(name=name, **values)
            session.add(row)
            session.flush()
            events.record(
                session, account=account, action="rse.add", rse_id=row.id, details=values
            )
        else:
            changed = {k: v for k, v in values.items() if getattr(row, k) != v}
            if changed:
                for key, value in changed.items():
                    setattr(row, key, value)
                events.record(
                    session, account=account, action="rse.update", rse_id=row.id, details=changed
                )
    for name, row in existing.items():
        if name not in config.rses and row.available:
            row.available = False
            events.record(
                session,
                account=account,
                action="rse.update",
                rse_id=row.id,
                reason="no longer in the configuration",
                details={"available": False},
            )
    session.flush()
    return {row.name: row.id for row in session.scalars(select(RSERow))}


def get_rse(session: Session, name: str) -> RSERow:
    row = session.scalars(select(RSERow).where(RSERow.name == name)).one_or_none()
    if row is None:
        known = ", ".join(r.name for r in list_rses(session)) or "none"
        raise NotFound(f"unknown RSE {name!r} (known: {known})")
    return row


def list_rses(session: Session) -> Sequence[RSERow]:
    return session.scalars(select(RSERow).order_by(RSERow.name)).all()
