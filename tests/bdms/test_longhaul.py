"""The ESCAPE long-haul scenario, end to end: 190 files land on-site through the ACADA
ingestion, are replicated to two off-site data centers (one copy on tape) and are deleted
on-site - all by the daemons of ``dpps serve``, nobody calling anything in between."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dpps.bdms.archive import Archive
from dpps.bdms.daemons import REGISTRY
from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.catalog.models import (
    DIDRow,
    EventRow,
    HeartbeatRow,
    ReplicaRow,
    RSERow,
    RuleRow,
    TransferRow,
)
from dpps.core.daemon import serve as serve_daemons
from tests.acada.helpers import lfn_of, simulate_untriggered, small, trigger
from tests.bdms.preservation_helpers import open_workspace

FILES = 190


@pytest.fixture
def archive(tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    overrides = {
        "reaper": {"onsite_retention_days": 0},
        "acada": {"workers": 1},
        "auditor": {"interval_days": 0, "files_per_pass": 50},
    }
    with open_workspace(tmp_path, catalog_url, overrides) as arch:
        yield arch


def _landing(archive: Archive) -> Path:
    return Path(archive.config.rse_url(archive.config.acada.rse)) / archive.config.acada.landing


def _state(archive: Archive) -> dict[str, int]:
    """Files registered; on-site, off-site disk and off-site tape replicas AVAILABLE; rules."""
    with archive.sessions() as session:
        files = session.scalar(
            select(func.count()).select_from(DIDRow).where(DIDRow.did_type == "FILE")
        )
        counts = session.execute(
            select(RSERow.onsite, RSERow.kind, func.count())
            .join(ReplicaRow, ReplicaRow.rse_id == RSERow.id)
            .where(ReplicaRow.state == "AVAILABLE")
            .group_by(RSERow.onsite, RSERow.kind)
        ).all()
        rules = session.scalar(select(func.count()).select_from(RuleRow))
        ok = session.scalar(select(func.count()).select_from(RuleRow).where(RuleRow.state == "OK"))
    onsite = sum(n for on, _kind, n in counts if on)
    disk = sum(n for on, kind, n in counts if not on and kind == "disk")
    tape = sum(n for on, kind, n in counts if not on and kind == "tape")
    return {
        "files": int(files or 0),
        "onsite": onsite,
        "offsite_disk": disk,
        "offsite_tape": tape,
        "rules": int(rules or 0),
        "rules_ok": int(ok or 0),
    }


def _diagnose(archive: Archive) -> dict[str, object]:
    """Rules not OK (state, error, when due) and transfers by state: what a failure needs."""
    with archive.sessions() as session:
        rules = [
            (r.id, r.state, r.error, str(r.next_evaluation_at), r.lease_owner)
            for r in session.scalars(select(RuleRow).where(RuleRow.state != "OK"))
        ]
        transfers = dict(
            session.execute(
                select(TransferRow.state, func.count()).group_by(TransferRow.state)
            ).all()
        )
        now = session.scalar(select(func.now()))
    return {"rules_not_ok": rules, "transfers": transfers, "db_now": str(now)}


@pytest.mark.slow
@pytest.mark.verifies_usecase("UC-110-1.1.1")
@pytest.mark.verifies_usecase("UC-110-1.6")
@pytest.mark.verifies_usecase("UC-110-1.8")
def test_escape_long_haul(archive: Archive) -> None:
    landing = _landing(archive)
    files = simulate_untriggered(landing, small(observation_blocks=26, telescopes=(1, 2)))
    assert len(files) >= FILES
    for extra in files[FILES:]:
        extra.unlink()
    files = files[:FILES]
    lfns = {lfn_of(landing, f) for f in files}

    stop = threading.Event()
    failures: list[BaseException] = []
    seen_daemons: set[str] = set()

    def serve() -> None:  # what `dpps serve` runs: every registered daemon, one thread each
        try:
            heartbeats = DatabaseHeartbeats(archive.sessions)
            names = sorted(REGISTRY)
            serve_daemons(
                archive.context, names, heartbeats, sleep_s=0.1, max_sleep_s=0.5, stop=stop
            )
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    server = threading.Thread(target=serve, name="dpps-serve")
    server.start()
    try:
        for path in files:  # ACADA closes the files one after the other
            trigger(path)
        deadline = time.monotonic() + 300
        state = _state(archive)
        while time.monotonic() < deadline and not failures:
            state = _state(archive)
            with archive.sessions() as session:
                seen_daemons |= set(session.scalars(select(HeartbeatRow.daemon)))
            if (
                state["files"] == FILES
                and state["onsite"] == 0
                and state["offsite_disk"] == FILES
                and state["offsite_tape"] == FILES
                and state["rules"] > 0
                and state["rules_ok"] == state["rules"]
            ):
                break
            time.sleep(0.5)
    finally:
        stop.set()
        server.join(timeout=120)
    assert not server.is_alive(), "dpps serve did not stop within 120 s"
    assert not failures, failures
    assert state == {  # on failure, say which rules and transfers did not finish
        "files": FILES,
        "onsite": 0,
        "offsite_disk": FILES,
        "offsite_tape": FILES,
        "rules": state["rules"],
        "rules_ok": state["rules"],
    }, (state, _diagnose(archive))
    assert {"ingest", "evaluator", "transfer", "reaper", "auditor", "stager"} <= seen_daemons

    # Every file: two off-site copies at two different data centers, one on tape; its
    # on-site copy deleted (bytes gone from the landing area), with the events to prove it.
    with archive.sessions() as session:
        rows = session.execute(
            select(DIDRow.name, RSERow.site, RSERow.kind, RSERow.onsite)
            .join(ReplicaRow, ReplicaRow.did_id == DIDRow.id)
            .join(RSERow, RSERow.id == ReplicaRow.rse_id)
            .where(DIDRow.did_type == "FILE")
        ).all()
        deleted_onsite = session.scalar(
            select(func.count(func.distinct(EventRow.did_id))).where(
                EventRow.action == "replica.delete",
                EventRow.rse_id == archive.rse_id("CTAO-N"),
            )
        )
        live = session.scalar(
            select(func.count())
            .select_from(DIDRow)
            .where(DIDRow.did_type == "FILE", DIDRow.deleted_at.is_(None))
        )
    copies: dict[str, list[tuple[str, str, bool]]] = {}
    for name, site, kind, onsite in rows:
        copies.setdefault(name, []).append((site, kind, onsite))
    assert set(copies) == lfns
    for name, where in copies.items():
        assert len(where) == 2, (name, where)
        assert not any(onsite for _s, _k, onsite in where)
        assert len({site for site, _k, _o in where}) == 2
        assert sorted(kind for _s, kind, _o in where) == ["disk", "tape"]
    assert deleted_onsite == FILES
    assert live == FILES  # deleting the on-site copy never deletes the file
    assert not [p for p in files if p.exists()]
    health = archive.preservation.health()
    assert health.lost == 0
    assert health.under_replicated == 0
    assert health.stuck_rules == []
    # ... and every copy reads back right.
    report = archive.preservation.audit()
    assert report.examined == 2 * FILES
    assert report.good == 2 * FILES
