"""Workspaces, files and daemon passes for the replication tests (rules, evaluator, transfers)."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from dpps.bdms.archive import Archive
from dpps.bdms.replication import evaluator
from dpps.bdms.transfer import daemon as transfers
from dpps.catalog.models import (
    DIDRow,
    EventRow,
    ReplicaRow,
    RSERow,
    RuleLockRow,
    RuleRow,
    TransferRow,
)
from dpps.core.config import load_config
from dpps.core.daemon import DaemonContext
from dpps.storage.rse import StorageElement

#: Daemon settings that make retries and re-evaluations immediate, so tests need no waiting.
FAST: dict[str, Any] = {
    "transfers": {"threads": 4, "backoff_base_s": 0.0, "source_wait_s": 0.0, "lease_s": 60.0},
    "rules": {"stuck_retry_s": 0.0},
}


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def tuned(archive: Archive, overrides: Mapping[str, Any] = FAST) -> Archive:
    """Patch the workspace's dpps.yaml (nested dicts) and return an Archive on the new
    configuration sharing the catalog engine (subprocess daemons read the same file)."""
    path = archive.config.workspace / "dpps.yaml"
    data = yaml.safe_load(path.read_text())
    merge(data, overrides)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    view = Archive(load_config(archive.config.workspace, environ={}), engine=archive.engine)
    view.prepare_catalog()
    for name in view.config.rses:
        rse = StorageElement.from_config(name, view.config)
        rse.fs.makedirs(rse.root, exist_ok=True)
    return view


def random_files(directory: Path, count: int, size: int = 20_000, seed: int = 0) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        path = directory / f"f_{seed}_{i:04d}.dat"
        path.write_bytes(rng.randbytes(size + i))
        paths.append(path)
    return paths


def ingest_dataset(
    archive: Archive,
    directory: Path,
    count: int,
    *,
    size: int = 20_000,
    dataset: str = "/ctao/dl0/run1",
    rse: str = "CTAO-N",
    seed: int = 0,
) -> list[str]:
    """Ingest ``count`` random files into ``dataset`` on ``rse``; returns their DIDs."""
    paths = random_files(directory, count, size, seed)
    report = archive.ingest(paths, rse, lfn_prefix=dataset, dataset=dataset)
    assert not report.failed, report.failed
    return [r.did or "" for r in report.results]


def evaluate(archive: Archive) -> int:
    return evaluator.Evaluator(archive.context).run_once(DaemonContext("evaluator"))


def transfer(archive: Archive) -> int:
    with transfers.TransferDaemon(archive.context) as worker:  # its pool closed after the pass
        return worker.run_once(DaemonContext("transfer"))


def drive(archive: Archive, rounds: int = 10) -> None:
    """Evaluate and transfer until nothing is due or in flight (or ``rounds`` ran out)."""
    for _ in range(rounds):
        evaluated = evaluate(archive)
        moved = transfer(archive)
        if not evaluated and not moved and not open_transfers(archive):
            return


def open_transfers(archive: Archive) -> int:
    with archive.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(TransferRow)
                .where(TransferRow.state.in_(("QUEUED", "ACTIVE")))
            )
            or 0
        )


def rule_row(archive: Archive, rule_id: int) -> RuleRow:
    with archive.sessions() as session:
        row = session.get(RuleRow, rule_id)
        assert row is not None
        return row


def replicas(archive: Archive, state: str | None = "AVAILABLE") -> dict[str, set[str]]:
    """DID name -> RSE names holding a replica (in ``state``, or any state)."""
    stmt = (
        select(DIDRow.name, RSERow.name)
        .join(ReplicaRow, ReplicaRow.did_id == DIDRow.id)
        .join(RSERow, RSERow.id == ReplicaRow.rse_id)
    )
    if state is not None:
        stmt = stmt.where(ReplicaRow.state == state)
    out: dict[str, set[str]] = {}
    with archive.sessions() as session:
        for name, rse in session.execute(stmt):
            out.setdefault(name, set()).add(rse)
    return out


def locks(archive: Archive, rule_id: int) -> dict[str, int]:
    with archive.sessions() as session:
        return {
            state: int(n)
            for state, n in session.execute(
                select(RuleLockRow.state, func.count())
                .where(RuleLockRow.rule_id == rule_id)
                .group_by(RuleLockRow.state)
            )
        }


def event_count(archive: Archive, action: str) -> int:
    with archive.sessions() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(EventRow).where(EventRow.action == action)
            )
            or 0
        )


def verify_on_disk(archive: Archive) -> int:
    """Re-read every AVAILABLE replica and compare size and checksums with the catalog;
    returns how many were checked. Nothing AVAILABLE may differ from its catalog entry."""
    with archive.sessions() as session:
        rows = session.execute(
            select(ReplicaRow.path, RSERow.name, DIDRow.bytes, DIDRow.adler32, DIDRow.blake3)
            .join(RSERow, RSERow.id == ReplicaRow.rse_id)
            .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
            .where(ReplicaRow.state == "AVAILABLE")
        ).all()
    for path, rse, size, adler32, blake3 in rows:
        got_size, digests = archive.storage(rse).checksum(path, ["adler32", "blake3"])
        assert (got_size, digests["adler32"], digests["blake3"]) == (size, adler32, blake3), (
            rse,
            path,
        )
    return len(rows)


def leftovers(archive: Archive) -> list[str]:
    """Temporary ``.part-`` files anywhere under the workspace's RSEs."""
    root = archive.config.workspace / "rse"
    return sorted(str(p) for p in root.rglob(".*.part-*")) if root.exists() else []


def file_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def environ(workspace: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``dpps`` subprocess working on ``workspace``."""
    env = dict(os.environ)
    env["DPPS_WORKSPACE"] = str(workspace)
    env.update(extra)
    return env
