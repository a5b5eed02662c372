"""Ingest: bring files into the archive's care (UC-110-1.1.3).

Each file is checked (FITS checksums, metadata extraction: ``registration.describe``), copied
into the RSE with a checksum computed during the copy and verified on the written bytes (or
registered in place when it already lies under the RSE root), then registered - file, replica,
dataset attachment and event - in one short transaction per chunk (``registration.register``,
the one registration path of every caller). The I/O runs in a thread pool; only the main thread
writes to the catalog, so SQLite's single writer is never contended by our own workers.

Nothing partial is left behind: a file that fails any step is not registered, and a copy made
for a file that then fails registration is removed again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms import registration
from dpps.bdms.metadata_values import parse_user_meta
from dpps.bdms.planning import PlannedFile as _Item
from dpps.bdms.planning import display as _display
from dpps.bdms.planning import plan
from dpps.bdms.records import IngestOptions
from dpps.bdms.types import BulkReport, FileResult
from dpps.catalog import dids as did_repo
from dpps.catalog.engine import transaction
from dpps.core.errors import Conflict, DppsError
from dpps.core.identifiers import parse_did, validate_scope
from dpps.core.states import DIDType
from dpps.storage.checksums import checksum_file, compare
from dpps.storage.rse import StorageElement

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class _Prepared:
    item: _Item
    lfn: str
    described: registration.Described
    in_place_path: str | None


def _failed(item: _Item, exc: DppsError, scope: str) -> FileResult:
    return FileResult(
        source=_display(item.source),
        did=f"{scope}:{item.lfn}" if item.lfn else None,
        status="failed",
        error=str(exc),
        error_type=type(exc).__name__,
        exit_code=exc.exit_code,
    )


def _prepare(
    item: _Item,
    user_columns: Mapping[str, Any],
    user_meta: Mapping[str, Any],
    rse: StorageElement,
) -> _Prepared:
    assert item.lfn is not None
    described = registration.describe(
        item.source, given_columns=user_columns, given_meta=user_meta
    )
    return _Prepared(item, item.lfn, described, rse.relative_path_of(item.source))


def ingest(
    factory: sessionmaker[Session],
    rse: StorageElement,
    rse_id: int,
    paths: Sequence[Path],
    opts: IngestOptions,
    *,
    account: str,
    algorithms: Sequence[str],
    workers: int,
    chunk_size: int,
    progress: Progress | None = None,
) -> BulkReport:
    started = time.perf_counter()
    validate_scope(opts.scope)
    user_columns, user_meta = parse_user_meta(opts.meta or {})
    dataset = parse_did(opts.dataset, opts.scope) if opts.dataset else None
    items = plan(paths, opts, rse)
    results: list[FileResult] = []
    tick = progress or (lambda _n: None)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
        for chunk in _chunks(items, chunk_size):
            results.extend(
                _ingest_chunk(
                    factory,
                    pool,
                    rse,
                    rse_id,
                    chunk,
                    opts,
                    dataset,
                    user_columns,
                    user_meta,
                    account,
                    algorithms,
                )
            )
            tick(len(chunk))
    return BulkReport(results, time.perf_counter() - started)


def _chunks(items: Sequence[_Item], size: int) -> Iterator[Sequence[_Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ingest_chunk(
    factory: sessionmaker[Session],
    pool: ThreadPoolExecutor,
    rse: StorageElement,
    rse_id: int,
    chunk: Sequence[_Item],
    opts: IngestOptions,
    dataset: Any,
    user_columns: Mapping[str, Any],
    user_meta: Mapping[str, Any],
    account: str,
    algorithms: Sequence[str],
) -> list[FileResult]:
    scope = opts.scope
    failed: dict[int, FileResult] = {}
    prepared: dict[int, _Prepared] = {}

    def prep(i: int, item: _Item) -> None:
        if item.error is not None:
            failed[i] = _failed(item, item.error, scope)
            return
        try:
            prepared[i] = _prepare(item, user_columns, user_meta, rse)
        except DppsError as exc:
            failed[i] = _failed(item, exc, scope)

    list(pool.map(lambda a: prep(*a), enumerate(chunk)))

    # Which names exist already decides, per file, between copy, skip and conflict.
    with factory() as session:
        existing = did_repo.latest_by_name(
            session, scope, sorted({p.lfn for p in prepared.values()})
        )
        prev = {
            name: (row.version, row.bytes, row.adler32, row.blake3)
            for name, row in existing.items()
            if row.did_type == DIDType.FILE
        }

    created: dict[int, str] = {}
    new_files: dict[int, did_repo.NewFile] = {}

    def store(i: int, p: _Prepared) -> None:
        try:
            new_files[i], made = _store(p, prev.get(p.lfn), opts, rse, rse_id, algorithms)
            if made:
                created[i] = new_files[i].path
        except DppsError as exc:
            failed[i] = _failed(p.item, exc, scope)

    list(pool.map(lambda a: store(*a), prepared.items()))

    order = sorted(new_files)
    outcomes: list[did_repo.Outcome] = []
    if order:
        try:
            with transaction(factory) as session:
                dataset_id = None
                if dataset is not None:
                    dataset_id = registration.ensure_dataset(session, dataset, account=account)
                outcomes = registration.register(
                    session, [new_files[i] for i in order], account=account, dataset=dataset_id
                )
        except BaseException:
            for path in created.values():
                rse.remove(path)
            raise
    results: dict[int, FileResult] = dict(failed)
    for i, outcome in zip(order, outcomes, strict=True):
        f = new_files[i]
        p = prepared[i]
        if outcome.status == "conflict":
            if i in created:
                rse.remove(created[i])
            results[i] = _failed(p.item, Conflict(outcome.message), scope)
            continue
        results[i] = FileResult(
            source=_display(p.item.source),
            did=registration.label(f, outcome),
            status="registered" if outcome.status == "registered" else "present",
            version=outcome.version,
            bytes=f.bytes,
            rse=rse.name,
            path=f.path,
        )
    return [results[i] for i in sorted(results)]


def _store(
    p: _Prepared,
    prev: tuple[int, int | None, str | None, str | None] | None,
    opts: IngestOptions,
    rse: StorageElement,
    rse_id: int,
    algorithms: Sequence[str],
) -> tuple[did_repo.NewFile, bool]:
    """Put the bytes in place (or find them there); returns the NewFile and whether we copied."""
    base = registration.new_file(
        p.described,
        scope=opts.scope,
        name=p.lfn,
        rse_id=rse_id,
        path="",
        checksums={},
        new_version=opts.new_version,
        user_keys=opts.meta or {},
    )
    if p.in_place_path is not None:
        size, sums = checksum_file(p.item.source, algorithms)
        return replace(base, bytes=size, checksums=sums, path=p.in_place_path), False
    version = 1
    if prev is not None:
        size, sums = checksum_file(p.item.source, algorithms)
        same = prev[1] == size and not compare(
            {"adler32": prev[2] or "", "blake3": prev[3] or ""}
            if prev[3]
            else {"adler32": prev[2] or ""},
            sums,
        )
        if same or not opts.new_version:
            # Let registration report "present" or the conflict; nothing to copy.
            return replace(
                base, bytes=size, checksums=sums, path=rse.path_for(opts.scope, p.lfn, prev[0])
            ), False
        version = prev[0] + 1
    rel = rse.path_for(opts.scope, p.lfn, version)
    try:
        size, sums = rse.upload(p.item.source, rel, algorithms)
        made = True
    except Conflict:
        # A copy at the deterministic path but no catalog entry: left by an interrupted
        # ingest. Adopt it only if it holds exactly these bytes.
        size, sums = checksum_file(p.item.source, algorithms)
        _, theirs = rse.checksum(rel, algorithms)
        if compare(sums, theirs):
            raise Conflict(
                f"{rse.name}:{rel} already holds other, unregistered content; "
                "an operator must inspect it"
            ) from None
        made = False
    return replace(base, bytes=size, checksums=sums, path=rel), made
