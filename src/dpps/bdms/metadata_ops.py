"""Metadata care after ingest: corrections by hand and re-extraction from the stored bytes.

Every change is an event holding the old and the new value, so the history of a product's
description is as preserved as its bytes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.availability import ranked
from dpps.bdms.metadata import INDEXED_KEYS, extract_metadata
from dpps.bdms.metadata_values import RESERVED_KEYS, parse_user_meta
from dpps.bdms.retrieve import did_label
from dpps.bdms.types import FileResult, MetaChange, RefreshReport
from dpps.catalog import dids as did_repo
from dpps.catalog import events
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow
from dpps.catalog.query import select_dids
from dpps.catalog.replicas import replicas_of
from dpps.core.config import Config
from dpps.core.errors import DppsError, InvalidInput, Unavailable
from dpps.core.identifiers import DID
from dpps.storage.rse import StorageElement

#: The file's own fields: set by the archive from the bytes and the catalog, never by hand.
PROTECTED = RESERVED_KEYS


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def apply_changes(
    session: Session,
    row: DIDRow,
    columns: Mapping[str, Any],
    meta: Mapping[str, Any],
    *,
    account: str,
    action: str,
    reason: str | None,
    replace_meta: bool = False,
) -> list[MetaChange]:
    """Write changed values to ``row`` and one event listing old and new values."""
    changes: list[MetaChange] = []
    label = did_label(row)
    for key, new in columns.items():
        old = getattr(row, key)
        if old != new:
            setattr(row, key, new)
            changes.append(MetaChange(label, key, _jsonable(old), _jsonable(new)))
    current = dict(row.meta or {})
    updated = dict(meta) if replace_meta else {**current, **meta}
    for key in sorted(set(current) | set(updated)):
        if current.get(key) != updated.get(key):
            changes.append(MetaChange(label, key, current.get(key), updated.get(key)))
    if updated != current:
        row.meta = updated
    if changes:
        events.record(
            session,
            account=account,
            action=action,
            did_id=row.id,
            reason=reason,
            details={"changes": [{"key": c.key, "old": c.old, "new": c.new} for c in changes]},
        )
    return changes


def set_meta(
    factory: sessionmaker[Session],
    did: DID,
    pairs: Mapping[str, str],
    *,
    account: str,
    reason: str | None = None,
) -> list[MetaChange]:
    if not pairs:
        raise InvalidInput("nothing to set: give key=value pairs")
    bad = sorted(set(pairs) & PROTECTED)
    if bad:
        raise InvalidInput(f"{', '.join(bad)} cannot be changed: they describe the bytes")
    columns, meta = parse_user_meta(pairs)
    with transaction(factory) as session:
        row = did_repo.get_did(session, did)
        return apply_changes(
            session, row, columns, meta, account=account, action="meta.set", reason=reason
        )


def refresh_meta(
    factory: sessionmaker[Session],
    config: Config,
    filter_text: str,
    *,
    account: str,
    progress: Callable[[int], None] | None = None,
    dry_run: bool = False,
) -> RefreshReport:
    """Re-extract metadata from the stored bytes of every matching file.

    Values given by people (``--meta`` at ingest, ``meta.set`` later) are kept: re-extraction
    only replaces what an extractor produced, so an improved extractor never undoes an
    operator's correction.
    """
    started = time.perf_counter()
    with factory() as session:
        ids = list(
            session.scalars(select_dids(filter_text, limit=None).with_only_columns(DIDRow.id))
        )
    changes: list[MetaChange] = []
    failed: list[FileResult] = []
    changed_files = 0
    for did_id in ids:
        try:
            found = _refresh_one(factory, config, did_id, account=account, dry_run=dry_run)
        except DppsError as exc:
            failed.append(
                FileResult(
                    source=str(did_id),
                    did=None,
                    status="failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    exit_code=exc.exit_code,
                )
            )
            found = []
        if found:
            changed_files += 1
            changes.extend(found)
        if progress is not None:
            progress(1)
    return RefreshReport(len(ids), changed_files, failed, changes, time.perf_counter() - started)


def _manual_keys(session: Session, did_id: int) -> set[str]:
    keys: set[str] = set()
    for ev in events.events_for(session, did_id, limit=10_000):
        if ev.action == "meta.set":
            keys.update(c["key"] for c in ev.details.get("changes", []))
        elif ev.action == "file.register":
            keys.update(ev.details.get("user_keys", []))
    return keys


def _refresh_one(
    factory: sessionmaker[Session], config: Config, did_id: int, *, account: str, dry_run: bool
) -> list[MetaChange]:
    with factory() as session:
        row = session.get(DIDRow, did_id)
        assert row is not None
        label = did_label(row)
        candidates = ranked(config, replicas_of(session, did_id))
    if not candidates:
        raise Unavailable(f"{label} has no AVAILABLE replica to read metadata from")
    best = candidates[0]
    storage = StorageElement.from_config(best.rse, config)
    if storage.is_local:
        extracted = extract_metadata(Path(storage.resolve(best.path)))
    else:
        with tempfile.TemporaryDirectory(prefix="dpps-refresh-") as tmp:
            copy = Path(tmp) / Path(row.name).name
            storage.download(
                best.path, copy, ("adler32",), expected={"adler32": row.adler32 or ""}
            )
            extracted = extract_metadata(copy)
    with transaction(factory, commit=not dry_run) as session:
        row = session.get(DIDRow, did_id)
        assert row is not None
        keep = _manual_keys(session, did_id)
        columns = {
            k: v for k, v in extracted.columns.items() if k in INDEXED_KEYS and k not in keep
        }
        meta = {k: v for k, v in (row.meta or {}).items() if k in keep}
        meta.update({k: v for k, v in extracted.meta.items() if k not in keep})
        meta["format"] = extracted.format
        if extracted.warnings:
            meta["extraction_warnings"] = list(extracted.warnings)
        found = apply_changes(
            session,
            row,
            columns,
            meta,
            account=account,
            action="meta.refresh",
            reason="re-extracted from stored bytes",
            replace_meta=True,
        )
        return found
