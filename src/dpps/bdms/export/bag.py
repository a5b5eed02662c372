"""Archival information packages (UC-110-1.11): a DID exported as a BagIt bag.

A bag is the OAIS package another archive (or the same one in thirty years) can take in without
dpps: the payload under ``data/`` at each file's deterministic path, and tag files under
``metadata/`` for the preservation description - ``dids.json`` (identity, metadata, replicas),
``fixity.json`` (the archive's own checksums: adler32, BLAKE3), ``provenance.json`` (what the
catalog knows of each file's origin) and ``events.json`` (the full event history). The bag's
manifests (SHA-256 and SHA-512) cover the payload, its tag manifests cover every tag file, so
``bagit.Bag(path).validate()`` detects any later change.

Files are retrieved like ``dpps get`` does (checksums verified, tape staged, all at once), into
a hidden directory beside the destination, which is renamed into place only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import bagit
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms import retrieve
from dpps.bdms.availability import replica_info
from dpps.bdms.records import ExportReport
from dpps.bdms.types import FileResult, to_jsonable
from dpps.catalog import attachments as attachment_repo
from dpps.catalog import dids as did_repo
from dpps.catalog import events
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, EventRow, RSERow
from dpps.catalog.replicas import replicas_of
from dpps.catalog.replication import expand_files
from dpps.core.config import Config
from dpps.core.errors import (
    Conflict,
    DppsError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from dpps.core.identifiers import DID
from dpps.core.states import DIDType
from dpps.core.version import __version__
from dpps.storage.rse import StorageElement

#: Manifest algorithms: the BagIt defaults, readable by every BagIt tool.
BAG_ALGORITHMS = ("sha256", "sha512")
#: Event actions that tell where a file came from.
PROVENANCE_ACTIONS = ("file.register", "meta.set", "meta.refresh", "dataset.create")


def _label(row: DIDRow) -> str:
    return retrieve.did_label(row)


def _describe(session: Session, config: Config, row: DIDRow) -> dict[str, Any]:
    record: dict[str, Any] = {
        "did": _label(row),
        "scope": row.scope,
        "name": row.name,
        "version": row.version,
        "type": row.did_type,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "columns": {
            key: getattr(row, key)
            for key in (
                "data_level",
                "category",
                "obs_id",
                "tel_id",
                "observing_night",
                "time_start",
                "time_end",
                "product_type",
            )
        },
        "meta": dict(row.meta or {}),
        "parents": [_label(p) for p in attachment_repo.parents_of(session, row.id)],
    }
    if row.did_type == DIDType.FILE:
        record["bytes"] = row.bytes
        record["payload"] = _payload_path(row)
        record["replicas"] = [
            to_jsonable(replica_info(config, rep, rse))
            for rep, rse in replicas_of(session, row.id)
        ]
    else:
        record["children"] = [_label(c) for c in attachment_repo.children_of(session, row.id)]
    return record


def _payload_path(row: DIDRow) -> str:
    return "data/" + StorageElement.path_for(row.scope, row.name, row.version)


def _events(session: Session, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    rse_names = {r.id: r.name for r in session.scalars(select(RSERow))}
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        rows = session.scalars(
            select(EventRow)
            .where(EventRow.did_id.in_(ids[start : start + 500]))
            .order_by(EventRow.ts, EventRow.id)
        )
        for e in rows:
            out[e.did_id or 0].append(
                {
                    "ts": e.ts,
                    "account": e.account,
                    "action": e.action,
                    "rse": rse_names.get(e.rse_id or -1),
                    "reason": e.reason,
                    "details": dict(e.details or {}),
                }
            )
    return out


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n", "utf-8")


def export_bag(
    factory: sessionmaker[Session],
    config: Config,
    did: DID,
    dest: Path,
    *,
    account: str,
    progress: Callable[[int], None] | None = None,
    wait: bool = True,
    timeout_s: float | None = None,
) -> ExportReport:
    """Write ``did`` (a file, or every file under a dataset or container) as a bag at ``dest``."""
    started = time.monotonic()
    dest = dest.expanduser().absolute()
    if os.path.lexists(dest):
        raise Conflict(f"{dest} exists; an export never writes into an existing path")
    if not dest.parent.is_dir():
        raise InvalidInput(f"{dest.parent} is not a directory")
    with factory() as session:
        root = did_repo.get_did(session, did)
        if root.deleted_at is not None:
            raise Unavailable(f"{_label(root)} was deleted on {root.deleted_at:%Y-%m-%d}")
        file_ids = [f for f, _size in expand_files(session, root)]
        if not file_ids:
            raise InvalidInput(f"{_label(root)} holds no files to export")
        files = list(session.scalars(select(DIDRow).where(DIDRow.id.in_(file_ids))))
        files.sort(key=lambda r: (r.name, r.version))
        collections = [] if root.did_type == DIDType.FILE else [root]
        described = [_describe(session, config, r) for r in [*collections, *files]]
        history = _events(session, [r.id for r in [*collections, *files]])
        labels = {r.id: _label(r) for r in [*collections, *files]}
    work = dest.parent / f".{dest.name}.part-{uuid.uuid4().hex}"
    try:
        work.mkdir()
        total = _fetch(factory, config, files, work, account, progress, wait, timeout_s)
        bag = bagit.make_bag(
            str(work),
            {
                "Source-Organization": "CTAO (dpps archive)",
                "External-Identifier": _label(root),
                "External-Description": f"{root.did_type.lower()} {_label(root)}: "
                f"{len(files)} file(s) exported from the dpps archive",
                "Bag-Software-Agent": f"dpps {__version__} with bagit {bagit.VERSION}",
                "Bag-Group-Identifier": _label(root),
            },
            checksums=list(BAG_ALGORITHMS),
        )
        _write_tag_files(work, files, described, history, labels, account)
        bag.save()  # tag manifests now cover the tag files too
        bagit.Bag(str(work)).validate(fast=True)
        os.rename(work, dest)
    except bagit.BagError as exc:
        raise DppsError(f"could not write the bag: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with transaction(factory) as session:
        events.record(
            session,
            account=account,
            action="did.export",
            did_id=root.id,
            details={"dest": str(dest), "files": len(files), "bytes": total, "format": "BagIt"},
        )
    return ExportReport(_label(root), str(dest), len(files), total, time.monotonic() - started)


def _fetch(
    factory: sessionmaker[Session],
    config: Config,
    files: Sequence[DIDRow],
    work: Path,
    account: str,
    progress: Callable[[int], None] | None,
    wait: bool,
    timeout_s: float | None,
) -> int:
    """Retrieve every file to its payload path: disk copies first, all tape requests made
    before waiting on any, so staging delays overlap."""
    total = 0
    waiting: list[tuple[DID, Path]] = []
    for row in files:
        target = work / StorageElement.path_for(row.scope, row.name, row.version)
        did = DID(row.scope, row.name, row.version)
        report = retrieve.get(factory, config, [did], target, account=account, wait=False)
        [result] = report.results
        if result.status == "staging":
            waiting.append((did, target))
            continue
        _check(result, did)
        total += result.bytes or 0
        if progress is not None:
            progress(1)
    for did, target in waiting:
        report = retrieve.get(
            factory, config, [did], target, account=account, wait=wait, timeout_s=timeout_s
        )
        [result] = report.results
        _check(result, did)
        total += result.bytes or 0
        if progress is not None:
            progress(1)
    return total


def _check(result: FileResult, did: DID) -> None:
    if result.status == "retrieved":
        return
    if result.status == "staging":
        raise Unavailable(f"{did}: staging from tape requested; export again once it is staged")
    error_type = _ERRORS.get(result.error_type or "", DppsError)
    raise error_type(f"cannot export {did}: {result.error}")


_ERRORS: dict[str, type[DppsError]] = {
    cls.__name__: cls
    for cls in (InvalidInput, NotFound, Conflict, IntegrityFailure, PermissionDenied, Unavailable)
}


def _write_tag_files(
    work: Path,
    files: Sequence[DIDRow],
    described: list[dict[str, Any]],
    history: dict[int, list[dict[str, Any]]],
    labels: dict[int, str],
    account: str,
) -> None:
    meta = work / "metadata"
    _write_json(meta / "dids.json", described)
    _write_json(
        meta / "fixity.json",
        {
            _payload_path(r): {
                "did": _label(r),
                "bytes": r.bytes,
                "adler32": r.adler32,
                "blake3": r.blake3,
                **dict(r.checksums or {}),
            }
            for r in files
        },
    )
    _write_json(
        meta / "provenance.json",
        {
            "package": {
                "created_by": account,
                "software": f"dpps {__version__}",
                "standard": "BagIt 1.0 (RFC 8493)",
            },
            "note": "What the catalog holds about each file's origin: its registration (where "
            "and when it was ingested, with which checksums), metadata changes, and any "
            "provenance recorded in its metadata. Processing provenance (inputs, software, "
            "parameters) is filled in by the workload manager for the products it makes.",
            "files": {
                labels[r.id]: {
                    "recorded": (r.meta or {}).get("provenance"),
                    "events": [
                        e for e in history.get(r.id, []) if e["action"] in PROVENANCE_ACTIONS
                    ],
                }
                for r in files
            },
        },
    )
    _write_json(meta / "events.json", {labels[i]: evs for i, evs in history.items()})
