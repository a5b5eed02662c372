"""``column IN (ids)`` for the hot paths, written the way each backend parses fastest.

A daemon batch asks for a few hundred ids at a time. As ``IN (...)`` each id is a parameter
of its own, so every batch size gives another statement text, which psycopg must re-parse
(texts over 4 KiB are never cached) and PostgreSQL re-plan: about a tenth of a transfer
daemon's CPU went there. ``= ANY(array)`` is one parameter and one text whatever the count.
SQLite has no arrays and keeps ``IN``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, any_, literal
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def among(session: Session, column: Any, ids: Iterable[int]) -> ColumnElement[bool]:
    """``column`` is one of the integers ``ids`` (an empty set matches nothing)."""
    values = list(ids)
    if session.get_bind().dialect.name == "postgresql":
        # bigint[]: some ids are 64-bit (migration 0008), and an int4 column compares with
        # it through the same index (int4 = int8 is in the btree's integer family).
        return column == any_(literal(values, ARRAY(BigInteger)))  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


__all__ = ["among"]
