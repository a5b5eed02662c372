"""The metadata filter language: ``obs_id>=100 and data_level=DL0`` -> a WHERE clause on dids.

Users, the CLI, the REST API and WMS transformations all select files with the same small
language, so it lives here once. Text is tokenized and parsed by hand (recursive descent, no
dependency), checked against the typed table ``FIELDS`` while parsing, so every mistake is
reported with its 1-based position before any SQL exists, and then compiled to SQLAlchemy
expressions. Values only ever travel as bound parameters: the language cannot inject SQL.

Grammar (keywords are case-insensitive; ``or`` binds loosest, then ``and``, then ``not``)::

    filter := [or] ; or := and ("or" and)* ; and := not ("and" not)*
    not    := "not" not | "(" or ")" | field ("=" | "!=" | "<" | "<=" | ">" | ">=") value
            | field ["not"] "like" value | field ["not"] "in" "(" value ("," value)* ")"
    field  := a name of FIELDS | "meta." key   (key matches ^[a-z][a-z0-9_]{0,63}$)
    value  := bare word | "double-quoted" | 'single-quoted'

Limits (``InvalidInput``, never an internal error): integers are 64-bit signed, parentheses and
``not`` nest at most ``MAX_DEPTH`` deep, a filter compares at most ``MAX_VALUES`` values. Any
of these unbounded would reach the database driver (overflow) or Python (recursion) as a crash.

See docs/query-language.md for the user-facing description.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import math
import operator as op
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, false, func, not_, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import bindparam, case
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Boolean, String

from dpps.catalog.like import like
from dpps.catalog.models import DIDRow
from dpps.core.errors import InvalidInput
from dpps.core.states import Category, DataLevel, DIDType

Scalar = int | float | str | bool | dt.date | dt.datetime

META_PREFIX: Final = "meta."
META_KEY_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PUNCT: Final = "()=!<>,\"'"
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "like"})
#: Nesting of parentheses and ``not`` (each level costs a few Python frames while parsing and
#: compiling; no real filter needs more than a handful).
MAX_DEPTH: Final = 32
#: Values compared in one filter (``in`` lists included): each is a bound parameter, and the
#: databases cap those (SQLite at 32766 per statement).
MAX_VALUES: Final = 2000
#: The catalog's integer columns are 64-bit signed.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


class QuerySyntaxError(InvalidInput):
    """A filter that cannot be parsed or typed; ``position`` is 1-based, ``detail`` one line."""

    def __init__(self, text: str, position: int, detail: str, *, kind: str = "syntax error"):
        self.text, self.position, self.detail = text, position, detail
        caret = " " * (position - 1) + "^"
        super().__init__(f"{kind} at position {position}: {detail}\n  {text}\n  {caret}")


@dataclass(frozen=True, slots=True)
class Field:
    """One queryable field: the column it reads, its kind and the help text users see."""

    name: str
    column: InstrumentedAttribute[Any]
    kind: str  # int | str | date | datetime | enum
    description: str
    choices: type[StrEnum] | None = None


#: The user-visible fields, in the order ``describe_fields`` lists them.
_FIELD_LIST: Final = (
    Field("scope", DIDRow.scope, "str", "scope of the DID, e.g. ctao"),
    Field("name", DIDRow.name, "str", "logical file name (LFN), e.g. /ctao/dl0/north/..."),
    Field("version", DIDRow.version, "int", "version number; mentioning it shows all versions"),
    Field("did_type", DIDRow.did_type, "enum", "FILE, DATASET or CONTAINER", DIDType),
    Field("bytes", DIDRow.bytes, "int", "file size in bytes (1e6 is accepted)"),
    Field("adler32", DIDRow.adler32, "str", "adler32 checksum, 8 hex digits"),
    Field("blake3", DIDRow.blake3, "str", "BLAKE3 checksum, 64 hex digits"),
    Field("data_level", DIDRow.data_level, "enum", "data level, e.g. DL0, DL3", DataLevel),
    Field("category", DIDRow.category, "enum", "processing category A, B, C, SIM", Category),
    Field("obs_id", DIDRow.obs_id, "int", "observation id"),
    Field("tel_id", DIDRow.tel_id, "int", "telescope id"),
    Field("observing_night", DIDRow.observing_night, "date", "night of observation, YYYY-MM-DD"),
    Field("time_start", DIDRow.time_start, "datetime", "start of the data, UTC"),
    Field("time_end", DIDRow.time_end, "datetime", "end of the data, UTC"),
    Field("product_type", DIDRow.product_type, "str", "product type, e.g. 'event list'"),
    Field("created_at", DIDRow.created_at, "datetime", "registration time in the catalog, UTC"),
    Field("expires_at", DIDRow.expires_at, "datetime", "lifetime end (simulations), UTC"),
    Field("deleted_at", DIDRow.deleted_at, "datetime", "deletion time (with include_deleted)"),
)
FIELDS: Final[dict[str, Field]] = {f.name: f for f in _FIELD_LIST}


def describe_fields() -> list[tuple[str, str, str]]:
    """(name, type, description) of every field, for ``dpps ls --help``, docs and the API."""
    meta = ("meta.<key>", "json", "free metadata; numbers compare as numbers, else text")
    return [*((f.name, f.kind, f.description) for f in FIELDS.values()), meta]


@dataclass(frozen=True, slots=True)
class MatchAll:
    """The empty filter."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op values``, values converted to the field's type; for ``meta.<key>`` fields
    ``meta_kind`` (string, float, boolean) says how to read the JSON, decided once here."""

    field: str
    op: str  # = != < <= > >= like, not like, in, not in
    values: tuple[Scalar, ...]
    position: int
    meta_kind: str | None = None


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


Node = MatchAll | Comparison | Not | And | Or


def iter_comparisons(node: Node) -> Iterator[Comparison]:
    """Every comparison in ``node``, e.g. to check whether a filter mentions ``version``."""
    if isinstance(node, Comparison):
        yield node
    elif isinstance(node, Not):
        yield from iter_comparisons(node.operand)
    elif isinstance(node, And | Or):
        for child in node.operands:
            yield from iter_comparisons(child)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # word | string | op | ( | ) | , | end
    text: str
    position: int  # 1-based

    def is_keyword(self, word: str) -> bool:
        return self.kind == "word" and self.text.lower() == word


#: Characters no database takes in a text value: NUL (PostgreSQL refuses it) and lone
#: surrogates (what undecodable command-line bytes become; they are not UTF-8).
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")


def _tokenize(text: str) -> list[_Token]:
    if bad := _UNSTORABLE.search(text):
        detail = f"character {bad.group()!r} cannot be part of a filter"
        raise QuerySyntaxError(
            text.encode("utf-8", "backslashreplace").decode(), bad.start() + 1, detail
        )
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "(),":
            tokens.append(_Token(c, c, i + 1))
            i += 1
        elif c in "<>!=":
            op = text[i : i + 2] if text[i : i + 2] in ("<=", ">=", "!=") else c
            if op == "!":
                raise QuerySyntaxError(text, i + 1, "unexpected '!': did you mean '!='?")
            tokens.append(_Token("op", op, i + 1))
            i += len(op)
        elif c in "\"'":
            end = text.find(c, i + 1)
            if end < 0:
                raise QuerySyntaxError(text, i + 1, f"unterminated string: missing closing {c}")
            tokens.append(_Token("string", text[i + 1 : end], i + 1))
            i = end + 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _PUNCT:
                i += 1
            tokens.append(_Token("word", text[start:i], start + 1))
    tokens.append(_Token("end", "", n + 1))
    return tokens


def _show(tok: _Token) -> str:
    if tok.kind == "end":
        return "end of filter"
    return repr(tok.text) if tok.kind != "string" else f"string {tok.text!r}"


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.i = text, _tokenize(text), 0
        self.depth = self.values = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        self.i += 1
        return self.tokens[self.i - 1]

    def fail(self, tok: _Token, detail: str, kind: str = "syntax error") -> QuerySyntaxError:
        return QuerySyntaxError(self.text, tok.position, detail, kind=kind)

    def parse(self) -> Node:
        if self.tok.kind == "end":
            return MatchAll()
        node = self.or_expr()
        if self.tok.kind != "end":
            raise self.fail(self.tok, f"expected 'and', 'or' or the end, not {_show(self.tok)}")
        return node

    def or_expr(self) -> Node:
        return self.chain("or", self.and_expr, Or)

    def and_expr(self) -> Node:
        return self.chain("and", self.not_expr, And)

    def chain(self, word: str, operand: Callable[[], Node], cls: type[And | Or]) -> Node:
        items = [operand()]
        while self.tok.is_keyword(word):
            self.advance()
            items.append(operand())
        return items[0] if len(items) == 1 else cls(tuple(items))

    def not_expr(self) -> Node:
        if self.tok.is_keyword("not") or self.tok.kind == "(":
            if self.depth >= MAX_DEPTH:
                detail = f"parentheses and 'not' nest more than {MAX_DEPTH} deep"
                raise self.fail(self.tok, detail, "invalid filter")
            self.depth += 1
            try:
                return self.nested()
            finally:
                self.depth -= 1
        return self.comparison()

    def nested(self) -> Node:
        if self.tok.is_keyword("not"):
            self.advance()
            return Not(self.not_expr())
        opening = self.advance()
        node = self.or_expr()
        if self.tok.kind != ")":
            detail = f"expected ')' to close the '(' at position {opening.position}"
            raise self.fail(self.tok, f"{detail}, got {_show(self.tok)}")
        self.advance()
        return node

    def comparison(self) -> Node:
        ftok = self.tok
        if ftok.kind != "word" or ftok.text.lower() in _KEYWORDS:
            raise self.fail(ftok, f"expected a field name, got {_show(ftok)}")
        self.advance()
        field, meta_key = self.resolve_field(ftok)
        optok = self.tok
        if optok.kind == "op":
            op = self.advance().text
        else:
            if negated := optok.is_keyword("not"):
                self.advance()
            if not (self.tok.is_keyword("in") or self.tok.is_keyword("like")):
                expected = "'in' or 'like'" if negated else "an operator (= != < <= > >= like in)"
                raise self.fail(self.tok, f"expected {expected} after {ftok.text!r}")
            op = ("not " if negated else "") + self.advance().text.lower()
        raw = self.in_list(op) if op.endswith("in") else [self.value(op)]
        if meta_key is not None:
            return self.meta_comparison(ftok, op, raw)
        assert field is not None
        if op.endswith("like") and field.kind != "str":
            raise self.fail(optok, f"'like' needs a text field; {field.name} is {field.kind}")
        if field.kind == "enum" and op in ("<", "<=", ">", ">="):
            detail = f"{field.name} supports only =, !=, in, not in"
            raise self.fail(optok, detail, "invalid filter")
        values = tuple(self.convert(field, t) for t in raw)
        return Comparison(field.name, op, values, ftok.position)

    def resolve_field(self, tok: _Token) -> tuple[Field | None, str | None]:
        if tok.text.startswith(META_PREFIX):
            key = tok.text[len(META_PREFIX) :]
            if not META_KEY_RE.match(key):
                where = _Token(tok.kind, key, tok.position + len(META_PREFIX))
                detail = f"invalid metadata key {key!r}: use a lowercase letter, then a-z 0-9 _"
                raise self.fail(where, detail + " (64 at most)", "invalid filter")
            return None, key
        if tok.text in FIELDS:
            return FIELDS[tok.text], None
        close = difflib.get_close_matches(tok.text.lower(), FIELDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        valid = ", ".join([*FIELDS, "meta.<key>"])
        raise self.fail(tok, f"unknown field {tok.text!r}{hint}; valid: {valid}", "invalid filter")

    def value(self, op: str) -> _Token:
        tok = self.tok
        if tok.kind not in ("word", "string"):
            raise self.fail(tok, f"expected a value after {op!r}, got {_show(tok)}")
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.fail(tok, f"more than {MAX_VALUES} values in one filter", "invalid filter")
        return self.advance()

    def in_list(self, op: str) -> list[_Token]:
        if self.tok.kind != "(":
            raise self.fail(self.tok, f"expected '(' after {op!r}, got {_show(self.tok)}")
        self.advance()
        if self.tok.kind == ")":
            raise self.fail(self.tok, f"{op!r} needs at least one value")
        items = [self.value(op)]
        while self.tok.kind == ",":
            self.advance()
            items.append(self.value(op))
        if self.tok.kind != ")":
            raise self.fail(self.tok, f"expected ',' or ')' in list, got {_show(self.tok)}")
        self.advance()
        return items

    def convert(self, field: Field, tok: _Token) -> Scalar:
        try:
            return _CONVERTERS[field.kind](field, tok.text)
        except ValueError as exc:
            detail = f"{field.name} expects {exc}, got {tok.text!r}"
            raise self.fail(tok, detail, "invalid value") from None

    def meta_comparison(self, ftok: _Token, op: str, raw: list[_Token]) -> Node:
        """Type a ``meta.<key>`` comparison from its literals, since JSON has no schema.

        Quoted values are text; bare ``true``/``false`` are booleans; bare numbers are numbers
        (compared as floats, which JSON numbers are). A list mixing kinds compares as text.
        """
        numbers = [_number(t.text) if t.kind == "word" else None for t in raw]
        bools = [t.text.lower() if t.kind == "word" else "" for t in raw]
        values: tuple[Scalar, ...]
        if op.endswith("like"):
            kind, values = "string", tuple(t.text for t in raw)
        elif all(b in ("true", "false") for b in bools) and op in ("=", "!=", "in", "not in"):
            kind, values = "boolean", tuple(b == "true" for b in bools)
        elif all(x is not None for x in numbers):
            kind, values = "float", tuple(float(x) for x in numbers if x is not None)
        else:
            kind, values = "string", tuple(t.text for t in raw)
        return Comparison(ftok.text, op, values, ftok.position, meta_kind=kind)


def _number(text: str) -> float | None:
    with contextlib.suppress(ValueError):
        if math.isfinite(x := float(text)):
            return x
    return None


def _to_int(_field: Field, text: str) -> int:
    x = _number(text)
    if x is None or not x.is_integer():
        raise ValueError("an integer")
    digits = text.lstrip("+-")
    if (
        digits.isdigit() and len(digits.lstrip("0")) > 19
    ):  # int() of thousands of digits is itself slow
        raise ValueError(f"an integer from {INT64_MIN} to {INT64_MAX}")
    value = int(text) if digits.isdigit() else int(x)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"an integer from {INT64_MIN} to {INT64_MAX}")
    return value


def _to_date(_field: Field, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError("a date YYYY-MM-DD") from None


def _to_datetime(_field: Field, text: str) -> dt.datetime:
    """ISO 8601; a date alone means midnight; an offset is converted, the catalog is UTC."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("a UTC date-time YYYY-MM-DDTHH:MM[:SS]") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _to_enum(field: Field, text: str) -> str:
    choices = {c.value.lower(): c.value for c in field.choices or ()}
    if text.lower() not in choices:
        raise ValueError("one of " + ", ".join(choices.values()))
    return choices[text.lower()]


_CONVERTERS: dict[str, Callable[[Field, str], Scalar]] = dict(
    int=_to_int, str=lambda _f, text: text, date=_to_date, datetime=_to_datetime, enum=_to_enum
)


def parse_filter(text: str) -> Node:
    """Parse and type-check ``text``; raise QuerySyntaxError (an InvalidInput) with position."""
    return _Parser(text).parse()


_OPS: Final = {"=": op.eq, "<": op.lt, "<=": op.le, ">": op.gt, ">=": op.ge}


class _JSONType(FunctionElement[str]):
    """The JSON type name of ``dids.meta[key]``: 'integer'/'real'/'true'/... on SQLite,
    'number'/'boolean'/... on PostgreSQL (the guard below accepts both vocabularies)."""

    type = String()
    inherit_cache = True

    def __init__(self, key: str) -> None:
        super().__init__(DIDRow.meta, bindparam("json_key", key, unique=True))


@compiles(_JSONType)
def _json_type(element: _JSONType, compiler: SQLCompiler, **kw: Any) -> str:
    meta, key = (compiler.process(c, **kw) for c in element.clauses)
    if compiler.dialect.name == "postgresql":
        return f"json_typeof({meta} -> {key})"
    return f"json_type({meta}, '$.' || {key})"


class _MetaReadable(FunctionElement[bool]):
    """Whether ``dids.meta`` is JSON the database can read. SQLite stores JSON as text, and a
    row written before the catalog wrote JSON strictly may hold ``Infinity`` or ``NaN``: its
    JSON functions then fail the whole query, so one such row broke every ``meta.*`` filter.
    Such a row simply matches no metadata comparison. PostgreSQL's json type never holds one."""

    type = Boolean()
    inherit_cache = True

    def __init__(self) -> None:
        super().__init__(DIDRow.meta)


@compiles(_MetaReadable)
def _meta_readable(element: _MetaReadable, compiler: SQLCompiler, **kw: Any) -> str:
    if compiler.dialect.name == "sqlite":
        return f"json_valid({compiler.process(element.clauses, **kw)})"
    return "true"


_NUMBER, _BOOLEAN = ("integer", "real", "number"), ("true", "false", "boolean")
_JSON_TYPES: Final = {"float": _NUMBER, "boolean": _BOOLEAN}


def _meta_column(key: str, kind: str) -> Any:
    """``meta[key]`` read as ``kind``. Numbers and booleans are read only where the JSON value
    has that type: otherwise SQLite casts 'high' to 0.0 and PostgreSQL aborts the query."""
    value = getattr(DIDRow.meta[key], f"as_{kind}")()
    typed = value if kind == "string" else case((_JSONType(key).in_(_JSON_TYPES[kind]), value))
    return case((_MetaReadable(), typed))  # CASE, not AND: SQLite evaluates only what it needs


def _compile_comparison(node: Comparison) -> ColumnElement[bool]:
    column: Any
    if node.meta_kind is None:
        column = FIELDS[node.field].column
    else:
        column = _meta_column(node.field[len(META_PREFIX) :], node.meta_kind)
    op = "=" if node.op == "!=" else node.op.removeprefix("not ")
    if op in _OPS:
        clause = _OPS[op](column, node.values[0])
    elif op == "in":
        clause = column.in_(node.values)
    else:
        clause = like(column, str(node.values[0]))
    return clause if op == node.op else _negate(clause)


def _negate(clause: ColumnElement[bool]) -> ColumnElement[bool]:
    """Two-valued NOT: a comparison with a missing value is false, so its negation is true
    (``not tel_id=1`` includes files without a tel_id; SQL's NOT would drop them too)."""
    return not_(func.coalesce(clause, false()))


def _compile(node: Node) -> ColumnElement[bool]:
    if isinstance(node, MatchAll):
        return true()
    if isinstance(node, Comparison):
        return _compile_comparison(node)
    if isinstance(node, Not):
        return _negate(_compile(node.operand))
    if isinstance(node, And):
        return and_(*(_compile(child) for child in node.operands))
    return or_(*(_compile(child) for child in node.operands))


def compile_filter(text_or_node: str | Node) -> ColumnElement[bool]:
    """A WHERE clause over ``DIDRow``, with no defaults (all versions, types, deleted rows)."""
    node = parse_filter(text_or_node) if isinstance(text_or_node, str) else text_or_node
    return _compile(node)


def select_dids(
    filter_text: str,
    *,
    did_type: str | None = "FILE",
    include_all_versions: bool = False,
    include_deleted: bool = False,
    limit: int | None = 100,
    offset: int = 0,
    order_by: str = "name",
) -> Select[DIDRow]:
    """The SELECT behind ``dpps ls`` and ``GET /dids``: filter plus the archive's defaults.

    Defaults: latest versions only (unless the filter mentions ``version`` or
    ``include_all_versions``), no deleted DIDs, files only (a ``did_type`` in the filter takes
    precedence over the argument). ``order_by`` is a field name, ``-`` prefixed for
    descending; ties are always broken by (name, version, scope, id) so pages never overlap.
    """
    node = parse_filter(filter_text)
    mentioned = {c.field for c in iter_comparisons(node)}
    stmt = select(DIDRow).where(compile_filter(node))
    if did_type is not None and "did_type" not in mentioned:
        try:
            stmt = stmt.where(DIDRow.did_type == _to_enum(FIELDS["did_type"], did_type))
        except ValueError as exc:
            raise InvalidInput(f"did_type must be {exc}, not {did_type!r}") from None
    if not (include_all_versions or "version" in mentioned):
        stmt = stmt.where(DIDRow.is_latest.is_(True))
    if not include_deleted:
        stmt = stmt.where(DIDRow.deleted_at.is_(None))
    key = order_by.removeprefix("-")
    if key not in FIELDS:
        raise InvalidInput(f"cannot order by {order_by!r}; use one of {', '.join(FIELDS)}")
    column = FIELDS[key].column
    stmt = stmt.order_by(column.desc() if order_by.startswith("-") else column.asc())
    ties = (DIDRow.name, DIDRow.version, DIDRow.scope, DIDRow.id)
    stmt = stmt.order_by(*(c for c in ties if c is not column))
    if not (0 <= offset <= INT64_MAX and (limit is None or 0 <= limit <= INT64_MAX)):
        detail = f"must be >= 0 and at most {INT64_MAX}, got {limit} and {offset}"
        raise InvalidInput(f"limit and offset {detail}")
    return stmt.limit(limit).offset(offset)
