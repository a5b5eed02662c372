"""Metadata a person gives: the one guard every value passes before it reaches the catalog.

``--meta key=value`` on the command line (ingest, ``dpps meta set``, the REST upload's ``meta=``
parameter, a WMS output's declared metadata) and JSON values (REST bulk registration bodies)
enter here. Two rules keep the catalog honest:

* **Nothing is changed silently.** A ``--meta`` value becomes a number only if it is written
  the way the number is written back (``42``, ``-3``, ``1.5``, ``1e-05``): then storing it and
  reading it back gives the same text. Anything else stays text exactly as typed (``1.10``,
  ``007``, ``00000000``, ``+5``, ``1e3``). ``true``/``false`` (lower case) are booleans.
* **Nothing poisons the catalog.** JSON has no NaN or infinity; Python would write ``Infinity``
  and the database then cannot read that row's metadata, so every ``meta.*`` filter of the
  whole catalog fails. ``inf``, ``nan``, ``1e999`` are refused, naming the key.

Keys are checked too: the filter language's pattern, and never a field of the file itself
(``RESERVED_KEYS``: ``bytes``, ``adler32``...), which would stand beside the real value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from dpps.bdms.metadata import INDEXED_KEYS, convert_indexed, validate_meta_key
from dpps.core.errors import InvalidInput

__all__ = [
    "INT64",
    "MAX_META_DEPTH",
    "RESERVED_KEYS",
    "parse_user_meta",
    "refuse_reserved",
    "typed_value",
    "validate_free_meta",
    "validate_meta_value",
]

#: The file's own fields (the non-indexed fields of the filter language) and what ingest writes
#: itself: a free key of that name would stand beside the real value and be mistaken for it.
RESERVED_KEYS = frozenset(
    {
        "scope",
        "name",
        "version",
        "did_type",
        "bytes",
        "adler32",
        "blake3",
        "created_at",
        "expires_at",
        "deleted_at",
        "format",
    }
)
#: Nesting of a JSON metadata value (lists and objects): deeper is refused.
MAX_META_DEPTH = 8
#: An integer written as Python writes it back: no sign but '-', no leading zero, no '-0'.
_CANONICAL_INT = re.compile(r"^(0|-?[1-9][0-9]{0,18})$")
#: Integers the catalog databases compare exactly (64-bit); larger ones stay text (CLI) or are
#: refused (JSON), since the databases would read them as rounded floats.
INT64 = range(-(2**63), 2**63)


def refuse_reserved(key: str) -> None:
    """A free key named like one of the file's own fields is refused: ``meta.bytes`` beside
    ``bytes`` would be read as the size by whoever finds it first."""
    if key in RESERVED_KEYS:
        names = ", ".join(sorted(RESERVED_KEYS))
        raise InvalidInput(
            f"metadata key {key!r} is reserved: it names a field of the file itself ({names})"
        )


def _not_finite(key: str, text: str) -> InvalidInput:
    return InvalidInput(
        f"metadata {key}: {text} is not a finite number, and JSON (which the catalog stores) "
        "has no NaN or infinity; write it as words instead (e.g. 'unbounded')"
    )


def typed_value(key: str, raw: str) -> Any:
    """A ``--meta`` value: a boolean or number only where that keeps its text (see the module
    docstring), else the text unchanged; a non-finite number is ``InvalidInput``."""
    if raw in ("true", "false"):
        return raw == "true"
    if _CANONICAL_INT.match(raw) and int(raw) in INT64:
        return int(raw)
    try:
        number = float(raw)
    except ValueError:
        return raw
    if not math.isfinite(number):
        raise _not_finite(key, repr(raw))
    return number if repr(number) == raw else raw


def validate_meta_value(key: str, value: Any, _depth: int = 0) -> Any:
    """A JSON metadata value (REST body, sidecar): returned unchanged, or ``InvalidInput``
    naming the key for a non-finite number, a non-JSON type or nesting past the limit."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if value not in INT64:
            raise InvalidInput(f"metadata {key}: integer beyond 64 bits (send it as text)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _not_finite(key, repr(value))
        return value
    if isinstance(value, list | tuple | Mapping):
        if _depth >= MAX_META_DEPTH:
            raise InvalidInput(f"metadata {key}: nested deeper than {MAX_META_DEPTH} levels")
        if isinstance(value, Mapping):
            if not all(isinstance(inner, str) for inner in value):
                raise InvalidInput(f"metadata {key}: object keys must be text")
            return {k: validate_meta_value(key, v, _depth + 1) for k, v in value.items()}
        return [validate_meta_value(key, v, _depth + 1) for v in value]
    raise InvalidInput(f"metadata {key}: a {type(value).__name__} is not a JSON value")


def validate_free_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Free metadata (JSON values) given by a person, key by key: the pattern, not an indexed
    key (those have typed columns), not reserved, and a value ``validate_meta_value`` keeps."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        validate_meta_key(key)
        if key in INDEXED_KEYS:
            raise InvalidInput(f"metadata {key!r} is an indexed key: give it as its column")
        refuse_reserved(key)
        out[key] = validate_meta_value(key, value)
    return out


def parse_user_meta(pairs: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``--meta key=value`` pairs into typed indexed columns and free metadata."""
    columns: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for key, raw in pairs.items():
        validate_meta_key(key)
        if key in INDEXED_KEYS:
            columns[key] = convert_indexed(key, raw)
        else:
            refuse_reserved(key)
            meta[key] = typed_value(key, raw)
    return columns, meta
