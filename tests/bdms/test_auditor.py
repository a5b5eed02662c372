"""Fixity audits and repair (UC-110-1.7): the auditor finds every damaged replica, marks it BAD,
the rule evaluator repairs it from a good copy, and a file without any good copy is an alarm."""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.bdms.daemons import REGISTRY
from dpps.bdms.preservation import auditor
from dpps.bdms.records import AuditReport
from dpps.catalog.engine import transaction
from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.catalog.models import HeartbeatRow, ReplicaRow, RSERow, RuleRow
from dpps.cli.main import app
from dpps.core.clock import utcnow
from dpps.core.daemon import DaemonContext, run_registered
from dpps.core.errors import IntegrityFailure, NotFound, Unavailable
from tests.bdms.preservation_helpers import (
    actions,
    ingest_files,
    open_workspace,
    put_replica,
    replica_rows,
    replicate,
    set_time,
    storage_file,
)

UC = "UC-110-1.7"
pytestmark = pytest.mark.verifies_usecase(UC)


@pytest.fixture
def archive(tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    with open_workspace(tmp_path, catalog_url) as arch:
        yield arch


def _flip(path: Path, offset: int = -100) -> None:
    """Silent corruption: same size, one byte changed."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _daemon_pass(archive: Archive) -> int:
    return auditor.one_pass(DaemonContext(name="auditor"), archive.sessions, archive.config)


def test_audit_finds_missing_truncated_and_corrupted_replicas(
    archive: Archive, tmp_path: Path
) -> None:
    dids = ingest_files(archive, tmp_path / "src", 5)
    for did in dids:
        put_replica(archive, did, "PIC")
    _flip(storage_file(archive, dids[0], "PIC"))
    truncated = storage_file(archive, dids[1], "PIC")
    truncated.write_bytes(truncated.read_bytes()[:-1])
    storage_file(archive, dids[2], "PIC").unlink()
    report = archive.preservation.audit(rse="PIC")
    assert report.examined == 5
    assert report.good == 2
    assert report.lost == []
    reasons = {b.did: b.reason for b in report.bad}
    assert set(reasons) == set(dids[:3])
    assert reasons[dids[0]].startswith("checksum mismatch")
    assert reasons[dids[1]].startswith("size mismatch")
    assert reasons[dids[2]].startswith("missing")
    for did in dids[:3]:
        assert replica_rows(archive, did)["PIC"].state == "BAD"
        assert replica_rows(archive, did)["CTAO-N"].state == "AVAILABLE"  # not audited
        assert actions(archive, did)[-1] == "replica.bad"
    for did in dids[3:]:
        assert replica_rows(archive, did)["PIC"].state == "AVAILABLE"
    # A second audit reads only what is still AVAILABLE.
    assert archive.preservation.audit(rse="PIC").examined == 2


def test_a_file_without_good_copy_raises_the_alarm(archive: Archive, tmp_path: Path) -> None:
    [did] = ingest_files(archive, tmp_path / "src", 1)
    storage_file(archive, did, "CTAO-N").unlink()
    before = auditor.METRICS["files_lost"]
    report = archive.preservation.audit()
    assert report.lost == [did]
    assert auditor.METRICS["files_lost"] == before + 1
    assert actions(archive, did)[-2:] == ["replica.bad", "file.lost"]
    health = archive.preservation.health()
    assert health.lost == 1
    assert health.lost_files == [did]
    assert health.lost_events == 1
    assert not health.ok
    res = CliRunner().invoke(app, ["-w", str(archive.config.workspace), "health"])
    assert res.exit_code == IntegrityFailure.exit_code
    assert "lost_files: 1 file(s) without any good copy" in res.stdout
    assert did in res.stdout


def test_daemon_pass_reads_the_longest_unverified_first(tmp_path: Path, catalog_url: str) -> None:
    overrides = {"auditor": {"files_per_pass": 2, "interval_days": 10}}
    with open_workspace(tmp_path, catalog_url, overrides) as archive:
        dids = ingest_files(archive, tmp_path / "src", 4)
        ids = {d: replica_rows(archive, d)["CTAO-N"].id for d in dids}
        assert _daemon_pass(archive) == 0  # all verified at ingest: nothing due
        for did, days in zip(dids, (20, 40, 30, 11), strict=True):
            set_time(archive, ReplicaRow, "last_verified_at", dt.timedelta(days=days), id=ids[did])
        with archive.sessions() as session:
            assert auditor.plan(session, archive.config) == [
                ids[dids[1]],
                ids[dids[2]],
                ids[dids[0]],
                ids[dids[3]],
            ]
        assert _daemon_pass(archive) == 2
        fresh = {d: replica_rows(archive, d)["CTAO-N"].last_verified_at for d in dids}
        recent = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
        assert [d for d in dids if fresh[d] and fresh[d] > recent] == [dids[1], dids[2]]
        assert _daemon_pass(archive) == 2
        assert _daemon_pass(archive) == 0


def test_unmounted_storage_is_skipped_not_condemned(archive: Archive, tmp_path: Path) -> None:
    dids = ingest_files(archive, tmp_path / "src", 2)
    for did in dids:
        put_replica(archive, did, "PIC")
    pic = tmp_path / "ws" / "rse" / "PIC"
    pic.rename(tmp_path / "PIC-unmounted")
    try:
        report = archive.preservation.audit(rse="PIC")
        assert report.bad == []
        assert report.skipped == 2
        assert report.good == 0
        assert all(replica_rows(archive, d)["PIC"].state == "AVAILABLE" for d in dids)
        res = CliRunner().invoke(
            app, ["-w", str(archive.config.workspace), "audit", "--rse", "PIC"]
        )
        assert res.exit_code == Unavailable.exit_code
        assert "is missing" in res.stderr
    finally:
        (tmp_path / "PIC-unmounted").rename(pic)
    assert archive.preservation.audit(rse="PIC").good == 2


def test_a_throttled_audit_stops_promptly(archive: Archive, tmp_path: Path) -> None:
    dids = ingest_files(archive, tmp_path / "src", 6)
    ids = archive.preservation.plan_audit()
    ctx = DaemonContext(name="auditor")
    seen: list[int] = []
    reports: list[AuditReport] = []

    def progress(n: int) -> None:
        seen.append(n)
        ctx.stop.set()  # SIGTERM after the first file

    def run() -> None:
        reports.append(
            auditor.audit(
                ctx, archive.sessions, archive.config, ids, bytes_per_s=1.0, progress=progress
            )
        )

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=120)  # 1 byte/s would take hours without the stop
    assert not thread.is_alive()
    [report] = reports
    assert report.examined == 1
    assert report.good == 1
    assert len(ids) == len(dids)


def test_cli_audit(archive: Archive, tmp_path: Path) -> None:
    dids = ingest_files(archive, tmp_path / "src", 3)
    ws = ("-w", str(archive.config.workspace))
    runner = CliRunner()
    res = runner.invoke(app, [*ws, "audit", "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["good"] == 3
    _flip(storage_file(archive, dids[1], "CTAO-N"))
    res = runner.invoke(app, [*ws, "audit", "--rse", "CTAO-N", "--limit", "3"])
    assert res.exit_code == IntegrityFailure.exit_code
    assert "BAD replicas" in res.stdout
    assert "3 replicas read, 2 good, 1 BAD" in res.stdout
    assert replica_rows(archive, dids[1])["CTAO-N"].state == "BAD"
    res = runner.invoke(app, [*ws, "audit", "--rse", "NOWHERE"])
    assert res.exit_code == NotFound.exit_code
    assert "unknown RSE" in res.stderr
    res = runner.invoke(app, [*ws, "audit", "--limit", "0"])
    assert res.exit_code == 2


def test_the_registered_daemon_runs_once(archive: Archive, tmp_path: Path) -> None:
    [did] = ingest_files(archive, tmp_path / "src", 1)
    _flip(storage_file(archive, did, "CTAO-N"))
    set_time(archive, ReplicaRow, "last_verified_at", dt.timedelta(days=365))
    assert REGISTRY["auditor"].package == "bdms"
    ctx = run_registered(
        "auditor", archive.context, DatabaseHeartbeats(archive.sessions), once=True
    )
    assert not ctx.errors
    assert replica_rows(archive, did)["CTAO-N"].state == "BAD"


def test_damaged_offsite_replicas_are_all_found_and_repaired(
    archive: Archive, tmp_path: Path
) -> None:
    """The fault test of the issue: corrupt 1 % of the off-site replicas and delete another
    1 %; the auditor finds 100 % of them and the rule evaluator repairs them from good copies.
    """
    dids = ingest_files(archive, tmp_path / "src", 100)
    archive.apply_policy("/ctao/dl0/run1", "acada")
    replicate(archive)
    with archive.sessions() as session:
        offsite = session.execute(
            select(ReplicaRow.id, ReplicaRow.did_id, ReplicaRow.path, RSERow.name)
            .join(RSERow, RSERow.id == ReplicaRow.rse_id)
            .where(RSERow.onsite.is_(False))
            .order_by(ReplicaRow.id)
        ).all()
    assert len(offsite) == 200
    damaged = random.Random(42).sample(offsite, 4)
    for n, rep in enumerate(damaged):
        path = Path(archive.storage(rep.name).resolve(rep.path))
        _flip(path) if n < 2 else path.unlink()
    report = archive.preservation.audit()
    assert report.examined == 300
    assert report.skipped == 0
    assert report.lost == []
    assert sorted((b.rse, b.path) for b in report.bad) == sorted((r.name, r.path) for r in damaged)
    with archive.sessions() as session:
        assert set(session.scalars(select(ReplicaRow.id).where(ReplicaRow.state == "BAD"))) == {
            r.id for r in damaged
        }
    replicate(archive)  # the evaluator sees the BAD copies and has them made again
    with archive.sessions() as session:
        states = set(session.scalars(select(ReplicaRow.state)))
        rules = set(session.scalars(select(RuleRow.state)))
    assert states == {"AVAILABLE"}
    assert rules == {"OK"}
    again = archive.preservation.audit()
    assert again.bad == []
    assert again.good == 300
    with archive.sessions() as session:
        for rep in damaged:  # each damaged file has its two good off-site copies again
            rows = session.execute(
                select(ReplicaRow.path, RSERow.name, ReplicaRow.state)
                .join(RSERow, RSERow.id == ReplicaRow.rse_id)
                .where(ReplicaRow.did_id == rep.did_id, RSERow.onsite.is_(False))
            ).all()
            assert len(rows) == 2
            assert {state for _p, _r, state in rows} == {"AVAILABLE"}
    health = archive.preservation.health()
    assert health.lost == 0
    assert health.under_replicated == 0
    # the daemons ran in this process without heartbeats: only that check rings
    assert [c.name for c in health.checks if not c.ok] == ["daemons"]
    assert len(dids) == 100


def test_health_reports_rules_copies_and_daemons(archive: Archive, tmp_path: Path) -> None:
    """The alarm's checks one by one; tests/bdms/test_health.py has the full matrix."""
    ws = ("-w", str(archive.config.workspace))
    runner = CliRunner()
    [did] = ingest_files(archive, tmp_path / "src", 1)
    beat_required(archive)
    res = runner.invoke(app, [*ws, "health", "--json"])
    assert res.exit_code == 0, res.stdout
    clean = json.loads(res.stdout)
    assert clean["ok"] is True
    assert clean["lost"] == 0
    assert {d["name"] for d in clean["daemons"]} >= {"stager", "reaper", "auditor"}
    assert {c["name"]: c["ok"] for c in clean["checks"]} == {
        "lost_files": True,
        "under_replicated": True,
        "stuck_rules": True,
        "daemons": True,
        "rses": True,
    }
    rule_id = archive.add_rule(did, copies=2, rses="offsite&type=disk")
    report = archive.preservation.health()
    assert report.under_replicated == 1
    [short] = report.under_replicated_files
    assert (short.did, short.rule_id, short.wanted, short.good) == (did, rule_id, 2, 0)
    assert not report.ok  # short of copies: an operator must know, even while replicating
    with transaction(archive.sessions) as session:
        session.execute(
            update(RuleRow)
            .where(RuleRow.id == rule_id)
            .values(state="STUCK", error="no destination with free space")
        )
        session.add(
            HeartbeatRow(
                daemon="reaper",
                instance="gone:1",
                hostname="gone",
                pid=1,
                started_at=dt.datetime(2000, 1, 1),
                last_seen=dt.datetime(2000, 1, 1),
                details={},
            )
        )
    res = runner.invoke(app, [*ws, "health"])
    assert res.exit_code == Unavailable.exit_code
    assert "stuck_rules: 1 stuck rule(s)" in res.stdout
    assert "no destination with free space" in res.stdout
    assert "under_replicated: 1 file(s)" in res.stdout
    assert "problems found" in res.stdout


def beat_required(archive: Archive) -> None:
    """A fresh heartbeat for every daemon ``dpps health`` needs, as running daemons leave."""
    now = utcnow()
    with transaction(archive.sessions) as session:
        for name in archive.config.health.required_daemons:
            session.add(
                HeartbeatRow(
                    daemon=name,
                    instance=f"test:{name}",
                    hostname="test",
                    pid=1,
                    started_at=now,
                    last_seen=now,
                    details={},
                )
            )


@pytest.mark.parametrize("command", ["stage", "audit", "delete", "export", "health"])
def test_preservation_commands_have_help_and_json(command: str) -> None:
    res = CliRunner().invoke(app, [command, "--help"])
    assert res.exit_code == 0
    assert "Usage" in res.stdout
    assert "--json" in res.stdout
