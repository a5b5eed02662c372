"""The catalog side of the ingestion queue: one batch of inspected files in one transaction.

``register_batch`` is what a batch changes in the catalog - the dataset of each file's
directory (created on first use with its policy's rules, attached up the tree), the files,
their replicas in place, their events, the conflicts and quarantines to record. The queue
calls it through ``CatalogIngestLedger`` when it holds the catalog, and the API server calls
it for a telescope site's queue that reaches the catalog through ``/api/v1/agents``.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dpps.bdms import registration
from dpps.bdms.ingestion.records import IngestBatch, IngestResult
from dpps.bdms.metadata import convert_indexed
from dpps.catalog import dids as did_repo
from dpps.catalog import events
from dpps.catalog.context import CatalogContext
from dpps.catalog.engine import Retry, write
from dpps.catalog.models import EventRow
from dpps.catalog.rses import get_rse
from dpps.core.config import Config
from dpps.core.errors import Conflict, InvalidInput, NotFound
from dpps.core.identifiers import DID, validate_lfn

#: The checksums a file row keeps, as lower-case hex of their exact length.
_CHECKSUM = {"adler32": re.compile(r"[0-9a-f]{8}"), "blake3": re.compile(r"[0-9a-f]{64}")}


class CatalogIngestLedger:
    """``IngestLedger`` on the catalog itself; writes are redone as ``retry`` says (transient
    failures with backoff, a container two queues made at once)."""

    def __init__(self, catalog: CatalogContext, account: str, retry: Retry) -> None:
        self.catalog = catalog
        self.account = account
        self.retry = retry

    def rse_id(self, rse: str) -> int:
        with self.catalog.sessions() as session:
            return get_rse(session, rse).id

    def present(
        self, scope: str, names: Sequence[str], stop: threading.Event | None = None
    ) -> set[str]:
        return self._write(lambda s: set(did_repo.latest_by_name(s, scope, names)), stop)

    def register(
        self, batch: IngestBatch, stop: threading.Event | None = None
    ) -> list[IngestResult]:
        config = self.catalog.config
        return self._write(lambda s: register_batch(s, config, batch, account=self.account), stop)

    def _write[T](self, work: Callable[[Session], T], stop: threading.Event | None) -> T:
        return write(self.catalog.sessions, work, retry=self.retry, stop=stop)


def register_batch(
    session: Session, config: Config, batch: IngestBatch, *, account: str
) -> list[IngestResult]:
    """Everything one batch changes in the catalog, in the caller's transaction."""
    if batch.policy not in config.policies:
        raise NotFound(f"unknown replication policy {batch.policy!r} on the catalog's side")
    rse_id = get_rse(session, batch.rse).id
    files = [(rel, _new_file(fields, rse_id, batch)) for rel, fields in batch.files]
    cache: dict[str, int] = {}
    bad: dict[str, str] = {}
    for directory in sorted({posixpath.dirname(f.name) for _, f in files}):
        try:
            dataset_id = registration.ensure_dataset(
                session,
                DID(batch.scope, directory),
                account=account,
                policy=batch.policy,
                config=config,
                tree_root=batch.lfn_prefix,
                cache=cache,
            )
            registration.ensure_open(session, dataset_id)
        except Conflict as exc:
            bad[directory] = str(exc)
    results = [
        IngestResult(rel, f.name, "error", bad[d], "Conflict")
        for rel, f in files
        if (d := posixpath.dirname(f.name)) in bad
    ]
    good = [(rel, f) for rel, f in files if posixpath.dirname(f.name) not in bad]
    outcomes = registration.register(
        session,
        [f for _, f in good],
        account=account,
        dataset=[cache[posixpath.dirname(f.name)] for _, f in good],
    )
    report = set(batch.report_conflicts)
    for (rel, new), outcome in zip(good, outcomes, strict=True):
        if outcome.status == "conflict":
            if rel in report:
                _conflict_event(session, account, rse_id, rel, new, outcome)
            results.append(IngestResult(rel, new.name, "conflict", outcome.message))
        else:
            results.append(IngestResult(rel, new.name, outcome.status, bytes=new.bytes))
    for record, recovered in batch.quarantined:
        if not (recovered and _recorded(session, record)):
            _quarantine_event(session, account, rse_id, record)
    return results


def _new_file(fields: Mapping[str, Any], rse_id: int, batch: IngestBatch) -> did_repo.NewFile:
    """A NewFile from its fields, on the RSE the catalog knows by the batch's name (a remote
    queue's idea of the id is not trusted), named under the batch's prefix in its scope and
    stored at a path inside the RSE's root: anything else is refused before it is written.
    Indexed metadata arrives as JSON (dates as ISO text) and gets its column's type back."""
    name = validate_lfn(str(fields["name"]))
    if not name.startswith(batch.lfn_prefix.rstrip("/") + "/"):
        raise InvalidInput(f"{name}: not under the queue's prefix {batch.lfn_prefix}")
    if str(fields["scope"]) != batch.scope:
        raise InvalidInput(f"{name}: scope {fields['scope']!r} is not the batch's {batch.scope}")
    path = str(fields["path"])
    if path.startswith("/") or posixpath.normpath(path) != path or path.startswith(".."):
        raise InvalidInput(f"{name}: replica path {path!r} leaves the RSE's root")
    size = int(fields["bytes"])
    if not 0 <= size < 2**63:
        raise InvalidInput(f"{name}: size {size} is out of range")
    checksums = {str(k): str(v) for k, v in dict(fields["checksums"]).items()}
    for algorithm, value in checksums.items():
        if _CHECKSUM.get(algorithm) is None or not _CHECKSUM[algorithm].fullmatch(value):
            raise InvalidInput(f"{name}: {algorithm} {value!r} is not a checksum dpps keeps")
    return did_repo.NewFile(
        scope=batch.scope,
        name=name,
        bytes=size,
        checksums=checksums,
        rse_id=rse_id,
        path=path,
        columns={k: convert_indexed(k, v) for k, v in (fields.get("columns") or {}).items()},
        meta=dict(fields.get("meta") or {}),
        new_version=bool(fields.get("new_version", False)),
        user_keys=tuple(fields.get("user_keys") or ()),
    )


def _conflict_event(
    session: Session,
    account: str,
    rse_id: int,
    rel: str,
    new: did_repo.NewFile,
    outcome: did_repo.Outcome,
) -> None:
    events.record(
        session,
        account=account,
        action="acada.conflict",
        did_id=outcome.did_id,
        rse_id=rse_id,
        reason=outcome.message,
        details={"path": rel, "bytes": new.bytes, **new.checksums},
    )


def _quarantine_event(
    session: Session, account: str, rse_id: int, record: Mapping[str, Any]
) -> None:
    events.record(
        session,
        account=account,
        action="acada.quarantine",
        rse_id=rse_id,
        reason=str(record["reason"]),
        details={
            "id": record["id"],
            "path": record["rel"],
            "lfn": record["lfn"],
            "error_type": record["error_type"],
            "quarantine": str(record["dest"]),
        },
    )


def _recorded(session: Session, record: Mapping[str, Any]) -> bool:
    since = dt.datetime.fromtimestamp(float(record["at"]) - 60.0, dt.UTC).replace(tzinfo=None)
    rows = session.scalars(
        select(EventRow.details).where(EventRow.action == "acada.quarantine", EventRow.ts >= since)
    )
    return any((d or {}).get("id") == record["id"] for d in rows)
