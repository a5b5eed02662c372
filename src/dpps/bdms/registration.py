"""One way to register files, whoever registers them (UC-110-1.1.3, UC-110-1.2.1).

Four callers bring files into the catalog: a user's ingest (``bdms.ingest``), the ACADA queue
(``bdms.ingestion``), a WMS job's outputs (``wms.outputs``) and REST bulk registration
(``oms.registration``). They differ in where the bytes are and who checks them, so each has a
``prepare_*`` function here that builds ``NewFile`` records *without the database* - the
heavy part (reading files, FITS checksums, metadata extraction) runs in a worker or before the
caller's write transaction, never under SQLite's writer lock:

* ``prepare_in_place``: bytes already under an RSE's root (the ACADA landing area);
* ``describe`` + ``new_file``: a local file a user ingests (``bdms.ingest`` copies it first);
* ``prepare_declared``: a record a remote client declares (size and checksums, no bytes read);
* ``prepare_output``: a job's output, uploaded and checksummed by the worker.

``register`` then registers prepared files in the caller's session (the caller commits): files
and replicas with their ``file.register`` events (``catalog.dids.register_files``), attachment
to their datasets, the rules covering those datasets made due *once* for the whole batch, and a
replication policy's rules on the files. ``ensure_dataset`` creates a dataset on first use,
with its policy and its place in a container tree. Conflicts (same name, other content) are
reported per file, never raised: what to do with them is the caller's decision.
``register_declared`` is bulk registration as a unit of work (its own transactions), for the
REST gateway.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.metadata import INDEXED_KEYS, convert_indexed, extract_metadata
from dpps.bdms.metadata_values import parse_user_meta, validate_free_meta
from dpps.bdms.planning import display
from dpps.bdms.records import RegisterOutcome, Registration
from dpps.bdms.replication.rules import apply_policy
from dpps.bdms.states import rules as rule_states
from dpps.catalog import attachments as attachment_repo
from dpps.catalog import dids as did_repo
from dpps.catalog import rses as rse_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow
from dpps.core.config import Config
from dpps.core.errors import Conflict, DppsError, InvalidInput, NotFound, PermissionDenied
from dpps.core.identifiers import DID, parse_did, validate_lfn, validate_scope
from dpps.core.states import DIDType
from dpps.storage.checksums import checksum_file
from dpps.storage.rse import StorageElement

NewFile = did_repo.NewFile
Outcome = did_repo.Outcome

# -- prepare: no database -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Described:
    """A local file's size and metadata: extracted, then overridden by what was given."""

    size: int
    columns: dict[str, Any]
    meta: dict[str, Any]


def describe(
    path: Path,
    *,
    given_columns: Mapping[str, Any] | None = None,
    given_meta: Mapping[str, Any] | None = None,
) -> Described:
    """Check a local file (exists, regular, not empty) and extract its metadata (a FITS file's
    checksums verified); given keys win over extracted ones."""
    if not path.exists():
        raise NotFound(f"{display(path)}: no such file")
    if not path.is_file():
        raise InvalidInput(f"{display(path)} is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InvalidInput(f"{display(path)} is empty: refusing to archive a 0-byte file")
    extracted = extract_metadata(path)
    columns = {**extracted.columns, **(given_columns or {})}
    meta = {**extracted.meta, **(given_meta or {}), "format": extracted.format}
    if extracted.warnings:
        meta["extraction_warnings"] = list(extracted.warnings)
    return Described(size, columns, meta)


def new_file(
    described: Described,
    *,
    scope: str,
    name: str,
    rse_id: int,
    path: str,
    checksums: Mapping[str, str],
    size: int | None = None,
    new_version: bool = False,
    user_keys: Iterable[str] = (),
) -> NewFile:
    """The record ``register`` takes, from a described file and where its bytes are."""
    return NewFile(
        scope=scope,
        name=name,
        bytes=described.size if size is None else size,
        checksums=dict(checksums),
        rse_id=rse_id,
        path=path,
        columns=described.columns,
        meta=described.meta,
        new_version=new_version,
        user_keys=tuple(sorted(user_keys)),
    )


def prepare_in_place(
    source: Path,
    lfn: str,
    rse: StorageElement,
    *,
    scope: str,
    rse_id: int,
    algorithms: Sequence[str],
) -> NewFile:
    """A file that already lies under ``rse``'s root, registered where it is: the checks,
    metadata extraction and checksums of an ingest, short of the catalog. A top-level function
    of picklable arguments, so that a process pool can run it (the ACADA queue does); raises
    the DppsError that ``ingest`` would report."""
    name = validate_lfn(lfn)
    described = describe(source)
    rel = rse.relative_path_of(source)
    if rel is None:
        raise PermissionDenied(f"{display(source)} is not under the root of RSE {rse.name}")
    size, sums = checksum_file(source, algorithms)
    return new_file(
        described, scope=scope, name=name, rse_id=rse_id, path=rel, checksums=sums, size=size
    )


def declared_meta(meta: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A declared record's metadata split into typed indexed columns and checked free
    metadata (``metadata_values.validate_free_meta``)."""
    columns: dict[str, Any] = {}
    free: dict[str, Any] = {}
    for key, value in meta.items():
        if key in INDEXED_KEYS:
            columns[key] = convert_indexed(key, value)
        else:
            free[key] = value
    return columns, validate_free_meta(free)


def prepare_declared(
    items: Sequence[Registration],
    *,
    default_scope: str,
    rse_ids: Mapping[str, int],
    storage: Callable[[str], StorageElement],
) -> list[NewFile]:
    """Records a remote client declares (bulk registration): every name, path and metadata
    value of the whole batch is checked first, so one bad file refuses the batch and nothing
    is half-registered. Bytes are not read: that is the point of bulk registration (the
    auditor verifies the copies later). ``storage`` gives an RSE by name (paths are resolved
    against its root, which refuses paths that leave it)."""
    storages: dict[str, StorageElement] = {}
    out: list[NewFile] = []
    for i, item in enumerate(items):
        try:
            scope = validate_scope(item.scope or default_scope)
            name = validate_lfn(item.name)
            if item.rse not in rse_ids:
                raise InvalidInput(f"unknown RSE {item.rse!r}")
            if item.path is None:
                if item.new_version:
                    raise InvalidInput("a new version needs an explicit path")
                path = StorageElement.path_for(scope, name)
            else:
                if item.rse not in storages:
                    storages[item.rse] = storage(item.rse)
                storages[item.rse].resolve(item.path)  # refuses paths that leave the RSE root
                path = item.path
            columns, meta = declared_meta(item.meta or {})
        except DppsError as exc:
            raise type(exc)(f"files[{i}] ({item.name!r}): {exc}") from None
        sums = {"adler32": item.adler32} | ({"blake3": item.blake3} if item.blake3 else {})
        out.append(
            NewFile(
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


def prepare_output(
    source: Path,
    *,
    scope: str,
    lfn: str,
    rse_id: int,
    path: str,
    size: int,
    checksums: Mapping[str, str],
    given: Mapping[str, str],
    provenance: Mapping[str, Any],
    new_version: bool = False,
) -> NewFile:
    """A WMS job's output, already uploaded to ``path`` and checksummed: its metadata is
    extracted from the sandbox copy (a full read of a FITS file), the keys the job declared
    (``given``) win, and the provenance record goes with it."""
    columns, meta = parse_user_meta(given)
    described = describe(source, given_columns=columns, given_meta=meta)
    described.meta["provenance"] = dict(provenance)
    described.meta["wms_job"] = provenance["job_id"]
    if provenance.get("transformation"):
        described.meta["wms_transformation"] = provenance["transformation"]
    return new_file(
        described,
        scope=scope,
        name=lfn,
        rse_id=rse_id,
        path=path,
        checksums=checksums,
        size=size,
        new_version=new_version,
        user_keys=sorted({*given, "provenance", "wms_job", "wms_transformation"}),
    )


# -- register: in the caller's session ----------------------------------------------------------


def rse_ids(session: Session) -> dict[str, int]:
    """RSE name -> id, what a ``prepare_*`` function needs to place a file's replica."""
    return {r.name: r.id for r in rse_repo.list_rses(session)}


def ensure_dataset(
    session: Session,
    did: DID,
    *,
    account: str,
    policy: str | None = None,
    config: Config | None = None,
    tree_root: str | None = None,
    cache: dict[str, int] | None = None,
) -> int:
    """The id of a dataset, created on first use - then with the rules of ``policy`` and, when
    ``tree_root`` is given, attached to a container per directory level below it (created as
    needed). An existing dataset was wired when it was created. ``cache`` (name -> id) spares
    the lookups of a batch. Raises Conflict when the name is taken by another kind of DID."""
    return _collection(
        session,
        did,
        DIDType.DATASET,
        account,
        policy,
        config,
        tree_root,
        {} if cache is None else cache,
    )


def _collection(
    session: Session,
    did: DID,
    did_type: DIDType,
    account: str,
    policy: str | None,
    config: Config | None,
    tree_root: str | None,
    cache: dict[str, int],
) -> int:
    if did.name in cache:
        return cache[did.name]
    row, created = attachment_repo.collection(
        session, did.scope, did.name, did_type, account=account
    )
    if created:
        if policy is not None and did_type == DIDType.DATASET:
            if config is None:
                raise InvalidInput("a replication policy needs the configuration")
            apply_policy(session, config, row, policy, account=account)
        parent = posixpath.dirname(did.name)
        if tree_root is not None and parent.startswith(tree_root + "/"):
            parent_did = DID(did.scope, parent)
            parent_id = _collection(
                session, parent_did, DIDType.CONTAINER, account, None, None, tree_root, cache
            )
            attachment_repo.attach(session, parent_id, [row.id])
    cache[did.name] = row.id
    return row.id


def register(
    session: Session,
    files: Sequence[NewFile],
    *,
    account: str,
    dataset: int | Sequence[int | None] | None = None,
    policy: str | Sequence[str | None] | None = None,
    config: Config | None = None,
) -> list[Outcome]:
    """Register prepared files in the caller's session; one Outcome per file, in order.

    ``dataset`` (one id for all, or one per file) receives every file registered or already
    present; the rules covering those datasets are made due once for the batch. ``policy``
    (one name for all, or one per file) gives those files the policy's rules. Conflicting
    files are neither attached nor given rules.
    """
    if not files:
        return []
    outcomes = did_repo.register_files(session, files, account=account)
    n = len(files)
    targets = list(dataset) if isinstance(dataset, Sequence) else [dataset] * n
    policies = [policy] * n if policy is None or isinstance(policy, str) else list(policy)
    if len(targets) != n or len(policies) != n:
        raise ValueError(f"datasets or policies given for other than the {n} files")
    members: dict[int, list[int]] = {}
    ruled: list[tuple[int, str]] = []
    for outcome, target, name in zip(outcomes, targets, policies, strict=True):
        if outcome.status == "conflict" or outcome.did_id is None:
            continue
        if target is not None:
            members.setdefault(target, []).append(outcome.did_id)
        if name is not None:
            ruled.append((outcome.did_id, name))
    # Files registered now are attached nowhere yet: only the others need attach's look-up
    # (on PostgreSQL it cost more than all the rows' writing, growing with the dataset).
    fresh = {o.did_id for o in outcomes if o.status == "registered" and o.did_id is not None}
    grown = [
        p
        for p, ids in members.items()
        if attachment_repo.attach(session, p, ids, bump=False, fresh=fresh)
    ]
    if grown and _grown_and_ruled(session, grown):  # once for the batch, however many grew
        rule_states.members_added(session, grown, account=account)
    if ruled:
        if config is None:
            raise InvalidInput("a replication policy needs the configuration")
        rows = {
            r.id: r
            for r in session.scalars(select(DIDRow).where(DIDRow.id.in_({d for d, _ in ruled})))
        }
        for did_id, name in ruled:
            apply_policy(session, config, rows[did_id], name, account=account)
    return outcomes


def _grown_and_ruled(session: Session, grown: Sequence[int]) -> bool:
    """Refuse the batch if a dataset that took new files is closed; return whether any rule
    covers the datasets that did (one query, ``attachments.attach_targets``).

    A closed dataset takes no new files, whichever way they come (as ``datasets.attach``):
    the whole batch is refused with Conflict, so its transaction rolls back and nothing
    half-registered stays behind (the attachments just written included). Files that were
    members already pass: their dataset did not grow, and is not asked about. When no rule
    covers the datasets, attaching makes no rule due, and ``members_added`` (a round trip per
    level of the container tree, then ``UPDATE rules``) is skipped."""
    targets, covered = attachment_repo.attach_targets(session, grown)
    for target in targets:
        if not target.is_open:
            raise _closed(target)
    return covered


def ensure_open(session: Session, dataset_id: int) -> None:
    """Conflict if the dataset is closed: the ACADA queue asks per directory, so that the
    files of a closed one are reported (and the rest of the batch goes on)."""
    row = session.get(DIDRow, dataset_id)
    if row is not None and not row.is_open:
        raise _closed(row)


def _closed(row: DIDRow | attachment_repo.Target) -> Conflict:
    return Conflict(
        f"{row.scope}:{row.name} is closed: it takes no new files (reopen it with "
        "'dpps dataset reopen', or put the files into another dataset)"
    )


def label(f: NewFile, outcome: Outcome) -> str:
    """``scope:name``, with ``@vN`` for a version after the first."""
    return f"{f.scope}:{f.name}" + ("" if (outcome.version or 1) == 1 else f"@v{outcome.version}")


def register_declared(
    sessions: sessionmaker[Session],
    config: Config,
    items: Sequence[Registration],
    *,
    account: str,
    storage: Callable[[str], StorageElement],
    dataset: str | None = None,
) -> list[RegisterOutcome]:
    """Bulk registration as a unit of work: the declared records checked and prepared
    (``prepare_declared``; one bad record refuses the batch), then registered in one
    transaction, attached to ``dataset`` (created on first use) when given."""
    with sessions() as session:
        ids = rse_ids(session)
    files = prepare_declared(
        items, default_scope=config.default_scope, rse_ids=ids, storage=storage
    )
    parent = parse_did(dataset, config.default_scope) if dataset else None
    with transaction(sessions) as session:
        target = None if parent is None else ensure_dataset(session, parent, account=account)
        outcomes = register(session, files, account=account, dataset=target)
    return [
        RegisterOutcome(label(f, o), o.status, o.version, o.message)
        for f, o in zip(files, outcomes, strict=True)
    ]
