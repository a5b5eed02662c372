"""Many rows into one table, the fastest way each backend offers.

A rule over 100,000 files queues 200,000 locks and transfers in one evaluation, and an
observing night registers hundreds of thousands of files. On PostgreSQL an ``executemany``
costs a round of parsing and planning per batch, and ``COPY`` is several times faster. On
SQLite a Core ``executemany`` spends more time in SQLAlchemy's per-row parameter handling
than SQLite takes to write the rows, so the rows go to the driver's own ``executemany``,
converted as SQLAlchemy would store them. Small batches go through an ordinary INSERT. Rows
that may collide with existing ones (``ignore_conflicts``: a partial unique index, say) are
skipped on both backends (on PostgreSQL, copied into a temporary table first and inserted
from there with ``ON CONFLICT DO NOTHING``). Everything happens on the session's own
connection, inside its transaction.

Rows whose new ids the caller needs (registration's DIDs, which replicas, events and
attachments then point to) are given them before they are written, by ``reserve_ids``: on
PostgreSQL from the table's own sequence in one statement, so that COPY (which returns
nothing) serves there too and concurrent writers never collide; on SQLite after the highest
(``reserve_ids`` says why that is safe there).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON, Date, DateTime, Table, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from dpps.catalog.engine import strict_json

#: Fewer rows go through an ordinary INSERT (a temporary table per transaction is not worth
#: it); more go through COPY on PostgreSQL and the driver's executemany on SQLite.
COPY_FROM = 200


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    ignore_conflicts: bool = False,
) -> None:
    """Insert ``rows`` (all with the same keys) into ``table``; the caller commits."""
    if rows:
        columns = list(rows[0])
        values = [[row[c] for c in columns] for row in rows]
        insert_values(session, table, columns, values, ignore_conflicts=ignore_conflicts)


def insert_values(
    session: Session,
    table: Table,
    columns: Sequence[str],
    values: Sequence[Sequence[Any]],
    *,
    ignore_conflicts: bool = False,
) -> None:
    """``insert_rows`` for rows given as value lists in the order of ``columns``: the hot
    paths (registration, events) build them directly, without a mapping per row."""
    if not values:
        return
    columns, values = _completed(table, columns, values)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and len(values) >= COPY_FROM:
        _copy(session, table, columns, values, ignore_conflicts)
        return
    if dialect == "sqlite" and len(values) >= COPY_FROM:
        _executemany(session, table, columns, values, ignore_conflicts)
        return
    stmt: Any = insert(table)
    if ignore_conflicts:
        stmt = (postgresql if dialect == "postgresql" else sqlite).insert(table)
        stmt = stmt.on_conflict_do_nothing()
    session.execute(stmt, [dict(zip(columns, value, strict=True)) for value in values])


def reserve_ids(session: Session, table: Table, n: int) -> list[int]:
    """``n`` new ids for ``table`` (integer primary key ``id``), ascending.

    PostgreSQL: from the table's sequence, ids no other transaction will be given, whether
    this one commits or not. SQLite: the ``n`` after the highest, the ids SQLite itself would
    give. There is one writer at a time and the caller is it (or becomes it with its first
    write; should another writer have committed since this transaction's snapshot, that
    write fails as a whole): no one else can take them before the commit. SQLite has no
    ordered ``RETURNING`` of many rows, and SQLAlchemy sends such an INSERT row by row (a
    chunk of 500 files took 20 times as long as the others' rows).
    """
    if session.get_bind().dialect.name != "postgresql":
        last = session.scalar(select(func.max(table.c.id))) or 0
        return list(range(last + 1, last + 1 + n))
    stmt = text(
        "SELECT array_agg(nextval(pg_get_serial_sequence(:table, 'id'))) "
        "FROM generate_series(1, :n)"
    )
    return sorted(session.scalar(stmt, {"table": table.name, "n": n}) or [])


def _completed(
    table: Table, columns: Sequence[str], values: Sequence[Sequence[Any]]
) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
    """The columns and values with the Python-side column defaults an INSERT would apply
    (COPY and the driver's executemany do not)."""
    filled: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if column.name in columns or column.primary_key or default is None:
            continue
        if getattr(default, "is_scalar", False):
            filled[column.name] = default.arg  # type: ignore[attr-defined]
        elif getattr(default, "is_callable", False):
            filled[column.name] = default.arg(None)  # type: ignore[attr-defined]
    if not filled:
        return columns, values
    extra = list(filled.values())
    return [*columns, *filled], [[*value, *extra] for value in values]


def _executemany(
    session: Session,
    table: Table,
    columns: Sequence[str],
    values: Sequence[Sequence[Any]],
    ignore_conflicts: bool,
) -> None:
    """SQLite's own ``executemany`` on the session's connection: the values converted as
    SQLAlchemy would store them (its bind processors; naive dates and times as ISO text,
    the same text, faster, once per distinct value), without SQLAlchemy's per-row parameter
    handling, which cost a registration chunk twice what SQLite took to write it."""
    dialect = session.get_bind().dialect
    converters = [
        (i, f)
        for i, f in enumerate(_sqlite_converter(table.c[c].type, dialect) for c in columns)
        if f is not None
    ]
    params = []
    for value in values:
        row = list(value)
        for i, f in converters:
            if row[i] is not None:
                row[i] = f(row[i])
        params.append(row)
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" * len(columns))
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    raw = session.connection().connection.driver_connection
    assert raw is not None
    try:
        raw.executemany(sql, params)
    except sqlite3.Error as exc:  # as SQLAlchemy raises the driver's errors elsewhere
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error, dialect=dialect) from None


def _sqlite_converter(kind: Any, dialect: Any) -> Callable[[Any], Any] | None:
    if isinstance(kind, DateTime):
        slow = kind.dialect_impl(dialect).bind_processor(dialect)
        assert slow is not None
        return _once_per_value(
            lambda v: v.isoformat(" ", "microseconds") if v.tzinfo is None else slow(v)
        )
    if isinstance(kind, Date):
        return _once_per_value(lambda v: v.isoformat())
    processor: Callable[[Any], Any] | None = kind.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _once_per_value(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert``, remembering its results: a chunk's rows share a few timestamps."""
    seen: dict[Any, Any] = {}

    def converted(value: Any) -> Any:
        if value not in seen:
            seen[value] = convert(value)
        return seen[value]

    return converted


def _copy(
    session: Session,
    table: Table,
    columns: Sequence[str],
    values: Sequence[Sequence[Any]],
    ignore_conflicts: bool,
) -> None:
    documents = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
    names = ", ".join(f'"{c}"' for c in columns)
    target = f'"{table.name}"'
    rows = _as_text(values, documents) if documents else values
    with driver_cursor(session, f"COPY {target}") as cursor:
        _run_copy(cursor, target, names, rows, ignore_conflicts, table.name)


def _as_text(values: Iterable[Sequence[Any]], documents: Sequence[int]) -> Iterator[list[Any]]:
    """The rows with their JSON documents as text (COPY takes JSON so), serialised as an
    INSERT would (strictly). A generator: each row is converted as COPY sends it, while the
    server already writes the rows before it."""
    for value in values:
        row = list(value)
        for i in documents:
            document = row[i]
            # most files have no checksum beyond adler32 and blake3: no encoder call
            row[i] = "{}" if document == {} else strict_json(document)
        yield row


@contextmanager
def driver_cursor(session: Session, statement: str) -> Iterator[Any]:
    """A cursor of the driver (psycopg) on the session's connection, inside its transaction,
    for what SQLAlchemy cannot send as fast (COPY, a look-up whose plan must not be kept);
    the driver's errors are raised as SQLAlchemy raises them elsewhere (``IntegrityError``,
    ``OperationalError``...), which is what callers catch and retry on."""
    import psycopg

    raw = session.connection().connection.driver_connection
    assert raw is not None
    try:
        with raw.cursor() as cursor:
            yield cursor
    except psycopg.Error as exc:
        dialect = session.get_bind().dialect
        raise DBAPIError.instance(statement, None, exc, psycopg.Error, dialect=dialect) from None


def _run_copy(
    cursor: Any,
    target: str,
    names: str,
    values: Iterable[Sequence[Any]],
    ignore_conflicts: bool,
    table_name: str,
) -> None:
    if ignore_conflicts:
        staging = f'"_bulk_{table_name}_{zlib.crc32(names.encode()):08x}"'  # per column set
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DROP AS "
            f"SELECT {names} FROM {target} WITH NO DATA"
        )
        cursor.execute(f"TRUNCATE {staging}")
        into = staging
    else:
        into = target
    with cursor.copy(f"COPY {into} ({names}) FROM STDIN") as copy:
        for value in values:
            copy.write_row(value)
    if ignore_conflicts:
        cursor.execute(
            f"INSERT INTO {target} ({names}) SELECT {names} FROM {staging} ON CONFLICT DO NOTHING"
        )


__all__ = ["driver_cursor", "insert_rows", "insert_values", "reserve_ids"]
