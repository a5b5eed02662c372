"""The filter language under generated input: any text either parses or is ``InvalidInput``
(never another exception); what parses compiles on both SQL dialects; generated valid filters
run on a real catalog (SQLite and PostgreSQL) without an error.

The language has no printer, so there is no text round trip to check; the parsed tree is
checked instead to be the same for a filter and its fully parenthesised form.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from dpps.bdms.archive import Archive
from dpps.catalog.models import DIDRow
from dpps.catalog.query import INT64_MAX, INT64_MIN, compile_filter, parse_filter
from dpps.core.errors import InvalidInput
from tests.bdms.helpers import make_fits
from tests.property.common import CATALOG, PARSER, hostile_text

INT_FIELDS = ["obs_id", "tel_id", "bytes", "version"]
TEXT_FIELDS = ["name", "scope", "product_type", "adler32"]
OPS = ["=", "!=", "<", "<=", ">", ">="]


def _quoted(text: str) -> str:
    quote = "'" if "'" not in text else '"'
    return f"{quote}{text}{quote}"


safe_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="'\"\x00"), max_size=12
)
int_cmp = st.builds(
    lambda f, o, v: f"{f}{o}{v}",
    st.sampled_from(INT_FIELDS),
    st.sampled_from(OPS),
    st.integers(INT64_MIN, INT64_MAX),
)
text_cmp = st.builds(
    lambda f, o, v: f"{f} {o} {_quoted(v)}",
    st.sampled_from(TEXT_FIELDS),
    st.sampled_from(["=", "!=", "like", "not like", "<"]),
    safe_text,
)
meta_value = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["true", "false"]),
    safe_text.map(_quoted),
)
meta_cmp = st.one_of(
    st.builds(
        lambda k, o, v: f"meta.{k} {o} {v}",
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
        st.sampled_from([*OPS, "like"]),
        meta_value,
    ),
    st.builds(
        lambda k, vs: f"meta.{k} in ({', '.join(vs)})",
        st.sampled_from(["q", "run", "note"]),
        st.lists(meta_value, min_size=1, max_size=5),
    ),
)
other_cmp = st.one_of(
    st.sampled_from(["data_level=DL0", "category in (A, SIM)", "did_type=FILE"]),
    st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)).map(lambda d: f"observing_night>={d}"),
    st.datetimes(dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30)).map(
        lambda t: f"time_start<{t.isoformat()}"
    ),
)
comparison = st.one_of(int_cmp, text_cmp, meta_cmp, other_cmp)
valid_filter = st.recursive(
    comparison,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"{a} and {b}", inner, inner),
        st.builds(lambda a, b: f"{a} or {b}", inner, inner),
        inner.map(lambda a: f"not ({a})"),
        inner.map(lambda a: f"({a})"),
    ),
    max_leaves=8,
)


def _shape(node: Any) -> str:
    """The tree without positions (parenthesising shifts them)."""
    return re.sub(r"position=\d+", "", repr(node))


def _compiles_everywhere(text: str) -> None:
    stmt = select(DIDRow.id).where(compile_filter(text))
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        str(stmt.compile(dialect=dialect))


@PARSER
@given(text=st.one_of(hostile_text, valid_filter.map(lambda f: f.replace(" ", "", 1))))
def test_any_text_parses_or_is_invalid_input(text: str, cases: Callable[[Any], None]) -> None:
    cases(text)
    try:
        parse_filter(text)
    except InvalidInput:
        return
    _compiles_everywhere(text)


@PARSER
@given(text=valid_filter)
def test_generated_valid_filters_parse(text: str, cases: Callable[[Any], None]) -> None:
    cases(text)
    node = parse_filter(text)
    assert _shape(parse_filter(f"({text})")) == _shape(node)
    _compiles_everywhere(text)


@pytest.fixture
def filled(archive: Archive, tmp_path: Path) -> Archive:
    for i, meta in enumerate([{"q": "1", "run": "007"}, {"q": "high", "note": "x"}, {}]):
        source = make_fits(tmp_path, f"f{i}.fits", obs_id=100 + i, seed=i)
        archive.ingest([source], "CTAO-N", lfn=f"/ctao/f{i}.fits", meta=meta)
    return archive


@CATALOG
@given(text=valid_filter)
def test_generated_filters_run_on_the_catalog(
    filled: Archive, text: str, cases: Callable[[Any], None]
) -> None:
    cases(text)
    found = filled.list_files(text, limit=10)
    assert len(found) <= 3
    assert filled.count(text) == len(filled.list_files(text, limit=100))
