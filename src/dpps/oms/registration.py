"""Catalog-only bulk registration of files already on an RSE, as remote clients ask for it.

The gateway between the API's request records and ``catalog.dids.register_files``: it checks
every name, path and metadata value of the whole batch first (one bad file refuses the batch,
nothing is half-registered), converts them to ``NewFile`` records, then registers the batch -
files, replicas, dataset attachment and events - in one transaction. Bytes are not read here:
that is the point of bulk registration (the auditor verifies copies later).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dpps.bdms.archive import Archive
from dpps.bdms.metadata import INDEXED_KEYS, convert_indexed
from dpps.bdms.metadata_values import validate_free_meta
from dpps.bdms.records import RegisterOutcome as RegisterOutcome
from dpps.bdms.records import Registration as Registration
from dpps.catalog import dids as did_repo
from dpps.catalog import rses as rse_repo
from dpps.catalog.engine import transaction
from dpps.core.errors import DppsError, InvalidInput
from dpps.core.identifiers import parse_did, validate_lfn, validate_scope
from dpps.core.states import DIDType
from dpps.storage.rse import StorageElement


def _split_meta(meta: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    columns: dict[str, Any] = {}
    free: dict[str, Any] = {}
    for key, value in meta.items():
        if key in INDEXED_KEYS:
            columns[key] = convert_indexed(key, value)
        else:
            free[key] = value
    return columns, validate_free_meta(free)


def to_new_files(
    archive: Archive, items: Sequence[Registration], rse_ids: Mapping[str, int]
) -> list[did_repo.NewFile]:
    storages: dict[str, StorageElement] = {}
    out: list[did_repo.NewFile] = []
    for i, item in enumerate(items):
        try:
            scope = validate_scope(item.scope or archive.config.default_scope)
            name = validate_lfn(item.name)
            if item.rse not in rse_ids:
                raise InvalidInput(f"unknown RSE {item.rse!r}")
            if item.path is None:
                if item.new_version:
                    raise InvalidInput("a new version needs an explicit path")
                path = StorageElement.path_for(scope, name)
            else:
                storage = storages.get(item.rse) or archive.storage(item.rse)
                storages[item.rse] = storage
                storage.resolve(item.path)  # refuses paths that leave the RSE root
                path = item.path
            columns, meta = _split_meta(item.meta or {})
        except DppsError as exc:
            raise type(exc)(f"files[{i}] ({item.name!r}): {exc}") from None
        sums = {"adler32": item.adler32} | ({"blake3": item.blake3} if item.blake3 else {})
        out.append(
            did_repo.NewFile(
                scope=scope,
                name=name,
                bytes=item.bytes,
                checksums=sums,
                rse_id=rse_ids[item.rse],
                path=path,
                columns=columns,
                meta=meta,
                new_version=item.new_version,
                user_keys=tuple(sorted(item.meta or {})),
            )
        )
    return out


def scopes_of(archive: Archive, items: Sequence[Registration], dataset: str | None) -> set[str]:
    scopes = {item.scope or archive.config.default_scope for item in items}
    if dataset:
        scopes.add(archive.did(dataset).scope)
    return scopes


def register(
    archive: Archive, items: Sequence[Registration], dataset: str | None = None
) -> list[RegisterOutcome]:
    """Register ``items`` as ``archive.account``; one outcome per item, in order."""
    with archive.sessions() as session:
        rse_ids = {r.name: r.id for r in rse_repo.list_rses(session)}
    files = to_new_files(archive, items, rse_ids)
    parent = parse_did(dataset, archive.config.default_scope) if dataset else None
    with transaction(archive.sessions) as session:
        dataset_id = None
        if parent is not None:
            dataset_id = did_repo.get_or_create_collection(
                session, parent.scope, parent.name, DIDType.DATASET, account=archive.account
            ).id
        outcomes = did_repo.register_files(
            session, files, account=archive.account, dataset_id=dataset_id
        )
    return [
        RegisterOutcome(
            f"{f.scope}:{f.name}" + ("" if (o.version or 1) == 1 else f"@v{o.version}"),
            o.status,
            o.version,
            o.message,
        )
        for f, o in zip(files, outcomes, strict=True)
    ]
