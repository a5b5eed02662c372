"""Metadata a person gives (issue 15, defects 2 and 7): kept as typed, never poisoning the catalog.

``--meta x=inf`` used to be stored as ``Infinity`` (not JSON): from then on every ``meta.*``
filter of the whole catalog failed. ``1.10`` became ``1.1``, ``007`` became ``7`` and free keys
named ``bytes`` or ``adler32`` stood beside the file's real fields.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError, StatementError

from dpps.bdms.archive import Archive
from dpps.bdms.metadata_values import (
    RESERVED_KEYS,
    parse_user_meta,
    typed_value,
    validate_free_meta,
)
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow
from dpps.catalog.query import FIELDS
from dpps.core.errors import InvalidInput
from tests.bdms.helpers import make_fits

LFN = "/ctao/dl0/obs_100/tel_001.fits"
NOT_FINITE = ["inf", "-inf", "nan", "NaN", "Infinity", "1e999", "-1e999"]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("1.10", "1.10"),
        ("007", "007"),
        ("00000000", "00000000"),
        ("-0", "-0"),
        ("+5", "+5"),
        ("1e3", "1e3"),
        (" 7", " 7"),
        ("True", "True"),
        ("1_000", "1_000"),
        ("99999999999999999999", "99999999999999999999"),  # beyond 64 bits: text
        ("42", 42),
        ("-3", -3),
        ("0", 0),
        ("1.5", 1.5),
        ("1e-05", 1e-05),
        ("true", True),
        ("false", False),
        ("", ""),
    ],
)
def test_a_value_keeps_its_text_unless_it_is_a_canonical_number(raw: str, stored: object) -> None:
    value = typed_value("k", raw)
    assert value == stored
    assert type(value) is type(stored)
    assert (raw if isinstance(value, str) else str(value).lower()) == raw


@pytest.mark.parametrize("raw", NOT_FINITE)
def test_non_finite_numbers_are_refused_naming_the_key(raw: str) -> None:
    with pytest.raises(InvalidInput, match=r"metadata noise: .* not a finite number"):
        parse_user_meta({"noise": raw})
    with pytest.raises(InvalidInput, match="metadata noise"):
        validate_free_meta({"noise": float(raw)})
    with pytest.raises(InvalidInput, match="metadata noise"):
        validate_free_meta({"noise": [1, {"deep": float(raw)}]})


def test_reserved_keys_are_the_files_own_fields() -> None:
    from dpps.bdms.metadata import INDEXED_KEYS

    assert set(FIELDS) - set(INDEXED_KEYS) <= RESERVED_KEYS
    for key in ("bytes", "adler32", "name", "format"):
        with pytest.raises(InvalidInput, match=f"metadata key '{key}' is reserved"):
            parse_user_meta({key: "1"})
        with pytest.raises(InvalidInput, match="reserved"):
            validate_free_meta({key: 1})


def test_json_values_beyond_64_bits_or_too_deep_are_refused() -> None:
    with pytest.raises(InvalidInput, match="64 bits"):
        validate_free_meta({"big": 2**63})
    deep: object = 1
    for _ in range(20):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested deeper"):
        validate_free_meta({"deep": deep})
    assert validate_free_meta({"ok": [1, "a", None, {"b": 2.5}]}) == {
        "ok": [1, "a", None, {"b": 2.5}]
    }


@pytest.fixture
def stored(archive: Archive, tmp_path: Path) -> None:
    archive.ingest([make_fits(tmp_path, obs_id=100, tel_id=1)], "CTAO-N", lfn=LFN)


@pytest.mark.parametrize("raw", ["inf", "nan", "1e999"])
def test_ingest_and_meta_set_refuse_non_finite_values(
    archive: Archive, tmp_path: Path, raw: str
) -> None:
    with pytest.raises(InvalidInput, match=r"x: .* not a finite number"):
        archive.ingest([make_fits(tmp_path)], "CTAO-N", lfn="/ctao/t.fits", meta={"x": raw})
    assert archive.count("") == 0
    archive.ingest([make_fits(tmp_path)], "CTAO-N", lfn=LFN)
    with pytest.raises(InvalidInput, match=r"x: .* not a finite number"):
        archive.set_meta(LFN, {"x": raw})
    assert "x" not in archive.show(LFN).file.meta


@pytest.mark.usefixtures("stored")
def test_values_are_stored_and_read_back_as_typed(archive: Archive, tmp_path: Path) -> None:
    given = {"release": "1.10", "run": "007", "sum": "00000000", "n": "12", "ratio": "0.25"}
    archive.ingest([make_fits(tmp_path, "b.fits")], "CTAO-N", lfn="/ctao/b.fits", meta=given)
    meta = archive.show("/ctao/b.fits").file.meta
    assert {k: meta[k] for k in given} == {
        "release": "1.10",
        "run": "007",
        "sum": "00000000",
        "n": 12,
        "ratio": 0.25,
    }
    assert [f.name for f in archive.list_files('meta.run="007"')] == ["/ctao/b.fits"]
    assert [f.name for f in archive.list_files("meta.n>=12 and meta.ratio<1")] == ["/ctao/b.fits"]
    with pytest.raises(InvalidInput, match="'adler32' is reserved"):
        archive.ingest(
            [make_fits(tmp_path, "c.fits")], "CTAO-N", lfn="/c.f", meta={"adler32": "0"}
        )
    with pytest.raises(InvalidInput):
        archive.set_meta(LFN, {"bytes": "5"})


def test_the_catalog_never_writes_non_json(archive: Archive, stored: None) -> None:
    """The last guard, for any path that bypassed the validation: strict JSON serialisation."""
    poison = update(DIDRow).where(DIDRow.name == LFN).values(meta={"x": float("inf")})
    with (
        pytest.raises((StatementError, ValueError), match="JSON compliant"),
        transaction(archive.sessions) as session,
    ):
        session.execute(poison)
    assert archive.show(LFN).file.meta.get("x") is None


@pytest.mark.usefixtures("stored")
def test_a_poisoned_row_does_not_break_every_metadata_filter(
    archive: Archive, tmp_path: Path, catalog_url: str
) -> None:
    """A row stored before the fix (raw ``Infinity``) matches no ``meta.*`` comparison; other
    rows are still found. PostgreSQL's json type refuses such a row in the first place."""
    archive.ingest([make_fits(tmp_path, "b.fits")], "CTAO-N", lfn="/ctao/b.fits", meta={"q": "1"})
    raw = text("UPDATE dids SET meta = :poison WHERE name = :name")
    poison = '{"x": Infinity, "q": 1}'
    if catalog_url.startswith("postgresql"):
        with pytest.raises(DBAPIError), archive.sessions() as session, session.begin():
            session.execute(raw, {"poison": poison, "name": LFN})
        return
    with archive.sessions() as session, session.begin():
        session.execute(raw, {"poison": poison, "name": LFN})
    for query in ("meta.q=1", "meta.q>0", "meta.q like 1%", "meta.q in (1, 2)", "meta.q=true"):
        found = [f.name for f in archive.list_files(query)]
        assert LFN not in found, query
    assert [f.name for f in archive.list_files("meta.q=1")] == ["/ctao/b.fits"]
    assert sorted(f.name for f in archive.list_files("not meta.q=5")) == ["/ctao/b.fits", LFN]
    assert archive.count("meta.x>0") == 0
