"""Daemon heartbeats in the database: which instances live, and each one's share of work.

Also which lease owners are known to be dead (``dead_instances``), so that work a SIGKILLed
daemon held can be taken back before its lease runs out (see ``dpps.catalog.leases``). A lease
owner is an instance id, ``host:pid:tag`` (``dpps.core.daemon.new_instance_id``). Known dead
means: it ran on this host and its process is gone (or a zombie). Nothing else counts: a missing
or old heartbeat does not, because one-off runs (``run_once`` from a test, a library caller)
hold leases without ever beating, and a live daemon busy with one long pass beats late. Whoever
finds an instance dead also forgets its heartbeat, so ``dpps health`` and the split of work stop
counting it at once. Instances on one host must therefore share a PID namespace or have
hostnames of their own (the default for containers); an instance restarted on another host
waits for the lease to expire.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
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

    def beat(
        self,
        daemon: str,
        instance: str,
        details: Mapping[str, Any],
        *,
        hostname: str | None = None,
        pid: int | None = None,
    ) -> WorkerSlot:
        """Record that ``instance`` lives; ``hostname``/``pid`` name where it runs when that
        is not this process (a site's agent beating through the API)."""
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
                        hostname=hostname or socket.gethostname(),
                        pid=os.getpid() if pid is None else pid,
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


def dead_instances(session: Session, owners: Iterable[str]) -> set[str]:
    """The ``owners`` (lease owners, instance ids) known to be dead; forgets their heartbeats.

    Cheap: one process-table look-up per distinct owner that ran on this host, and a DELETE
    only when one is found dead."""
    host = socket.gethostname()
    dead = set()
    for owner in set(owners):
        parts = owner.rsplit(":", 2)
        mine = len(parts) == 3 and parts[0] == host and parts[1].isdigit()
        if mine and _process_gone(int(parts[1])):
            dead.add(owner)
    if dead:
        session.execute(delete(HeartbeatRow).where(HeartbeatRow.instance.in_(sorted(dead))))
    return dead


def _process_gone(pid: int) -> bool:
    if pid == os.getpid():  # another instance in this process (a thread of ``dpps serve``)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, run by another user
        return False
    try:  # killed but not yet reaped by its parent: as dead as it gets
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")
