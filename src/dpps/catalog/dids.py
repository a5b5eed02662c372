"""Files, datasets and containers: lookup, bulk registration and versions (attachment and
the collections' tree: ``catalog.attachments``).

Registration is the archive's hot path (an observing night is hundreds of thousands of files),
so it works on chunks: one query finds what already exists, one bulk write per table
(``catalog.bulk``: COPY on PostgreSQL, the driver's executemany on SQLite) writes the rest,
the new DIDs' ids reserved first. Callers own the transaction; nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    and_,
    bindparam,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased

from dpps.catalog import bulk, events
from dpps.catalog.attachments import attach
from dpps.catalog.models import DIDRow, EventRow, ReplicaRow
from dpps.core.clock import utcnow
from dpps.core.errors import NotFound
from dpps.core.identifiers import DID
from dpps.core.states import DIDType, ReplicaState

DIDS: Table = DIDRow.__table__  # type: ignore[assignment]
REPLICAS: Table = ReplicaRow.__table__  # type: ignore[assignment]
EVENTS: Table = EventRow.__table__  # type: ignore[assignment]
_FILE = DIDType.FILE.value


@dataclass(frozen=True, slots=True)
class NewFile:
    """A file to register: its identity, content, one replica and its metadata."""

    scope: str
    name: str
    bytes: int
    checksums: Mapping[str, str]
    rse_id: int
    path: str
    columns: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    new_version: bool = False
    #: Metadata keys the user gave (not extracted); kept when metadata is re-extracted.
    user_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What registration did with one NewFile."""

    status: Literal["registered", "present", "conflict"]
    did_id: int | None
    version: int | None
    message: str = ""


def same_content(row: DIDRow | Any, bytes_: int, checksums: Mapping[str, str]) -> bool:
    """Two contents are the same when size and every checksum both sides know agree."""
    if row.bytes != bytes_ or row.adler32 != checksums.get("adler32"):
        return False
    theirs = row.blake3
    mine = checksums.get("blake3")
    return theirs is None or mine is None or theirs == mine


def latest_by_name(session: Session, scope: str, names: Sequence[str]) -> dict[str, DIDRow]:
    """The latest version of each of ``names`` that exists, by name.

    On PostgreSQL this is one index probe per name, whatever the statistics say: ``name =
    ANY(...)`` was planned from statistics that a fast-growing catalog outruns (autovacuum
    analyzes once a minute at best), as one scan of every file of the scope - registration
    then slowed with every chunk, 96 ms at 0 files and 455 ms at 15,000. The probes go
    through a ``LATERAL`` subquery per name, which PostgreSQL can only run as such, and the
    statement is never prepared (psycopg prepares one run five times, and a generic plan
    made while ``dids`` was small would be kept). SQLite plans ``IN`` as probes itself."""
    if session.get_bind().dialect.name != "postgresql":
        stmt = select(DIDRow).where(
            DIDRow.scope == scope, DIDRow.name.in_(names), DIDRow.is_latest.is_(True)
        )
        return {row.name: row for row in session.scalars(stmt)}
    # AS n(lfn): without its column list, "n.name" would read as the cast name(n).
    array = literal(list(names), ARRAY(String))
    wanted = func.unnest(array).table_valued("lfn").render_derived(name="n")
    one = (
        select(DIDRow)
        .where(DIDRow.scope == scope, DIDRow.name == wanted.c.lfn, DIDRow.is_latest.is_(True))
        .limit(1)
        .lateral("d")
    )
    latest = aliased(DIDRow, one)
    stmt = select(latest).select_from(wanted).join(one, true())
    raw: Any = session.connection().connection.driver_connection
    threshold = raw.prepare_threshold
    raw.prepare_threshold = None  # a setting of the client: no round trip
    try:
        return {row.name: row for row in session.scalars(stmt)}
    finally:
        raw.prepare_threshold = threshold


def look_up(
    session: Session, scope: str, names: Sequence[str]
) -> tuple[dict[str, Any], list[int]]:
    """The latest version of each of ``names`` that exists, by name, and the ids reserved for
    the others, ascending (on SQLite none: ``bulk.reserve_ids`` numbers them after the
    look-up, in the same transaction, without a server to wait for).

    On PostgreSQL both come from one statement, the look-up of ``latest_by_name`` (one index
    probe per name, never prepared) with ``nextval`` for each name it does not find: the
    reservation was a second round trip per chunk. The names travel as one text
    split by the server: psycopg's conversion of a list of 500 strings into an array took
    longer (0.9 ms) than the whole query. A found file carries what registration compares
    (id, version, type, size, checksums), not the ORM row.
    """
    if session.get_bind().dialect.name != "postgresql":
        return latest_by_name(session, scope, names), []
    names = list(dict.fromkeys(names))  # one id per name, however often it is given
    joined = "\n".join(names)
    param: str | list[str]
    if joined.count("\n") == len(names) - 1:  # no name holds the separator (LFNs cannot)
        wanted, param = "string_to_array(%(names)s, E'\\n')", joined
    else:
        wanted, param = "%(names)s::text[]", list(names)
    # AS n(lfn): with a column list, n.lfn is the text (not the cast name(n), whose 63
    # characters would cut long names and let duplicates through). The sequence is looked up
    # once per statement (an InitPlan), not once per name.
    sql = (
        "SELECT n.lfn, d.id, d.version, d.did_type, d.bytes, d.adler32, d.blake3, "
        "CASE WHEN d.id IS NULL THEN "
        f"nextval((SELECT pg_get_serial_sequence('{DIDS.name}', 'id'))::regclass) END "
        f"FROM unnest({wanted}) AS n(lfn) LEFT JOIN LATERAL ("
        "SELECT id, version, did_type, bytes, adler32, blake3 "
        f"FROM {DIDS.name} WHERE scope = %(scope)s AND name = n.lfn AND is_latest LIMIT 1"
        ") AS d ON true"
    )
    found: dict[str, Any] = {}
    reserved: list[int] = []
    with bulk.driver_cursor(session, sql) as cursor:
        # prepare=False: a generic plan made while dids was small would be kept.
        cursor.execute(sql, {"names": param, "scope": scope}, prepare=False)
        for lfn, did_id, version, did_type, size, adler32, blake3, new_id in cursor.fetchall():
            if did_id is None:
                reserved.append(new_id)
            else:
                found[lfn] = _Known(size, adler32, blake3, version, did_id, did_type)
    reserved.sort()
    return found, reserved


def register_files(
    session: Session,
    files: Sequence[NewFile],
    *,
    account: str,
    dataset_id: int | None = None,
) -> list[Outcome]:
    """Register a chunk of files with one replica each; returns one Outcome per input.

    Same name and same content is reported as present and changes nothing; same name and
    other content is a conflict unless the file asks for a new version, which then becomes
    the latest. Conflicts do not abort the chunk: the caller decides what to report.
    """
    by_scope: dict[str, list[str]] = defaultdict(list)
    for f in files:
        by_scope[f.scope].append(f.name)
    existing: dict[tuple[str, str], Any] = {}
    reserved: list[int] = []
    for scope, names in by_scope.items():
        found, ids = look_up(session, scope, sorted(set(names)))
        reserved += ids
        for name, row in found.items():
            existing[(scope, name)] = row

    outcomes: list[Outcome | None] = [None] * len(files)
    to_insert: list[tuple[int, NewFile, int]] = []
    stale: set[int] = set()  # positions in to_insert of files a later one of the chunk supersedes
    superseded: list[int] = []
    # Files of this chunk to be written, by name: a later file of the same name compares
    # against the last of them (kept as given, made a _Known only for such a duplicate).
    written: dict[tuple[str, str], tuple[NewFile, int, int]] = {}
    now = utcnow()
    for i, f in enumerate(files):
        key = (f.scope, f.name)
        earlier = written.get(key)
        if earlier is None:
            prev = existing.get(key)
        else:
            e, v, _ = earlier
            prev = _Known(e.bytes, e.checksums.get("adler32"), e.checksums.get("blake3"), v)
        if prev is None:
            version = 1
        elif prev.did_type != DIDType.FILE:
            outcomes[i] = Outcome(
                "conflict", prev.id, None, f"{f.scope}:{f.name} is a {prev.did_type}"
            )
            continue
        elif same_content(prev, f.bytes, f.checksums):
            outcomes[i] = Outcome("present", prev.id, prev.version, "already registered")
            continue
        elif f.new_version:
            version = prev.version + 1
            if prev.id is not None:
                superseded.append(prev.id)
            elif earlier is not None:  # written by this chunk: it is not the latest either
                stale.add(earlier[2])
        else:
            outcomes[i] = Outcome(
                "conflict",
                prev.id,
                prev.version,
                f"{f.scope}:{f.name} is already registered with other content "
                f"(adler32 {prev.adler32}, {prev.bytes} bytes); ingest it as a new version",
            )
            continue
        written[key] = (f, version, len(to_insert))
        to_insert.append((i, f, version))

    if superseded:
        session.execute(
            update(DIDRow).where(DIDRow.id.in_(superseded)).values(is_latest=False, updated_at=now)
        )
    if to_insert:
        # Every name the look-up did not find is written (its first occurrence), so the ids
        # reserved for them are all used; new versions need more.
        if len(to_insert) > len(reserved):
            reserved += bulk.reserve_ids(session, DIDS, len(to_insert) - len(reserved))
        ids = sorted(reserved)
        rows = [(f, v, n not in stale) for n, (_, f, v) in enumerate(to_insert)]
        _write(session, rows, ids, account, now, dataset_id)
        for (i, _f, version), did_id in zip(to_insert, ids, strict=True):
            outcomes[i] = Outcome("registered", did_id, version)
    return [o for o in outcomes if o is not None]


def _write(
    session: Session,
    files: Sequence[tuple[NewFile, int, bool]],
    ids: Sequence[int],
    account: str,
    now: dt.datetime,
    dataset_id: int | None,
) -> None:
    """Write new files (each with its version and whether it is the latest): DIDs, replicas,
    ``file.register`` events and the attachment to ``dataset_id``, each table in one bulk
    statement (``catalog.bulk``: COPY on PostgreSQL), the DIDs with ``ids`` (reserved, in
    order). A row the database refuses (a file registered by another writer since the
    look-up) fails the whole statement, and the caller's transaction then leaves nothing of
    the chunk behind."""
    pairs = list(zip(ids, files, strict=True))
    bulk.insert_values(
        session,
        DIDS,
        DID_COLUMNS,
        [_did_values(i, f, v, latest, now) for i, (f, v, latest) in pairs],
    )
    available = ReplicaState.AVAILABLE.value
    bulk.insert_values(
        session,
        REPLICAS,
        REPLICA_COLUMNS,
        [
            (i, f.rse_id, available, f.path, f.bytes, 0, now, now, now, None)
            for i, (f, _v, _latest) in pairs
        ],
    )
    if dataset_id is not None:
        attach(session, dataset_id, ids, fresh=ids)
    # The value lists of ``events.record_many`` built directly: a mapping per event, then
    # its conversion, cost a chunk of 500 files 0.3 ms.
    bulk.insert_values(
        session,
        EVENTS,
        events.COLUMNS,
        [
            (
                *(now, account, "file.register", did_id, f.rse_id, None),
                {
                    "version": v,
                    "bytes": f.bytes,
                    "path": f.path,
                    **{k: f.checksums[k] for k in sorted(f.checksums)},
                    **({"user_keys": list(f.user_keys)} if f.user_keys else {}),
                },
            )
            for did_id, (f, v, _latest) in pairs
        ],
    )


class _Known(NamedTuple):
    """A file of the chunk's look-up, or one written earlier in the chunk (``id`` None):
    what a later file of the same name is compared with. A tuple, not a frozen dataclass,
    whose field-by-field ``__init__`` cost 0.4 ms per 500 files."""

    bytes: int
    adler32: str | None
    blake3: str | None
    version: int
    id: int | None = None
    did_type: str = DIDType.FILE.value


#: The metadata a file's row holds in columns of its own (``NewFile.columns``), in order.
METADATA_COLUMNS = (
    *("data_level", "category", "obs_id", "tel_id", "observing_night", "time_start"),
    *("time_end", "product_type"),
)
DID_COLUMNS = (
    *("id", "scope", "name", "version", "is_latest", "is_open", "did_type", "bytes"),
    *("adler32", "blake3", "checksums", *METADATA_COLUMNS, "meta", "expires_at"),
    *("created_at", "updated_at", "deleted_at"),
)
_OWN_CHECKSUMS = frozenset({"adler32", "blake3"})
REPLICA_COLUMNS = (
    *("did_id", "rse_id", "state", "path", "bytes", "lock_count", "created_at", "updated_at"),
    *("last_verified_at", "tombstone_at"),
)


def _did_values(did_id: int, f: NewFile, version: int, latest: bool, now: Any) -> tuple[Any, ...]:
    """A new file's DID row, in the order of ``DID_COLUMNS``."""
    sums = f.checksums
    extra = (
        {}
        if sums.keys() <= _OWN_CHECKSUMS
        else {k: v for k, v in sums.items() if k not in _OWN_CHECKSUMS}
    )
    return (
        *(did_id, f.scope, f.name, version, latest, True, _FILE, f.bytes),
        *(sums["adler32"], sums.get("blake3"), extra),
        *map(f.columns.get, METADATA_COLUMNS),  # one C call per column, not a Python one
        *(dict(f.meta), _expiry(f.meta, now), now, now, None),
    )


def _expiry(meta: Mapping[str, Any], now: dt.datetime) -> dt.datetime | None:
    """A ``lifetime_days`` hint in the metadata (SimPipe writes 1096 for simulated data) sets
    the file's end of life at registration; the reaper deletes it then. Bad hints are ignored:
    keeping a file longer is the safe side."""
    raw: Any = meta.get("lifetime_days")
    if raw is None:  # most files: no exception to raise and catch
        return None
    try:
        days = float(raw)
    except (TypeError, ValueError):
        return None
    return now + dt.timedelta(days=days) if math.isfinite(days) and 0 < days < 1e6 else None


def named(*, latest: bool) -> ColumnElement[bool]:
    """The condition selecting the row a DID names, its latest version or the version it
    gives, as bind parameters (``named_params``): statements using it are built once, not per
    look-up. One row at most: (scope, name, version) is unique, one version is the latest."""
    which = DIDRow.is_latest.is_(True) if latest else DIDRow.version == bindparam("version")
    return and_(DIDRow.scope == bindparam("scope"), DIDRow.name == bindparam("name"), which)


def named_params(did: DID) -> dict[str, Any]:
    """The bind parameters of ``named(latest=did.version is None)`` for ``did``."""
    if did.version is None:
        return {"scope": did.scope, "name": did.name}
    return {"scope": did.scope, "name": did.name, "version": did.version}


_BY_NAME = {latest: select(DIDRow).where(named(latest=latest)) for latest in (True, False)}


def get_did(session: Session, did: DID, did_type: DIDType | None = None) -> DIDRow:
    """The DID's row: the requested version, else the latest. Raises NotFound."""
    row = session.scalars(_BY_NAME[did.version is None], named_params(did)).one_or_none()
    # The type is checked here, not in SQL: (scope, name, version) is unique, and a did_type
    # condition lets SQLite pick the unselective did_type index (a scan of every file).
    if row is None or (did_type is not None and row.did_type != did_type.value):
        raise NotFound(f"no such DID {did}")
    return row


def versions_of(session: Session, scope: str, name: str) -> Sequence[DIDRow]:
    stmt = (
        select(DIDRow).where(DIDRow.scope == scope, DIDRow.name == name).order_by(DIDRow.version)
    )
    return session.scalars(stmt).all()
