"""Archive files by identifier and by filter, for callers working in their own transaction.

The WMS binds job inputs to archive files, hands outputs from step to step and feeds its
transformations with newly matching files, all inside its own job transactions; it never reads
the archive's tables itself (an import-linter contract). These functions take the caller's
session, never commit, and return ``FileRef``/``FileMatch`` records, not ORM rows.

Where the caller's own table names the files (a job's inputs, a transformation's booked
files), ``with_files`` joins the file records onto the caller's query, so a batch stays one
statement: the caller says which column holds the file id, this module owns the join.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, not_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from dpps.bdms.types import FileMatch, FileRef
from dpps.catalog import dids as did_repo
from dpps.catalog.models import DIDRow
from dpps.catalog.query import FIELDS, compile_filter, parse_filter
from dpps.catalog.sets import among
from dpps.core.errors import InvalidInput
from dpps.core.identifiers import DID, parse_did
from dpps.core.states import DIDType

#: The columns of a ``FileRef``, in its field order.
REF_COLUMNS = (
    DIDRow.id,
    DIDRow.scope,
    DIDRow.name,
    DIDRow.version,
    DIDRow.is_latest,
    DIDRow.bytes,
)

#: A column holding catalog file ids (``JobFileRow.did_id``, a table's ``c.did_id``).
IdColumn = ColumnElement[int] | InstrumentedAttribute[int]
#: Given the file-id column of the archive's query, the caller's condition on it.
IdCondition = Callable[[IdColumn], ColumnElement[bool]]
#: A caller's query over its own tables, any columns.
Rows = Select[*tuple[Any, ...]]


def ref(row: DIDRow) -> FileRef:
    return FileRef(row.id, row.scope, row.name, row.version, row.is_latest, row.bytes)


def ref_from(values: Sequence[Any]) -> FileRef:
    """A ``FileRef`` from the values of ``REF_COLUMNS``, in their order."""
    return FileRef(*values[:6])


# -- by identifier ----------------------------------------------------------------------------


def file_ref(session: Session, did: DID | str, *, default_scope: str | None = None) -> FileRef:
    """The file a DID names (its latest version unless it names one). A text DID is parsed
    first (``scope:/lfn[@vN]``, or ``/lfn`` with ``default_scope``): InvalidInput when
    malformed; NotFound when there is no such file (a dataset of that name is not one)."""
    parsed = did if isinstance(did, DID) else parse_did(did, default_scope)
    return ref(did_repo.get_did(session, parsed, DIDType.FILE))


def file_refs(session: Session, ids: Iterable[int]) -> dict[int, FileRef]:
    """Files by catalog id, in one statement; ids that name no DID are left out."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    stmt = select(*REF_COLUMNS).where(among(session, DIDRow.id, wanted))
    return {int(r[0]): ref_from(r) for r in session.execute(stmt)}


def with_files(
    session: Session,
    stmt: Rows,
    did_id: IdColumn,
    *,
    order_by_name: bool = False,
) -> list[tuple[tuple[Any, ...], FileRef]]:
    """The caller's rows (tuples of its own columns), each with the file its ``did_id``
    column names, in one statement.

    ``stmt`` selects from the caller's own tables (its ORDER BY is kept); rows whose id names
    no DID are left out, as an inner join does. ``order_by_name`` adds the files' names as the
    last sort key (what the database sorts by, with its collation, not Python's).
    """
    width = len(stmt.selected_columns)
    joined = stmt.add_columns(*REF_COLUMNS).join(DIDRow, DIDRow.id == did_id)
    if order_by_name:
        joined = joined.order_by(DIDRow.name)
    return [(tuple(row[:width]), ref_from(row[width:])) for row in session.execute(joined)]


# -- by filter (the query language of ``dpps ls``) ------------------------------------------


def check_filter(text: str) -> None:
    """InvalidInput, with the position of the mistake, unless ``text`` is a valid filter."""
    parse_filter(text)


def is_field(key: str) -> bool:
    """Whether ``key`` names a queryable field of files (``obs_id``, ``meta.site``, ...)."""
    return key in FIELDS or key.startswith("meta.")


def _value(row: DIDRow, key: str) -> Any:
    if key.startswith("meta."):
        return (row.meta or {}).get(key[5:])
    return getattr(row, key)


def matching_files(
    session: Session,
    filter_text: str,
    *,
    excluding: str | None = None,
    unless: IdCondition | None = None,
    fields: Sequence[str] = (),
    limit: int,
) -> list[FileMatch]:
    """Latest, not deleted files matching ``filter_text``, oldest id first, at most ``limit``.

    ``excluding`` is a second filter whose files are left out; ``unless`` the caller's own
    condition on the file id (a transformation's "booked already"), evaluated in the same
    statement. ``fields`` are returned with each file; without them only ids are read (no
    ORM objects for thousands of files).
    """
    unknown = [k for k in fields if not is_field(k)]
    if unknown:
        raise InvalidInput(f"not a queryable field: {', '.join(unknown)}")
    conditions: list[ColumnElement[bool]] = [
        compile_filter(filter_text),
        DIDRow.did_type == DIDType.FILE.value,
        DIDRow.is_latest.is_(True),
        DIDRow.deleted_at.is_(None),
    ]
    if unless is not None:
        conditions.append(~unless(DIDRow.id))
    if excluding is not None:
        # NULL (a meta key the file lacks) counts as "not excluded"
        conditions.append(not_(func.coalesce(compile_filter(excluding), false())))
    stmt = select(DIDRow).where(*conditions).order_by(DIDRow.id).limit(limit)
    if fields:
        return [
            FileMatch(row.id, tuple(_value(row, k) for k in fields))
            for row in session.scalars(stmt)
        ]
    return [FileMatch(i) for i in session.scalars(stmt.with_only_columns(DIDRow.id))]


__all__ = [
    "REF_COLUMNS",
    "IdColumn",
    "IdCondition",
    "Rows",
    "check_filter",
    "file_ref",
    "file_refs",
    "is_field",
    "matching_files",
    "ref",
    "ref_from",
    "with_files",
]
