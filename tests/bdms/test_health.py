"""``dpps health`` as an operator's alarm (issue 15, defect 5).

It said "healthy" (exit 0) while files were short of their copies and while no daemon ran at
all. Now every check must pass: no lost file (exit 7 otherwise), no file short of copies, no
stuck rule, every needed daemon with a live heartbeat, every RSE available (exit 9 otherwise);
``--json`` lists every check with its status.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.bdms.preservation import health as health_checks
from dpps.catalog.engine import transaction
from dpps.catalog.models import HeartbeatRow, RSERow
from dpps.cli.main import app
from dpps.core.clock import utcnow
from dpps.core.errors import IntegrityFailure, Unavailable
from tests.bdms.preservation_helpers import ingest_files, storage_file
from tests.bdms.test_auditor import beat_required

pytestmark = pytest.mark.verifies_usecase("UC-110-1.7")
runner = CliRunner()
CHECKS = ["lost_files", "under_replicated", "stuck_rules", "daemons", "rses"]


def health(archive: Archive) -> tuple[int, dict[str, object], dict[str, bool]]:
    res = runner.invoke(app, ["-w", str(archive.config.workspace), "health", "--json"])
    data = json.loads(res.stdout)
    checks = {c["name"]: c["ok"] for c in data["checks"]}
    assert list(checks) == CHECKS  # every check, every time
    return res.exit_code, data, checks


def test_no_daemon_running_is_an_alarm(archive: Archive) -> None:
    code, data, checks = health(archive)
    assert code == Unavailable.exit_code
    assert checks == {**dict.fromkeys(CHECKS, True), "daemons": False}
    assert data["ok"] is False
    [alarm] = data["alarms"]  # type: ignore[misc]
    assert "needed daemon(s) not running: evaluator, transfer, stager, reaper, auditor" in alarm
    beat_required(archive)
    code, data, checks = health(archive)
    assert (code, data["ok"], data["alarms"]) == (0, True, [])
    text = runner.invoke(app, ["-w", str(archive.config.workspace), "health"])
    assert text.exit_code == 0
    assert "healthy" in text.stdout


def test_files_short_of_their_copies_are_an_alarm(archive: Archive, tmp_path: Path) -> None:
    beat_required(archive)
    [did] = ingest_files(archive, tmp_path / "src", 1)
    archive.add_rule(did, copies=2, rses="offsite&type=disk")
    code, data, checks = health(archive)
    assert code == Unavailable.exit_code
    assert [name for name, ok in checks.items() if not ok] == ["under_replicated"]
    assert data["alarms"] == ["1 file(s) with fewer good copies than their rules want"]


def test_an_unavailable_rse_is_an_alarm(archive: Archive) -> None:
    beat_required(archive)
    root = Path(archive.storage("PIC").root)
    root.rename(root.with_name("PIC.away"))  # the disk is not mounted
    code, data, checks = health(archive)
    assert code == Unavailable.exit_code
    assert [name for name, ok in checks.items() if not ok] == ["rses"]
    assert data["alarms"] == ["RSE(s) unavailable: PIC"]
    # (a command re-reads dpps.yaml into the catalog: a flag is seen by the library's caller)
    with transaction(archive.sessions) as session:
        session.execute(update(RSERow).where(RSERow.name == "DESY").values(available=False))
    report = archive.preservation.health()
    assert report.alarms == ["RSE(s) unavailable: DESY, PIC"]
    [rses] = [c for c in report.checks if c.name == "rses"]
    assert rses.count == 2
    assert any("PIC" in item and "missing" in item for item in rses.items)
    assert not root.exists()  # looking did not create it


def test_a_lost_file_exits_7_before_anything_else(archive: Archive, tmp_path: Path) -> None:
    [did] = ingest_files(archive, tmp_path / "src", 1)
    storage_file(archive, did, "CTAO-N").unlink()
    archive.preservation.audit()
    code, data, checks = health(archive)
    assert code == IntegrityFailure.exit_code
    assert checks["lost_files"] is False
    assert data["lost_files"] == [did]


def test_site_processes_count_for_the_daemon_they_partition(archive: Archive) -> None:
    """A deployment runs its storage daemons per site (heartbeats ``reaper@CTAO-N``): they
    satisfy a required ``reaper``; a required ``reaper@PIC`` wants exactly that one."""
    now = utcnow()
    with transaction(archive.sessions) as session:
        for name in ("evaluator", "transfer@PIC", "stager@PIC-TAPE", "reaper@CTAO-N", "auditor"):
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
    code, data, checks = health(archive)
    assert (code, checks["daemons"]) == (0, True), data
    with archive.sessions() as session:
        found = health_checks.daemons(session, utcnow())
    assert health_checks.daemons_check(found, ("reaper@CTAO-N", "transfer")).ok
    only_pic = health_checks.daemons_check(found, ("reaper@PIC",))
    assert not only_pic.ok
    assert only_pic.items == ["reaper@PIC: not running"]
