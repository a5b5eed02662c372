"""Workspaces and replicas for the preservation tests (staging, reaper, auditor, export)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import insert, select, update

from dpps.bdms.archive import Archive
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, EventRow, ReplicaRow, RSERow
from dpps.core.clock import utcnow
from dpps.core.identifiers import parse_did
from dpps.storage.rse import StorageElement
from tests.bdms.helpers import make_fits


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def open_workspace(
    tmp_path: Path, catalog_url: str, overrides: Mapping[str, Any] | None = None
) -> Archive:
    """A reference workspace whose dpps.yaml is patched with ``overrides`` (nested dicts).

    Tape staging takes 0.2 s instead of 2 s and transfers waiting for a source or a retry
    look again after 0.2 s instead of a minute, so tests that wait for them stay quick.
    """
    base = {
        "rses": {"PIC-TAPE": {"staging_delay_s": 0.2}, "DESY-TAPE": {"staging_delay_s": 0.2}},
        "transfers": {"source_wait_s": 0.2, "backoff_base_s": 0.2, "threads": 4},
        "rules": {"stuck_retry_s": 0.5},
    }
    Archive.init(tmp_path / "ws", catalog_url=catalog_url).close()
    path = tmp_path / "ws" / "dpps.yaml"
    data = yaml.safe_load(path.read_text())
    _merge(data, base)
    _merge(data, overrides or {})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Archive.open(tmp_path / "ws")


def ingest_files(
    archive: Archive,
    src: Path,
    count: int,
    *,
    rse: str = "CTAO-N",
    prefix: str = "/ctao/dl0/run1",
    dataset: str | None = "/ctao/dl0/run1",
    seed: int = 0,
) -> list[str]:
    """Ingest ``count`` small FITS files; returns their DIDs (scope:name)."""
    paths = [
        make_fits(src, f"tel_{i:03d}.fits", obs_id=1, tel_id=i, seed=seed + i)
        for i in range(count)
    ]
    report = archive.ingest(paths, rse, lfn_prefix=prefix, dataset=dataset)
    assert not report.failed, report.failed
    return [r.did or "" for r in report.results]


def put_replica(archive: Archive, did: str, rse: str, *, source: str | None = None) -> None:
    """Copy a file to ``rse`` (verified, through the storage layer) and register the replica,
    as a finished transfer does."""
    parsed = parse_did(did, archive.config.default_scope)
    with archive.sessions() as session:
        row = session.scalars(
            select(DIDRow).where(DIDRow.scope == parsed.scope, DIDRow.name == parsed.name)
        ).one()
        reps = session.execute(
            select(ReplicaRow, RSERow.name)
            .join(RSERow, RSERow.id == ReplicaRow.rse_id)
            .where(ReplicaRow.did_id == row.id, ReplicaRow.state == "AVAILABLE")
        ).all()
    rep, src_name = next((r, n) for r, n in reps if source is None or n == source)
    expected = {"adler32": row.adler32 or "", "blake3": row.blake3 or ""}
    dst = archive.storage(rse)
    dst.copy_from(archive.storage(src_name), rep.path, rep.path, tuple(expected), expected)
    rse_id = archive.rse_id(rse)
    with transaction(archive.sessions) as session:
        session.execute(
            insert(ReplicaRow).values(
                did_id=row.id,
                rse_id=rse_id,
                state="AVAILABLE",
                path=rep.path,
                bytes=rep.bytes,
                lock_count=0,
                created_at=utcnow(),
                updated_at=utcnow(),
                last_verified_at=utcnow(),
            )
        )


def replica_rows(archive: Archive, did: str) -> dict[str, ReplicaRow]:
    """The file's replicas by RSE name."""
    parsed = parse_did(did, archive.config.default_scope)
    with archive.sessions() as session:
        rows = session.execute(
            select(ReplicaRow, RSERow.name)
            .join(RSERow, RSERow.id == ReplicaRow.rse_id)
            .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
            .where(DIDRow.scope == parsed.scope, DIDRow.name == parsed.name)
        ).all()
    return {name: rep for rep, name in rows}


def storage_file(archive: Archive, did: str, rse: str) -> Path:
    """The local path of a replica's bytes (the reference RSEs are directories)."""
    rep = replica_rows(archive, did)[rse]
    storage: StorageElement = archive.storage(rse)
    return Path(storage.resolve(rep.path))


def drop_tape_only(archive: Archive, did: str, keep: str = "PIC-TAPE") -> None:
    """Make ``keep`` the file's only replica (rows and bytes of the others removed)."""
    for rse, rep in replica_rows(archive, did).items():
        if rse == keep:
            continue
        archive.storage(rse).remove(rep.path)
        with transaction(archive.sessions) as session:
            session.execute(ReplicaRow.__table__.delete().where(ReplicaRow.id == rep.id))


def actions(archive: Archive, did: str | None = None) -> list[str]:
    """Event actions in order (of one file, or all)."""
    stmt = select(EventRow.action).order_by(EventRow.id)
    if did is not None:
        parsed = parse_did(did, archive.config.default_scope)
        stmt = stmt.join(DIDRow, DIDRow.id == EventRow.did_id).where(
            DIDRow.scope == parsed.scope, DIDRow.name == parsed.name
        )
    with archive.sessions() as session:
        return list(session.scalars(stmt))


def set_time(archive: Archive, model: Any, column: str, ago: dt.timedelta, **where: Any) -> None:
    """Set a timestamp column to ``ago`` before now (how tests let time pass, no sleeping)."""
    table = model.__table__
    stmt = update(model).values({column: utcnow() - ago})
    for key, value in where.items():
        stmt = stmt.where(table.c[key] == value)
    with transaction(archive.sessions) as session:
        session.execute(stmt)


def rule_states(archive: Archive) -> list[str]:
    from dpps.catalog.models import RuleRow

    with archive.sessions() as session:
        return list(session.scalars(select(RuleRow.state).order_by(RuleRow.id)))


def replicate(archive: Archive, *, deadline_s: float = 180.0) -> None:
    """Run the rule evaluator and the transfer daemon (part A's) until every rule is OK."""
    import time

    from dpps.bdms.replication import evaluator
    from dpps.bdms.transfer import daemon as transfers
    from dpps.core.daemon import DaemonContext

    ctx = DaemonContext(name="test")
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        evaluator.Evaluator(archive.context).run_once(ctx)
        with transfers.TransferDaemon(archive.context) as worker:
            worker.run_once(ctx)
        states = rule_states(archive)
        if states and all(s == "OK" for s in states):
            return
        time.sleep(0.05)
    raise AssertionError(f"rules not OK after {deadline_s} s: {rule_states(archive)}")
