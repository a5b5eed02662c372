"""Locate and retrieve files by identifier (UC-110-1.3.1).

The best replica is an AVAILABLE one on disk before tape, then the one with the lowest
estimated time (latency + size / bandwidth + staging delay, from the RSE configuration). What
is written is verified against the catalog's checksums before it appears under its final name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Select, select
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.availability import ranked, replica_info
from dpps.bdms.resolve import REF_COLUMNS, ref_from
from dpps.bdms.staging import client as nearline
from dpps.bdms.states import replicas as replica_states
from dpps.bdms.types import BulkReport, FileResult, Location
from dpps.catalog import dids as did_repo
from dpps.catalog import rses as rse_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, ReplicaRow, RSERow
from dpps.catalog.replicas import COPY_COLUMNS, copy_from, replicas_of
from dpps.core.config import Config
from dpps.core.errors import (
    Conflict,
    DppsError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    Unavailable,
)
from dpps.core.identifiers import DID
from dpps.core.states import DIDType, RSEKind
from dpps.storage.checksums import checksum_file, compare
from dpps.storage.rse import StorageElement

#: Where ``located``'s rows hold the DID's type (after ``REF_COLUMNS``, before the copy).
_TYPE = len(REF_COLUMNS)


def label_of(scope: str, name: str, version: int, is_latest: bool) -> str:
    """How a DID is shown: ``scope:name``, with ``@vN`` when it is not the latest version."""
    return f"{scope}:{name}" + ("" if is_latest else f"@v{version}")


def did_label(row: DIDRow) -> str:
    return label_of(row.scope, row.name, row.version, row.is_latest)


def _located(*, latest: bool) -> Select[*tuple[Any, ...]]:
    """The file a DID names (``dids.named``) and each of its replicas with its RSE, one row per
    replica (one row with no replica for a file that has none): ``locate`` in one statement."""
    return (
        select(*REF_COLUMNS, DIDRow.did_type, *COPY_COLUMNS)
        .select_from(DIDRow)
        .outerjoin(ReplicaRow, ReplicaRow.did_id == DIDRow.id)
        .outerjoin(RSERow, RSERow.id == ReplicaRow.rse_id)
        .where(did_repo.named(latest=latest))
        .order_by(RSERow.name)
    )


#: Built once (a look-up is a few hundred microseconds: building the statement was a third).
LOCATED = {latest: _located(latest=latest) for latest in (True, False)}


def locate(conn: Connection, config: Config, did: DID) -> Location:
    """Where the file can be read now, best first. One statement, Core rows: the archive
    runs it outside a transaction on PostgreSQL (one statement is consistent by itself)."""
    rows = conn.execute(LOCATED[did.version is None], did_repo.named_params(did)).all()
    if not rows or rows[0][_TYPE] != DIDType.FILE.value:  # a dataset's name: not a file
        raise NotFound(f"no such DID {did}")
    ref = ref_from(rows[0])
    pairs = [pair for row in rows if (pair := copy_from(row[_TYPE + 1 :])) is not None]
    best = ranked(config, pairs)
    seconds = best[0].estimated_seconds if best else None
    if best and best[0].kind == RSEKind.TAPE.value:  # an open stage request shortens the wait
        with Session(bind=conn) as session:
            seconds = nearline.estimate(session, config, ref.id, best[0])
    return Location(
        did=ref.label,
        available=bool(best),
        bytes=ref.bytes,
        replicas=[replica_info(config, rep, rse) for rep, rse in pairs],
        best_rse=best[0].rse if best else None,
        estimated_seconds=seconds,
    )


def _target(dest: Path, name: str, many: bool) -> Path:
    if many or dest.is_dir() or str(dest).endswith("/"):
        return dest / Path(name).name
    return dest


def get(
    factory: sessionmaker[Session],
    config: Config,
    dids: Sequence[DID],
    dest: Path,
    *,
    account: str,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    wait: bool = True,
    timeout_s: float | None = None,
    status: Callable[[str], None] | None = None,
) -> BulkReport:
    """Retrieve files; tape-only ones are staged together, then read from the buffer (or,
    without ``wait``, come back with status ``staging`` once their request is made)."""
    started = time.perf_counter()
    dids, collections = _expand(factory, dids)
    many = len(dids) > 1 or collections
    if many:
        dest.mkdir(parents=True, exist_ok=True)
    targets: dict[Path, str] = {}
    results: list[FileResult] = []
    pending: dict[int, nearline.Pending] = {}
    for did in dids:
        try:
            results.append(_get_one(factory, config, did, dest, many, targets, account, overwrite))
        except nearline.NeedsStaging as staging:
            pending[len(results)] = staging.pending
            results.append(FileResult(source=str(did), did=str(did), status="staging"))
            continue
        except DppsError as exc:
            results.append(
                FileResult(
                    source=str(did),
                    did=str(did),
                    status="failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    exit_code=exc.exit_code,
                )
            )
        if progress is not None:
            progress(1)
    if pending:
        staged = nearline.fetch(
            factory,
            config,
            list(pending.values()),
            account=account,
            overwrite=overwrite,
            wait=wait,
            timeout_s=timeout_s,
            status=status,
            progress=progress,
        )
        for index, result in zip(pending, staged, strict=True):
            results[index] = result
    return BulkReport(results, time.perf_counter() - started)


def _expand(factory: sessionmaker[Session], dids: Sequence[DID]) -> tuple[list[DID], bool]:
    """The files to retrieve: a dataset or container stands for every file below it (each
    by its exact version), a file for itself; an unknown DID is kept, to fail on its own.
    Also whether any collection was named: then the destination is a directory."""
    from dpps.bdms.datasets import content  # imports this module

    files: list[DID] = []
    collections = False
    with factory() as session:
        for did in dids:
            try:
                rows = content(session, did, recursive=True)
            except DppsError:
                files.append(did)
                continue
            if (
                len(rows) == 1
                and rows[0].did_type == DIDType.FILE.value
                and rows[0].name == did.name
            ):
                files.append(did)
                continue
            collections = True
            files.extend(DID(r.scope, r.name, None if r.is_latest else r.version) for r in rows)
    return files, collections


def identical(path: Path, size: int | None, expected: Mapping[str, str]) -> bool:
    """Whether the local file at ``path`` already holds these bytes: same size and every
    catalog checksum recomputed from it matches (a rerun of an interrupted ``get`` skips
    what it wrote before, and never trusts a name alone)."""
    wanted = {k: v for k, v in expected.items() if v}
    if not path.is_file() or not wanted or (size is not None and path.stat().st_size != size):
        return False
    _size, actual = checksum_file(path, tuple(wanted))
    return not compare(wanted, actual)


def _get_one(
    factory: sessionmaker[Session],
    config: Config,
    did: DID,
    dest: Path,
    many: bool,
    targets: dict[Path, str],
    account: str,
    overwrite: bool,
) -> FileResult:
    with factory() as session:
        row = did_repo.get_did(session, did, DIDType.FILE)
        candidates = ranked(config, replicas_of(session, row.id))
        expected = {"adler32": row.adler32 or ""} | ({"blake3": row.blake3} if row.blake3 else {})
        label, did_id, size = did_label(row), row.id, row.bytes
    target = _target(dest, did.name, many)
    if target in targets:
        raise InvalidInput(f"{label} and {targets[target]} would both be written to {target}")
    targets[target] = label
    if target.exists() and not overwrite:
        if identical(target, size, expected):
            return FileResult(
                source=str(target), did=label, status="present", bytes=size, path=str(target)
            )
        raise Conflict(f"{target} exists with other content (use --overwrite to replace it)")
    if not candidates:
        raise Unavailable(f"{label} has no AVAILABLE replica")
    problems: list[str] = []
    disks = [c for c in candidates if c.kind != RSEKind.TAPE.value]  # tape needs staging
    damaged = 0
    for rep in disks:
        storage = StorageElement.from_config(rep.rse, config)
        try:
            storage.download(
                rep.path, target, tuple(expected), expected=expected, overwrite=overwrite
            )
        except IntegrityFailure as exc:
            _declare_bad(factory, did_id, label, rep.rse, account, str(exc))
            problems.append(f"{rep.rse}: {exc}")
            damaged += 1
            continue
        except DppsError as exc:
            problems.append(f"{rep.rse}: {exc}")
            continue
        return FileResult(
            source=f"{rep.rse}:{rep.path}",
            did=label,
            status="retrieved",
            bytes=size,
            rse=rep.rse,
            path=str(target),
        )
    if any(c.kind == RSEKind.TAPE.value for c in candidates):
        raise nearline.NeedsStaging(
            nearline.Pending(did_id, label, target, expected, size, problems)
        )
    if damaged == len(disks):  # every copy read was damaged: the file is lost (event recorded)
        raise IntegrityFailure(f"{label} is lost: every copy is damaged ({'; '.join(problems)})")
    raise Unavailable(f"{label}: no replica could be read ({'; '.join(problems)})")


def _declare_bad(
    factory: sessionmaker[Session],
    did_id: int,
    label: str,
    rse_name: str,
    account: str,
    reason: str,
) -> None:
    """A replica whose bytes do not match is BAD; its rules are made due, so the evaluator
    repairs it from a good copy (``states.replicas.declare_bad``, as for every finder)."""
    with transaction(factory) as session:
        rse = rse_repo.get_rse(session, rse_name)
        replica_states.declare_bad(
            session,
            [
                replica_states.Damaged(
                    did_id, rse.id, f"checksum mismatch on read: {reason}", rse=rse_name, did=label
                )
            ],
            account=account,
            lost_reason="no AVAILABLE replica left after a read found every copy damaged",
        )
