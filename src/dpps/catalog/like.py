"""A LIKE condition an index can walk: the pattern's literal prefix (and the literal text after
its first ``_``) become range conditions next to the LIKE itself, which stays the judge.

The ranges order text by code point (SQLite's binary order); on PostgreSQL they assume a
collation that does the same, as the prefix range has since it was introduced.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, or_


def like(column: Any, pattern: str) -> ColumnElement[bool]:
    """Case-sensitive LIKE (LFNs are case-sensitive; SQLite runs with case_sensitive_like).

    A literal prefix also becomes a range condition, so that ``name like /ctao/dl0/%`` walks
    the name index instead of scanning every row (350 ms -> milliseconds at 1M files). LFNs
    are full of underscores, which LIKE reads as "any one character": the prefix would end
    at the first one, and ``name like /ctao/.../obs_00000031/%`` walked every name of the
    night before reaching that observation (66 ms at 150,000 files, growing with the
    archive). So the literal text after the first ``_`` narrows the range too: a match has at
    that place a character below ``_``, ``_`` itself followed by that text, or a character
    above ``_`` - three ranges whose union holds every match (1.4 ms).
    """
    clause: ColumnElement[bool] = column.like(pattern, escape="\\")
    prefix, wildcard, rest = _literal_prefix(pattern)
    whole = _starting_with(column, prefix)
    if whole is None:
        return clause
    exact = _starting_with(column, prefix + "_" + rest) if wildcard == "_" and rest else None
    if exact is None:
        return and_(whole, clause)
    below = and_(column >= prefix, column < prefix + "_")
    above = and_(column >= prefix + "`", _below(column, prefix))  # "`" follows "_"
    return and_(or_(below, exact, above), clause)


def _starting_with(column: Any, prefix: str) -> ColumnElement[bool] | None:
    """``column`` starts with ``prefix``, as a range an index can walk (None: no such range,
    the prefix is empty or ends with the last character there is)."""
    if not prefix or prefix[-1] == chr(0x10FFFF):  # no character after the last one
        return None
    return and_(column >= prefix, _below(column, prefix))


def _below(column: Any, prefix: str) -> ColumnElement[bool]:
    """``column`` sorts before every text past those starting with ``prefix`` (not empty,
    not ending with U+10FFFF)."""
    after = ord(prefix[-1]) + 1
    upper = prefix[:-1] + chr(0xE000 if 0xD800 <= after <= 0xDFFF else after)  # no surrogates
    below: ColumnElement[bool] = column < upper
    return below


def _literal_prefix(pattern: str) -> tuple[str, str, str]:
    """The pattern's literal text before its first wildcard, that wildcard ("" if none) and
    the literal text between it and the next one."""
    parts: list[list[str]] = [[]]
    stops: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            parts[-1].append(next(chars, ""))
        elif ch in "%_":
            stops.append(ch)
            if len(stops) == 2:
                break
            parts.append([])
        else:
            parts[-1].append(ch)
    texts = ["".join(p) for p in parts] + [""]
    return texts[0], (stops or [""])[0], texts[1]
