"""A restarted transfer daemon takes back its SIGKILLed predecessor's copies at once (issue 15,
defect 12): it does not wait for their leases to run out while they block their link.

The lease here is ten minutes, so anything that finishes the copies before then was taken
back because its owner was known dead, never because its lease expired. The assertions are on
the lease bookkeeping: the rows the claim takes are leased to the dead instance until a time
still ahead of the claim, and the transfers are DONE with their events recorded before it.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.bdms.transfer import daemon as transfers
from dpps.bdms.transfer.claim import _COLUMNS
from dpps.catalog.engine import transaction
from dpps.catalog.heartbeats import dead_instances
from dpps.catalog.leases import dead_owners, lock_free
from dpps.catalog.models import EventRow, HeartbeatRow, TransferRow
from dpps.core.clock import utcnow
from dpps.core.daemon import DaemonContext
from tests.bdms.replication_helpers import (
    FAST,
    evaluate,
    ingest_dataset,
    leftovers,
    rule_row,
    tuned,
    verify_on_disk,
)
from tests.bdms.test_replication_faults import daemons, wait_for

pytestmark = pytest.mark.verifies_usecase("UC-110-1.6")

LEASE_S = 600.0


def _held(archive: Archive) -> dict[int, tuple[str | None, dt.datetime | None]]:
    with archive.sessions() as session:
        rows = session.scalars(select(TransferRow).where(TransferRow.state == "ACTIVE"))
        return {t.id: (t.lease_owner, t.lease_expires_at) for t in rows}


def test_a_restarted_daemon_takes_back_a_dead_predecessors_copies_at_once(
    archive: Archive, tmp_path: Path
) -> None:
    transfers_cfg = {**FAST["transfers"], "threads": 2, "lease_s": LEASE_S, "max_mb_s": 4}
    arch = tuned(archive, {**FAST, "transfers": transfers_cfg})
    ingest_dataset(arch, tmp_path / "in", 4, size=8_000_000)  # 2 s each at 4 MB/s
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    evaluate(arch)
    pic = Path(arch.storage("PIC").root)
    with daemons(arch.config.workspace, "transfer", log_dir=tmp_path / "logs") as [proc]:
        wait_for("a copy under way", lambda: any(pic.rglob(".*.part-*")), procs=[proc])
        proc.kill()  # SIGKILL mid-batch: no cleanup of any kind
        proc.wait()
    held = _held(arch)
    assert held  # claimed transfers still leased to the dead daemon ...
    [dead] = {owner for owner, _ in held.values()}
    assert dead is not None
    assert dead.split(":")[1] == str(proc.pid)
    expiry = min(e for _, e in held.values() if e is not None)
    with arch.sessions() as session:  # ... which had beaten, and whose beat is still fresh
        assert session.scalar(select(HeartbeatRow.id).where(HeartbeatRow.instance == dead))

    # What the successor's claim sees: the dead owner's rows are free although leased.
    with transaction(arch.sessions, commit=False) as session:
        claimed_at = utcnow()
        assert claimed_at < expiry  # their leases have not expired ...
        active = [TransferRow.state == "ACTIVE"]
        assert dead_owners(session, TransferRow, where=active) == {dead}
        free = lock_free(session, _COLUMNS, where=active, limit=100)
        assert free == []  # ... so without ``reclaim`` nothing is free
        reclaim = dead_owners(session, TransferRow, where=active)
        taken = lock_free(session, _COLUMNS, where=active, reclaim=reclaim, limit=100)
        assert {r.id for r in taken} == set(held)

    # The restarted daemon (in-process, at full speed) finishes them before the old lease.
    restarted = tuned(arch, {"transfers": {"max_mb_s": 0.0}})
    ctx = DaemonContext("transfer")
    with transfers.TransferDaemon(restarted.context) as successor:
        for _ in range(10):
            if successor.run_once(ctx) == 0 and rule_row(restarted, rule_id).state == "OK":
                break
    assert rule_row(restarted, rule_id).state == "OK"
    with restarted.sessions() as session:
        rows = {t.id: t for t in session.scalars(select(TransferRow))}
        done_at = session.scalars(
            select(EventRow.ts).where(EventRow.action == "transfer.done")
        ).all()
        assert session.scalar(select(HeartbeatRow.id).where(HeartbeatRow.instance == dead)) is None
    assert {rows[i].state for i in held} == {"DONE"}
    assert {rows[i].lease_owner for i in held} == {None}
    assert len(done_at) == 4
    assert max(done_at) < expiry  # recorded while the dead daemon's leases still ran
    assert leftovers(restarted) == []
    assert verify_on_disk(restarted) == 8


def test_only_a_dead_process_on_this_host_is_known_dead(archive: Archive) -> None:
    host = socket.gethostname()
    finished = subprocess.Popen(["true"])
    finished.wait()
    zombie = subprocess.Popen(["true"])  # exits at once; not reaped until wait()
    wait_for("the zombie", lambda: _state(zombie.pid) == "Z", timeout=30)
    alive = subprocess.Popen(["sleep", "60"])
    try:
        owners = {
            f"{host}:{finished.pid}:00000000": True,
            f"{host}:{zombie.pid}:00000000": True,
            f"{host}:{alive.pid}:00000000": False,
            f"{host}:{os.getpid()}:00000000": False,  # another instance in this process
            f"elsewhere:{finished.pid}:00000000": False,  # can't tell: waits for the lease
            "dead:1": False,
            "slow": False,
        }
        with transaction(archive.sessions) as session:
            found = dead_instances(session, owners)
        assert found == {o for o, dead in owners.items() if dead}
    finally:
        alive.kill()
        alive.wait()
        zombie.wait()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "?"
