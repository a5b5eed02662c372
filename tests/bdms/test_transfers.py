"""The transfer daemon: verified copies, sources, link limits, retries, redo after a crash."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, update

from dpps.bdms.archive import Archive
from dpps.bdms.transfer import daemon as transfers
from dpps.bdms.transfer.claim import claim_jobs
from dpps.bdms.transfer.outcomes import record_outcomes
from dpps.bdms.transfer.records import Outcome
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, EventRow, ReplicaRow, RSERow, TransferRow
from dpps.core.clock import utcnow
from dpps.core.daemon import DaemonContext
from tests.bdms.replication_helpers import (
    drive,
    evaluate,
    event_count,
    ingest_dataset,
    leftovers,
    locks,
    replicas,
    rule_row,
    transfer,
    tuned,
    verify_on_disk,
)

pytestmark = pytest.mark.verifies_usecase("UC-110-1.6")


def _transfers(archive: Archive) -> list[TransferRow]:
    with archive.sessions() as session:
        return list(session.scalars(select(TransferRow).order_by(TransferRow.id)))


def _replica_state(archive: Archive, name: str, rse: str) -> str | None:
    with archive.sessions() as session:
        return session.scalar(
            select(ReplicaRow.state)
            .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
            .join(RSERow, RSERow.id == ReplicaRow.rse_id)
            .where(DIDRow.name == name, RSERow.name == rse)
        )


def test_transfers_copy_verify_and_record_everything(archive: Archive, tmp_path: Path) -> None:
    arch = tuned(archive)
    dids = ingest_dataset(arch, tmp_path / "in", 5)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    evaluate(arch)
    before = utcnow()
    assert transfer(arch) == 5
    assert rule_row(arch, rule_id).state == "OK"
    assert locks(arch, rule_id) == {"OK": 5}
    rows = _transfers(arch)
    assert [t.state for t in rows] == ["DONE"] * 5
    assert all(t.finished_at is not None and t.attempts == 0 for t in rows)
    with arch.sessions() as session:
        pic = session.execute(
            select(ReplicaRow).join(RSERow).where(RSERow.name == "PIC")
        ).scalars()
        assert all(r.state == "AVAILABLE" and r.last_verified_at >= before for r in pic)  # type: ignore[operator]
    assert verify_on_disk(arch) == 10
    assert leftovers(arch) == []
    assert event_count(arch, "replica.copying") == 5
    assert event_count(arch, "transfer.done") == 5
    actions = [e.action for e in arch.show(dids[0]).events]
    assert actions[:2] == ["transfer.done", "replica.copying"]


def test_a_corrupt_source_is_declared_bad_and_another_source_used(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    dids = ingest_dataset(arch, tmp_path / "in", 2)
    arch.add_rule("/ctao/dl0/run1", copies=1, rses="CSCS")
    drive(arch)
    victim = arch.show(dids[0]).file
    onsite = Path(arch.storage("CTAO-N").resolve(f"{victim.scope}{victim.name}"))
    onsite.write_bytes(b"\0" * (victim.bytes or 0))  # same size, other bytes
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert _replica_state(arch, victim.name, "CTAO-N") == "BAD"
    assert _replica_state(arch, victim.name, "PIC") == "AVAILABLE"
    retried = [t for t in _transfers(arch) if t.attempts]
    assert len(retried) == 1
    assert retried[0].state == "DONE"
    with arch.sessions() as session:
        bad = session.scalars(select(EventRow).where(EventRow.action == "replica.bad")).one()
        assert "checksum mismatch found by a transfer" in (bad.reason or "")
    assert verify_on_disk(arch) == 5  # 2 at CSCS, 2 at PIC, 1 good on-site


def test_a_source_only_on_tape_waits_for_staging(archive: Archive, tmp_path: Path) -> None:
    ingest_dataset(archive, tmp_path / "in", 1, rse="PIC-TAPE", dataset="/ctao/dl0/tape")
    rule_id = archive.add_rule("/ctao/dl0/tape", copies=1, rses="CSCS")
    evaluate(archive)
    assert rule_row(archive, rule_id).state == "REPLICATING"  # a source exists, on tape
    assert transfer(archive) == 0
    [row] = _transfers(archive)
    assert row.state == "QUEUED"
    assert row.attempts == 0
    assert row.error == "source only on tape (PIC-TAPE): waiting for staging"
    assert row.next_attempt_at > utcnow()


def test_the_link_limit_caps_copies_at_once(archive: Archive, tmp_path: Path) -> None:
    arch = tuned(archive, {"transfers": {"max_active_per_link": 2}})
    ingest_dataset(arch, tmp_path / "in", 6)
    arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    arch.add_rule("/ctao/dl0/run1", copies=1, rses="CSCS")
    evaluate(arch)
    with transaction(arch.sessions) as session:
        first = claim_jobs(session, arch.config, "a", 100, "root")
    assert sorted(j.dest_rse for j in first) == ["CSCS", "CSCS", "PIC", "PIC"]
    with transaction(arch.sessions) as session:  # a second instance: the links are full
        assert claim_jobs(session, arch.config, "b", 100, "root") == []
    with arch.sessions() as session:
        assert (
            session.scalars(
                select(TransferRow.lease_owner).where(TransferRow.state == "QUEUED")
            ).all()
            == [None] * 8
        )  # what could not be taken is not held either


def test_failed_attempts_back_off_then_fail_and_the_rule_is_stuck(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(
        archive, {"transfers": {"max_attempts": 2, "backoff_base_s": 3600.0, "threads": 2}}
    )
    [did] = ingest_dataset(arch, tmp_path / "in", 1)
    rule_id = arch.add_rule(did, copies=1, rses="PIC")
    evaluate(arch)
    pic = Path(arch.storage("PIC").root)
    pic.rename(pic.with_name("PIC.away"))
    pic.write_text("not a directory: the mount is gone")
    transfer(arch)
    [row] = _transfers(arch)
    assert (row.state, row.attempts) == ("QUEUED", 1)
    assert "RSE PIC" in (row.error or "")
    assert row.next_attempt_at >= utcnow() + dt.timedelta(seconds=1700)  # 3600 s, jittered
    assert _replica_state(arch, did.split(":")[1], "PIC") == "COPYING"
    assert transfer(arch) == 0  # not due yet
    with transaction(arch.sessions) as session:  # time passes
        session.execute(update(TransferRow).values(next_attempt_at=utcnow()))
    transfer(arch)
    [row] = _transfers(arch)
    assert (row.state, row.attempts) == ("FAILED", 2)
    assert _replica_state(arch, did.split(":")[1], "PIC") is None  # no copy there after all
    rule = rule_row(arch, rule_id)
    assert rule.state == "STUCK"
    assert f"transfer of {did} to PIC failed" in (rule.error or "")
    assert locks(arch, rule_id) == {"STUCK": 1}
    assert event_count(arch, "transfer.retry") == 1
    assert event_count(arch, "transfer.failed") == 1
    assert leftovers(arch) == []


def test_a_transfer_whose_daemon_died_is_redone_and_its_debris_removed(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "in", 2)
    arch.add_rule("/ctao/dl0/run1", copies=1, rses="DESY")
    evaluate(arch)
    with transaction(arch.sessions) as session:  # a daemon claims, then is SIGKILLed
        jobs = claim_jobs(session, arch.config, "dead:1", 10, "root")
    assert len(jobs) == 2
    desy = arch.storage("DESY")
    for job, publish in zip(jobs, (False, True), strict=True):
        final = Path(desy.resolve(job.dest_path))
        final.parent.mkdir(parents=True, exist_ok=True)
        (final.parent / f".{final.name}.part-{uuid.uuid4().hex}").write_bytes(b"half")
        if publish:  # this one died after publishing, before the catalog commit
            source = arch.storage(job.source_rse).resolve(job.source_path)
            final.write_bytes(Path(source).read_bytes())
    assert transfer(arch) == 0  # leases still live: nobody touches them
    with transaction(arch.sessions) as session:
        session.execute(
            update(TransferRow).values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    assert transfer(arch) == 2
    assert [t.state for t in _transfers(arch)] == ["DONE", "DONE"]
    assert leftovers(arch) == []
    assert verify_on_disk(arch) == 4
    assert event_count(arch, "transfer.done") == 2
    with arch.sessions() as session:
        methods = [
            e.details["method"]
            for e in session.scalars(select(EventRow).where(EventRow.action == "transfer.done"))
        ]
    assert sorted(methods) == ["kernel", "present"]


def test_an_outcome_from_an_instance_that_lost_its_lease_is_ignored(
    archive: Archive, tmp_path: Path
) -> None:
    ingest_dataset(archive, tmp_path / "in", 1)
    archive.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    evaluate(archive)
    with transaction(archive.sessions) as session:
        [job] = claim_jobs(session, archive.config, "slow", 10, "root")
        session.execute(
            update(TransferRow).values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    assert transfer(archive) == 1  # another instance takes over and finishes
    with transaction(archive.sessions) as session:
        late = record_outcomes(
            session, archive.config, "slow", [Outcome(job, "failed", error="late")], "root"
        )
    assert (late.lost, late.retried, late.failed) == (1, 0, 0)
    [row] = _transfers(archive)
    assert (row.state, row.attempts, row.error) == ("DONE", 0, None)


def test_stopping_gives_running_copies_back_untouched(archive: Archive, tmp_path: Path) -> None:
    arch = tuned(archive, {"transfers": {"max_mb_s": 1.0, "threads": 2}})
    ingest_dataset(arch, tmp_path / "in", 2, size=3_000_000)  # 3 s each at 1 MB/s
    arch.add_rule("/ctao/dl0/run1", copies=1, rses="FRASCATI")
    evaluate(arch)
    ctx = DaemonContext("transfer")
    timer = threading.Timer(0.3, ctx.stop.set)
    timer.start()
    try:
        with transfers.TransferDaemon(arch.context) as worker:
            assert worker.run_once(ctx) == 0
    finally:
        timer.cancel()
    rows = _transfers(arch)
    assert [(t.state, t.attempts, t.lease_owner) for t in rows] == [("QUEUED", 0, None)] * 2
    assert leftovers(arch) == []
    assert not any("FRASCATI" in r for r in replicas(arch).values())
    fast = tuned(arch, {"transfers": {"max_mb_s": 0.0}})
    assert transfer(fast) == 2
    assert verify_on_disk(fast) == 4
