"""Daemon heartbeats in the database: which instances live, and each one's share of work."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from dpps.catalog.engine import transaction
from dpps.catalog.models import HeartbeatRow
from dpps.core.clock import utcnow
from dpps.core.daemon import WorkerSlot


class DatabaseHeartbeats:
    """Instances that have not beaten for ``expire_s`` are considered dead and forgotten."""

    def __init__(self, factory: sessionmaker[Session], expire_s: float = 60.0) -> None:
        self.factory = factory
        self.expire_s = expire_s

    def beat(self, daemon: str, instance: str, details: Mapping[str, Any]) -> WorkerSlot:
        now = utcnow()
        with transaction(self.factory) as session:
            row = session.scalars(
                select(HeartbeatRow).where(
                    HeartbeatRow.daemon == daemon, HeartbeatRow.instance == instance
                )
            ).one_or_none()
            if row is None:
                session.add(
                    HeartbeatRow(
                        daemon=daemon,
                        instance=instance,
                        hostname=socket.gethostname(),
                        pid=os.getpid(),
                        started_at=now,
                        last_seen=now,
                        details=dict(details),
                    )
                )
            else:
                row.last_seen = now
            session.execute(
                delete(HeartbeatRow).where(
                    HeartbeatRow.daemon == daemon,
                    HeartbeatRow.last_seen < now - dt.timedelta(seconds=self.expire_s),
                )
            )
            session.flush()
            live = session.scalars(
                select(HeartbeatRow.instance)
                .where(HeartbeatRow.daemon == daemon)
                .order_by(HeartbeatRow.started_at, HeartbeatRow.instance)
            ).all()
        return WorkerSlot(live.index(instance), len(live))

    def forget(self, daemon: str, instance: str) -> None:
        with transaction(self.factory) as session:
            session.execute(
                delete(HeartbeatRow).where(
                    HeartbeatRow.daemon == daemon, HeartbeatRow.instance == instance
                )
            )

    def live(self, session: Session) -> list[HeartbeatRow]:
        """Every instance's last heartbeat (for ``dpps health``)."""
        return list(session.scalars(select(HeartbeatRow).order_by(HeartbeatRow.daemon)))
