"""The metadata filter language: parser units, error positions, and execution on both backends.

Execution tests insert one small, varied archive (levels, observations, telescopes, nights,
free metadata, versions, deleted rows, datasets) and compare each filter's result with the
names a plain Python predicate over the same rows selects, so every expectation is readable
next to its filter.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.orm import Session, sessionmaker

from dpps.catalog.engine import make_engine, make_sessionmaker, transaction, upgrade
from dpps.catalog.models import DIDRow
from dpps.catalog.query import (
    FIELDS,
    And,
    Comparison,
    MatchAll,
    Not,
    Or,
    QuerySyntaxError,
    compile_filter,
    describe_fields,
    parse_filter,
    select_dids,
)
from dpps.core.errors import InvalidInput

BY_METADATA = pytest.mark.verifies_usecase("UC-110-1.2.2")
BY_LFN = pytest.mark.verifies_usecase("UC-110-1.2.1")


# --- parser ----------------------------------------------------------------------------------


def cmp(field: str, op: str, *values: Any) -> tuple[str, str, tuple[Any, ...]]:
    return field, op, values


def shape(node: Any) -> Any:
    """The AST without positions, to compare structure compactly."""
    if isinstance(node, Comparison):
        return cmp(node.field, node.op, *node.values)
    if isinstance(node, Not):
        return ("not", shape(node.operand))
    if isinstance(node, And | Or):
        return (type(node).__name__.lower(), *(shape(c) for c in node.operands))
    return node


def test_empty_filter_matches_everything() -> None:
    assert parse_filter("") == MatchAll()
    assert parse_filter("   \t ") == MatchAll()


def test_precedence_or_lowest_then_and_then_not() -> None:
    node = parse_filter("obs_id=1 or tel_id=2 and not version=3")
    assert shape(node) == (
        "or",
        cmp("obs_id", "=", 1),
        ("and", cmp("tel_id", "=", 2), ("not", cmp("version", "=", 3))),
    )


def test_parentheses_override_precedence() -> None:
    node = parse_filter("(obs_id=1 or tel_id=2) and version=3")
    assert shape(node) == (
        "and",
        ("or", cmp("obs_id", "=", 1), cmp("tel_id", "=", 2)),
        cmp("version", "=", 3),
    )
    assert shape(parse_filter("not (category=B or category=C)")) == (
        "not",
        ("or", cmp("category", "=", "B"), cmp("category", "=", "C")),
    )


def test_keywords_are_case_insensitive() -> None:
    a = parse_filter("obs_id=1 AND NOT tel_id IN (1) Or name LIKE /x%")
    b = parse_filter("obs_id=1 and not tel_id in (1) or name like /x%")
    assert shape(a) == shape(b)


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_comparison_operators_with_and_without_spaces(op: str) -> None:
    assert shape(parse_filter(f"obs_id{op}100")) == cmp("obs_id", op, 100)
    assert shape(parse_filter(f"obs_id {op} 100")) == cmp("obs_id", op, 100)


def test_in_not_in_like_not_like() -> None:
    assert shape(parse_filter("tel_id in (1,2, 3)")) == cmp("tel_id", "in", 1, 2, 3)
    assert shape(parse_filter("tel_id not in (4)")) == cmp("tel_id", "not in", 4)
    assert shape(parse_filter("name like /ctao/%")) == cmp("name", "like", "/ctao/%")
    assert shape(parse_filter("name not like '%.h5'")) == cmp("name", "not like", "%.h5")


def test_quoted_strings_keep_spaces_keywords_and_other_quotes() -> None:
    assert parse_filter('product_type != "event list"') == Comparison(
        "product_type", "!=", ("event list",), 1
    )
    assert shape(parse_filter("product_type = 'and or not'")) == cmp(
        "product_type", "=", "and or not"
    )
    assert shape(parse_filter('name = "x\' OR 1=1 --"')) == cmp("name", "=", "x' OR 1=1 --")


def test_values_are_converted_to_the_field_type() -> None:
    assert shape(parse_filter("bytes > 1e6")) == cmp("bytes", ">", 1_000_000)
    assert shape(parse_filter("obs_id = 12345678901234567")) == cmp(
        "obs_id", "=", 12345678901234567
    )
    assert shape(parse_filter("observing_night=2026-11-21")) == cmp(
        "observing_night", "=", dt.date(2026, 11, 21)
    )
    assert shape(parse_filter("time_start >= 2026-11-21T20:00:00")) == cmp(
        "time_start", ">=", dt.datetime(2026, 11, 21, 20)
    )
    # An explicit offset is converted: the catalog stores naive UTC.
    assert shape(parse_filter("time_end < 2026-11-21T22:00:00+02:00")) == cmp(
        "time_end", "<", dt.datetime(2026, 11, 21, 20)
    )
    assert shape(parse_filter("data_level=dl0 and did_type=dataset")) == (
        "and",
        cmp("data_level", "=", "DL0"),
        cmp("did_type", "=", "DATASET"),
    )


def test_meta_values_are_typed_by_their_literal() -> None:
    def kind(text: str) -> tuple[str | None, tuple[Any, ...]]:
        node = parse_filter(text)
        assert isinstance(node, Comparison)
        return node.meta_kind, node.values

    assert kind("meta.zenith < 30") == ("float", (30.0,))
    assert kind("meta.run_type = calibration") == ("string", ("calibration",))
    assert kind('meta.run_id = "30"') == ("string", ("30",))
    assert kind("meta.good = TRUE") == ("boolean", (True,))
    assert kind("meta.zenith in (20, 30.5)") == ("float", (20.0, 30.5))
    assert kind("meta.x in (1, abc)") == ("string", ("1", "abc"))
    assert kind("meta.x like 1%") == ("string", ("1%",))


def test_describe_fields_lists_every_field_with_type_and_help() -> None:
    rows = describe_fields()
    assert [r[0] for r in rows] == [*FIELDS, "meta.<key>"]
    assert all(kind and help_text for _, kind, help_text in rows)
    kinds = {name: kind for name, kind, _ in rows}
    assert kinds["observing_night"] == "date"
    assert kinds["meta.<key>"] == "json"


# Each bad filter, the 1-based position the error must point at, and a fragment of its message.
MALFORMED = [
    ("obs_id >=", 10, "expected a value after '>='"),
    ("(data_level=DL0", 16, "expected ')' to close the '(' at position 1"),
    ("obs_id in ()", 12, "'in' needs at least one value"),
    ("x=1", 1, "unknown field 'x'"),
    ("obs_id=abc", 8, "obs_id expects an integer"),
    ("name like", 10, "expected a value after 'like'"),
    ('product_type = "event list', 16, "unterminated string"),
    ("meta.Bad-Key=1", 6, "invalid metadata key 'Bad-Key'"),
    ("obs_id=1 garbage", 10, "expected 'and', 'or' or the end, not 'garbage'"),
    ("obs_id=1)", 9, "expected 'and', 'or' or the end, not ')'"),
    ("bytes like 1%", 7, "'like' needs a text field"),
    ("data_level < DL2", 12, "data_level supports only =, !=, in, not in"),
    ("data_level = DL9", 14, "data_level expects one of R0, R1, DL0"),
    ("observing_night = 2026-02-30", 19, "observing_night expects a date"),
    ("time_start > yesterday", 14, "time_start expects a UTC date-time"),
    ("bytes > 1.5", 9, "bytes expects an integer"),
    ("tel_id in (1,", 14, "expected a value after 'in'"),
    ("tel_id in 1", 11, "expected '(' after 'in'"),
    ("tel_id not 3", 12, "expected 'in' or 'like'"),
    ("tel_id", 7, "expected an operator"),
    ("obs_id ! 3", 8, "did you mean '!='"),
    ("obs_id=1 and", 13, "expected a field name"),
    ("and obs_id=1", 1, "expected a field name, got 'and'"),
    ("obsid=1", 1, "did you mean 'obs_id'?"),
    ("meta.=1", 6, "invalid metadata key ''"),
]


@pytest.mark.parametrize(("text", "position", "message"), MALFORMED)
def test_errors_carry_position_and_caret(text: str, position: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_filter(text)
    err = info.value
    assert isinstance(err, InvalidInput)  # so CLI and REST map it to "invalid input"
    assert err.position == position
    assert message in err.detail
    first, echoed, caret = str(err).split("\n")
    assert f"at position {position}: " in first
    assert echoed == f"  {text}"
    assert caret == "  " + " " * (position - 1) + "^"


def test_unknown_field_error_lists_valid_fields() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_filter("x=1")
    assert all(name in info.value.detail for name in [*FIELDS, "meta.<key>"])


def test_compiled_sql_uses_bound_parameters_only() -> None:
    evil = "x' OR 1=1 --"
    clause = compile_filter(f'name = "{evil}" or meta.run_type = "{evil}" or tel_id in (7, 8)')
    for dialect in (SQLiteDialect_pysqlite(), PGDialect_psycopg()):
        compiled = clause.compile(dialect=dialect)
        sql = str(compiled)
        assert evil not in sql
        assert "1=1" not in sql
        assert list(compiled.params.values()).count(evil) == 2
        assert [7, 8] in compiled.params.values()


def test_select_dids_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInput, match="cannot order by"):
        select_dids("", order_by="name; drop table dids")
    with pytest.raises(InvalidInput, match="did_type must be one of"):
        select_dids("", did_type="FOLDER")
    with pytest.raises(InvalidInput, match=">= 0"):
        select_dids("", limit=-1)
    with pytest.raises(InvalidInput, match=">= 0"):
        select_dids("", offset=-5)


# --- execution on SQLite and PostgreSQL ------------------------------------------------------

NIGHTS = {
    100: dt.date(2026, 11, 21),
    101: dt.date(2026, 11, 21),
    150: dt.date(2026, 11, 22),
    199: dt.date(2026, 11, 22),
    200: dt.date(2026, 11, 23),
}
SITES = {100: "north", 101: "north", 150: "south", 199: "north", 200: "south"}
START = {  # obs 100 starts before 20:00 on its night, the others after
    100: dt.datetime(2026, 11, 21, 19, 30),
    101: dt.datetime(2026, 11, 21, 21, 0),
    150: dt.datetime(2026, 11, 22, 22, 0),
    199: dt.datetime(2026, 11, 23, 1, 0),
    200: dt.datetime(2026, 11, 23, 23, 0),
}
ZENITH: dict[tuple[int, int], Any] = {(101, 2): "high", (150, 3): 29.5, (199, 1): 45}


def _rows() -> list[dict[str, Any]]:
    """About fifty DIDs; plain dicts so the tests' predicates read the same data."""
    rows: list[dict[str, Any]] = []

    def add(name: str, **kw: Any) -> None:
        row = {"scope": "ctao", "name": name, "version": 1, "is_latest": True}
        row |= {"did_type": "FILE", "deleted_at": None, "meta": {}} | kw
        rows.append(row)

    for obs, night in NIGHTS.items():
        base = f"/ctao/dl0/{SITES[obs]}/{night:%Y/%m/%d}/obs_{obs:06d}"
        add(base, did_type="DATASET", data_level="DL0", obs_id=obs, observing_night=night)
        for tel in (1, 2, 3):
            meta: dict[str, Any] = {"run_type": "calibration" if tel == 3 else "science"}
            meta["zenith"] = ZENITH.get((obs, tel), 20 + obs % 7 + tel)
            add(
                f"{base}/tel_{tel:03d}.fits.fz",
                data_level="DL0",
                category="A",
                obs_id=obs,
                tel_id=tel,
                observing_night=night,
                time_start=START[obs] + dt.timedelta(minutes=tel),
                time_end=START[obs] + dt.timedelta(minutes=30 + tel),
                bytes={1: 500_000, 2: 2_000_000, 3: 1_000_000}[tel],
                product_type="raw events",
                meta=meta,
            )
    add(
        "/ctao/dl0/north/2026/11/21/obs_000101/tel_004.fits.fz",
        data_level="DL0",
        obs_id=101,
        tel_id=4,
        deleted_at=dt.datetime(2026, 11, 22, 12),
    )
    for obs in (100, 150):
        for level, cat, product in [
            ("DL1", "B", "dl1 images"),
            ("DL2", "B", "dl2 events"),
            ("DL1", "C", "dl1 images"),
            ("DL2", "C", "dl2 events"),
            ("DL3", "C", "event list"),
            ("DL3", "C", "irf"),
        ]:
            add(
                f"/ctao/{level.lower()}/{cat}/obs_{obs:06d}_{product.replace(' ', '_')}.h5",
                data_level=level,
                category=cat,
                obs_id=obs,
                observing_night=NIGHTS[obs],
                bytes=3_000_000,
                product_type=product,
                meta={"software": "ctapipe-0.30", "good": cat == "C"},
            )
    for version in (1, 2, 3):
        add(
            "/ctao/dl3/C/obs_000100_reprocessed.fits",
            version=version,
            is_latest=version == 3,
            data_level="DL3",
            category="C",
            obs_id=100,
            product_type="event list",
            meta={"software": f"ctapipe-0.{27 + version}"},
        )
    for i in range(1, 5):
        add(
            f"/sim/prod6/gamma/run_{i:04d}.simtel.zst",
            scope="sim",
            data_level="DL0",
            category="SIM",
            bytes=10**8 * i,
            expires_at=dt.datetime(2027, 1, i),
            meta={"particle": "gamma", "zenith": 20},
        )
    add("/ctao/misc/a_b.txt", bytes=1)
    add("/ctao/misc/aXb.txt", bytes=1)
    # Around "_" in a LIKE pattern (any one character; each range of the index walk): the
    # characters below, equal to and above it, the one right after it, none at all.
    for name in ("a`b.txt", "axb.txt", "a_c.txt", "ab.txt", "a_b.tx", "a~b.txt"):
        add(f"/ctao/misc/{name}", bytes=1)
    add("/ctao/containers/2026", did_type="CONTAINER")
    return rows


ROWS = _rows()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def catalog(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sessionmaker[Session]]:
    """One catalog per backend for this module, migrated, holding ROWS.

    Same backends as the shared ``catalog_url`` fixture, but built once per module: every test
    here only reads, and a fresh migrated PostgreSQL database per test would cost a second each.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('query') / 'catalog.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    engine = make_engine(url)
    try:
        upgrade(engine)
        factory = make_sessionmaker(engine)
        with transaction(factory) as session:
            session.add_all(DIDRow(**row) for row in ROWS)
        yield factory
    finally:
        engine.dispose()


def visible(row: dict[str, Any], *, version_mentioned: bool = False) -> bool:
    """select_dids' defaults: latest FILE versions, not deleted."""
    latest = row["is_latest"] or version_mentioned
    return row["did_type"] == "FILE" and latest and row["deleted_at"] is None


def g(row: dict[str, Any], key: str) -> Any:
    return row.get(key)


def num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


Predicate = Callable[[dict[str, Any]], bool]
EXAMPLES: list[Any] = [
    (
        "obs_id>=100 and obs_id<200 and data_level=DL0",
        lambda r: g(r, "data_level") == "DL0" and 100 <= (g(r, "obs_id") or -1) < 200,
    ),
    ("observing_night=2026-11-21", lambda r: g(r, "observing_night") == dt.date(2026, 11, 21)),
    ("tel_id in (1,2)", lambda r: g(r, "tel_id") in (1, 2)),
    # Negations (not, !=, not in, not like) also match rows where the value is missing.
    ("tel_id not in (1,2)", lambda r: g(r, "tel_id") not in (1, 2)),
    ("tel_id != 1 and tel_id in (1, 2, 3)", lambda r: g(r, "tel_id") in (2, 3)),
    (
        "not (category=B or category=C)",
        lambda r: g(r, "category") not in ("B", "C"),
    ),
    (
        "time_start >= 2026-11-21T20:00:00",
        lambda r: (
            g(r, "time_start") is not None and r["time_start"] >= dt.datetime(2026, 11, 21, 20)
        ),
    ),
    ("bytes > 1e6", lambda r: (g(r, "bytes") or 0) > 1_000_000),
    (
        'product_type != "event list"',
        lambda r: g(r, "product_type") != "event list",
    ),
    ("product_type = 'event list'", lambda r: g(r, "product_type") == "event list"),
    ("meta.run_type = calibration", lambda r: r["meta"].get("run_type") == "calibration"),
    # "high" is neither < 30 nor an error on PostgreSQL; rows without zenith do not match.
    ("meta.zenith < 30", lambda r: num(z := r["meta"].get("zenith")) and z < 30),
    ("meta.zenith >= 29.5", lambda r: num(z := r["meta"].get("zenith")) and z >= 29.5),
    ("meta.zenith = high", lambda r: r["meta"].get("zenith") == "high"),
    ("not meta.zenith < 30", lambda r: not (num(z := r["meta"].get("zenith")) and z < 30)),
    ("meta.zenith != 24", lambda r: r["meta"].get("zenith") != 24),
    ("meta.good != true", lambda r: r["meta"].get("good") is not True),
    ("not not tel_id = 2", lambda r: g(r, "tel_id") == 2),
    ("meta.good = true", lambda r: r["meta"].get("good") is True),
    ("meta.software like ctapipe-0.3%", lambda r: r["meta"].get("software") == "ctapipe-0.30"),
    (
        "scope=ctao and data_level=DL0",
        lambda r: r["scope"] == "ctao" and g(r, "data_level") == "DL0",
    ),
    (
        "scope=sim and expires_at < 2027-01-03",
        lambda r: r["scope"] == "sim" and r["expires_at"].day < 3,
    ),
    ("category=sim", lambda r: g(r, "category") == "SIM"),
    (
        "data_level in (DL1, DL2) and category = B or data_level = DL3 and obs_id = 150",
        lambda r: (
            (g(r, "data_level") in ("DL1", "DL2") and g(r, "category") == "B")
            or (g(r, "data_level") == "DL3" and g(r, "obs_id") == 150)
        ),
    ),
    ("", lambda r: True),
    pytest.param(
        "name like /ctao/dl0/north/%",
        lambda r: r["name"].startswith("/ctao/dl0/north/"),
        marks=BY_LFN,
    ),
    pytest.param(
        "name = /ctao/dl0/south/2026/11/23/obs_000200/tel_002.fits.fz",
        lambda r: r["name"] == "/ctao/dl0/south/2026/11/23/obs_000200/tel_002.fits.fz",
        marks=BY_LFN,
    ),
    pytest.param(
        r"name like /ctao/misc/a\_b%",
        lambda r: r["name"].startswith("/ctao/misc/a_b"),
        marks=BY_LFN,
    ),
    pytest.param(
        "name like /ctao/misc/a_b%",
        lambda r: re.fullmatch(r"/ctao/misc/a.b.*", r["name"]) is not None,
        marks=BY_LFN,
    ),
    pytest.param(
        "name like /ctao/misc/a_b.tx_",
        lambda r: re.fullmatch(r"/ctao/misc/a.b\.tx.", r["name"]) is not None,
        marks=BY_LFN,
    ),
    pytest.param(
        "name like /ctao/misc/a_%", lambda r: r["name"].startswith("/ctao/misc/a"), marks=BY_LFN
    ),
    pytest.param(
        "name not like /CTAO/DL0/%",  # LFNs are case-sensitive on both backends
        lambda r: not r["name"].startswith("/CTAO/DL0/"),
        marks=BY_LFN,
    ),
    pytest.param(
        "name not like /ctao/%", lambda r: not r["name"].startswith("/ctao/"), marks=BY_LFN
    ),
    pytest.param(
        "name like /ctao/dl3/C/%", lambda r: r["name"].startswith("/ctao/dl3/C/"), marks=BY_LFN
    ),
]


def _example_id(example: Any) -> str:
    return str(getattr(example, "values", example)[0]) or "<empty>"


def names(factory: sessionmaker[Session], stmt: Any) -> list[str]:
    with factory() as session:
        return [f"{d.scope}:{d.name}@{d.version}" for d in session.scalars(stmt)]


def expected(predicate: Predicate, *, version_mentioned: bool = False) -> list[str]:
    rows = [r for r in ROWS if visible(r, version_mentioned=version_mentioned) and predicate(r)]
    rows.sort(key=lambda r: (r["name"], r["version"], r["scope"]))
    return [f"{r['scope']}:{r['name']}@{r['version']}" for r in rows]


@BY_METADATA
@pytest.mark.parametrize(("text", "predicate"), EXAMPLES, ids=[_example_id(e) for e in EXAMPLES])
def test_select_dids_returns_exactly_the_matching_files(
    catalog: sessionmaker[Session], text: str, predicate: Predicate
) -> None:
    want = expected(predicate)
    assert want, "an example that selects nothing tests nothing"
    assert names(catalog, select_dids(text, limit=None)) == want


@BY_LFN
@pytest.mark.parametrize(
    "text",
    [
        'name = "x\' OR 1=1 --"',
        'name = \'x" OR "1"="1\'',
        "name like \"%' OR name LIKE '%\"",
        'meta.run_type = "\'; DROP TABLE dids; --"',
    ],
)
def test_injection_looking_values_match_nothing(catalog: sessionmaker[Session], text: str) -> None:
    assert names(catalog, select_dids(text, did_type=None, include_deleted=True)) == []
    assert len(names(catalog, select_dids("", limit=None))) > 20  # and the table is intact


@BY_METADATA
def test_compile_filter_alone_applies_no_defaults(catalog: sessionmaker[Session]) -> None:
    stmt = select(DIDRow).where(compile_filter("obs_id = 101")).order_by(DIDRow.name)
    got = names(catalog, stmt)
    assert "ctao:/ctao/dl0/north/2026/11/21/obs_000101@1" in got  # the dataset
    assert "ctao:/ctao/dl0/north/2026/11/21/obs_000101/tel_004.fits.fz@1" in got  # deleted
    assert len(got) == 5


@BY_METADATA
def test_version_in_filter_shows_every_version(catalog: sessionmaker[Session]) -> None:
    lfn = "ctao:/ctao/dl3/C/obs_000100_reprocessed.fits"
    assert names(catalog, select_dids("version=2")) == [f"{lfn}@2"]
    assert names(catalog, select_dids("version >= 1 and name like %reprocessed%")) == [
        f"{lfn}@1",
        f"{lfn}@2",
        f"{lfn}@3",
    ]
    assert names(catalog, select_dids("name like %reprocessed%")) == [f"{lfn}@3"]
    all_versions = select_dids("name like %reprocessed%", include_all_versions=True)
    assert len(names(catalog, all_versions)) == 3


@BY_METADATA
def test_did_type_and_deleted_defaults(catalog: sessionmaker[Session]) -> None:
    datasets = names(catalog, select_dids("did_type=DATASET"))
    assert len(datasets) == len(NIGHTS)
    assert names(catalog, select_dids("", did_type="DATASET")) == datasets
    assert len(names(catalog, select_dids("", did_type=None, limit=None))) == len(
        [r for r in ROWS if r["is_latest"] and r["deleted_at"] is None]
    )
    deleted = "ctao:/ctao/dl0/north/2026/11/21/obs_000101/tel_004.fits.fz@1"
    assert deleted not in names(catalog, select_dids("tel_id=4"))
    assert names(catalog, select_dids("tel_id=4", include_deleted=True)) == [deleted]
    assert names(catalog, select_dids("deleted_at >= 2026-11-22", include_deleted=True)) == [
        deleted
    ]


@BY_METADATA
@pytest.mark.parametrize("order_by", ["name", "-bytes", "obs_id", "time_start", "-created_at"])
def test_pagination_is_deterministic(catalog: sessionmaker[Session], order_by: str) -> None:
    everything = names(catalog, select_dids("", limit=None, order_by=order_by))
    assert len(everything) > 20
    pages: list[str] = []
    for offset in range(0, len(everything) + 7, 7):
        pages += names(catalog, select_dids("", limit=7, offset=offset, order_by=order_by))
    assert pages == everything


@BY_METADATA
def test_order_by_descending_field(catalog: sessionmaker[Session]) -> None:
    got = names(catalog, select_dids("scope = sim", order_by="-bytes"))
    assert got == [f"sim:/sim/prod6/gamma/run_{i:04d}.simtel.zst@1" for i in (4, 3, 2, 1)]


def test_limit_defaults_to_100(catalog: sessionmaker[Session]) -> None:
    assert 100 in select_dids("").compile().params.values()
    assert len(names(catalog, select_dids("", limit=3))) == 3
