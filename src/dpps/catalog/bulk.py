"""Many rows into one table, the fastest way each backend offers.

A rule over 100,000 files queues 200,000 locks and transfers in one evaluation. On SQLite a
Core ``executemany`` is already close to the database's own speed; on PostgreSQL the same
statement costs a round of parsing and planning per batch, and ``COPY`` is several times
faster. Rows that may collide with existing ones (``ignore_conflicts``: a partial unique
index, say) are copied into a temporary table first and inserted from there with
``ON CONFLICT DO NOTHING``, so the same rows are skipped on both backends. Everything happens
on the session's own connection, inside its transaction.

Rows whose new ids the caller needs (registration's DIDs, which replicas, events and
attachments then point to) go through ``insert_returning_ids``: on PostgreSQL the ids are
taken from the table's own sequence in one statement and the rows copied with them, so that
COPY (which returns nothing) serves there too; concurrent writers draw from the same sequence
and never collide. Elsewhere it is ``INSERT ... RETURNING`` in parameter order.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable, Mapping, Sequence
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
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and len(rows) >= COPY_FROM:
        _copy(session, table, _completed(table, rows), ignore_conflicts)
        return
    if dialect == "sqlite" and len(rows) >= COPY_FROM:
        _executemany(session, table, _completed(table, rows), ignore_conflicts)
        return
    stmt: Any = insert(table)
    if ignore_conflicts:
        stmt = (postgresql if dialect == "postgresql" else sqlite).insert(table)
        stmt = stmt.on_conflict_do_nothing()
    session.execute(stmt, list(rows))


def insert_returning_ids(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Insert ``rows`` (all with the same keys, no ``id``) into ``table``, whose primary key
    is an integer ``id``; returns the new ids in the order of ``rows``. The caller commits."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and len(rows) < COPY_FROM:
        stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(session.scalars(stmt, list(rows)))
    ids = reserve_ids(session, table, len(rows))
    insert_rows(session, table, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)])
    return ids


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
    stmt = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")
    return sorted(session.scalars(stmt, {"table": table.name, "n": n}))


def _completed(table: Table, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows with the Python-side column defaults an INSERT would apply (COPY does not)."""
    filled: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if column.name in rows[0] or column.primary_key or default is None:
            continue
        if getattr(default, "is_scalar", False):
            filled[column.name] = default.arg  # type: ignore[attr-defined]
        elif getattr(default, "is_callable", False):
            filled[column.name] = default.arg(None)  # type: ignore[attr-defined]
    return [{**filled, **row} for row in rows]


def _executemany(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], ignore_conflicts: bool
) -> None:
    """SQLite's own ``executemany`` on the session's connection: the values converted as
    SQLAlchemy would store them (its bind processors; naive dates and times as ISO text,
    the same text, faster), without SQLAlchemy's per-row parameter handling, which cost a
    registration chunk twice what SQLite took to write it."""
    dialect = session.get_bind().dialect
    columns = list(rows[0])
    convert = [_sqlite_converter(table.c[c].type, dialect) for c in columns]
    params = [
        tuple(
            v if f is None or v is None else f(v)
            for f, v in zip(convert, [row[c] for c in columns], strict=True)
        )
        for row in rows
    ]
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
        return lambda v: v.isoformat(" ", "microseconds") if v.tzinfo is None else slow(v)  # type: ignore[misc]
    if isinstance(kind, Date):
        return lambda v: v.isoformat()
    processor: Callable[[Any], Any] | None = kind.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _copy(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], ignore_conflicts: bool
) -> None:
    columns = list(rows[0])
    documents = [c for c in columns if isinstance(table.c[c].type, JSON)]
    if documents:  # COPY takes JSON as text, serialised as an INSERT would (strictly)
        rows = [{**row, **{c: strict_json(row[c]) for c in documents}} for row in rows]
    names = ", ".join(f'"{c}"' for c in columns)
    raw = session.connection().connection.driver_connection  # psycopg, in this transaction
    assert raw is not None
    target = f'"{table.name}"'
    try:
        _run_copy(raw, target, names, columns, rows, ignore_conflicts, table.name)
    except Exception as exc:  # the driver's own errors, as SQLAlchemy raises them elsewhere
        import psycopg

        if not isinstance(exc, psycopg.Error):
            raise
        raise DBAPIError.instance(
            f"COPY {target}", None, exc, psycopg.Error, dialect=session.get_bind().dialect
        ) from None


def _run_copy(
    raw: Any,
    target: str,
    names: str,
    columns: list[str],
    rows: Sequence[Mapping[str, Any]],
    ignore_conflicts: bool,
    table_name: str,
) -> None:
    with raw.cursor() as cursor:
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
            for row in rows:
                copy.write_row([row[c] for c in columns])
        if ignore_conflicts:
            cursor.execute(
                f"INSERT INTO {target} ({names}) SELECT {names} FROM {staging} "
                "ON CONFLICT DO NOTHING"
            )


__all__ = ["insert_returning_ids", "insert_rows", "reserve_ids"]
