"""RSE expressions: the grammar, implicit attributes, errors with positions, `dpps rse list`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.bdms.replication.rse_expression import (
    RSEExpressionError,
    RSEFacts,
    evaluate,
    parse,
    select,
)
from dpps.catalog.engine import transaction
from dpps.catalog.models import RSERow
from dpps.cli.main import app
from dpps.core.config import config_from_dict
from dpps.core.defaults import default_config
from dpps.core.errors import InvalidInput

CONFIG = config_from_dict(default_config(), Path("/nonexistent"), environ={})
OFFSITE = ["CSCS", "DESY", "DESY-TAPE", "FRASCATI", "PIC", "PIC-TAPE"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("offsite", OFFSITE),
        ("onsite", ["CTAO-N", "CTAO-S"]),
        ("offsite&type=tape", ["DESY-TAPE", "PIC-TAPE"]),
        ("tape", ["DESY-TAPE", "PIC-TAPE"]),
        ("CTAO-N|PIC", ["CTAO-N", "PIC"]),
        ("offsite\\PIC", ["CSCS", "DESY", "DESY-TAPE", "FRASCATI", "PIC-TAPE"]),
        ("country=ES", ["CTAO-N", "PIC", "PIC-TAPE"]),
        ("COUNTRY=es", ["CTAO-N", "PIC", "PIC-TAPE"]),  # keys and values ignore case
        ("country!=ES&offsite", ["CSCS", "DESY", "DESY-TAPE", "FRASCATI"]),
        ("tier<1", ["CTAO-N", "CTAO-S"]),
        ("tier>=1&disk", ["CSCS", "DESY", "FRASCATI", "PIC"]),
        ("site=DESY", ["DESY", "DESY-TAPE"]),
        ("kind=tape|name=CSCS", ["CSCS", "DESY-TAPE", "PIC-TAPE"]),
        ("*", sorted(CONFIG.rses)),
        ("*\\onsite", OFFSITE),
        ("offsite\\PIC&type=disk", ["CSCS", "DESY", "DESY-TAPE", "FRASCATI", "PIC-TAPE"]),
        ("(offsite\\PIC)&type=disk", ["CSCS", "DESY", "FRASCATI"]),  # & binds tighter
        ("CTAO-N|PIC\\PIC", ["CTAO-N"]),  # | and \ are left-associative
        (" ( CSCS | DESY ) & disk ", ["CSCS", "DESY"]),
        ("country=XX", []),
        ("available", sorted(CONFIG.rses)),
    ],
)
def test_expressions_select_what_they_say(expression: str, expected: list[str]) -> None:
    assert select(CONFIG, expression) == expected


def test_availability_and_custom_boolean_attributes() -> None:
    facts = [
        RSEFacts("A", "S1", "disk", False, True, {"fast": True, "zone": "eu"}),
        RSEFacts("B", "S2", "disk", False, False, {"fast": "false", "zone": "eu"}),
        RSEFacts("C", "S3", "tape", True, True, {"zone": "us"}),
    ]
    assert evaluate("available", facts) == ["A", "C"]
    assert evaluate("fast", facts) == ["A"]
    assert evaluate("fast=false", facts) == ["B"]
    assert evaluate("zone=eu\\available", facts) == ["B"]


@pytest.mark.parametrize(
    ("expression", "position", "detail"),
    [
        ("", 1, "empty RSE expression"),
        ("PICC", 1, "'PICC' is neither an RSE nor an attribute (did you mean 'PIC'?)"),
        ("offsite&contry=ES", 9, "unknown RSE attribute 'contry' (did you mean 'country'?)"),
        ("offsite&", 9, "expected an RSE name or attribute, got end of expression"),
        ("(CSCS|DESY", 11, "missing ')' for the '(' at position 1"),
        ("CSCS)", 5, "unexpected ')'"),
        ("CSCS DESY", 6, "unexpected 'DESY'"),
        ("country", 1, "attribute 'country' is not a boolean"),
        ("tier<one", 1, "< needs a number, not 'one'"),
        ("site=", 6, "expected a value after site="),
        ("PIC;", 4, "unexpected character ';'"),
        ("|PIC", 1, "expected an RSE name or attribute, got '|'"),
    ],
)
def test_mistakes_are_errors_that_point_at_their_position(
    expression: str, position: int, detail: str
) -> None:
    with pytest.raises(RSEExpressionError) as info:
        select(CONFIG, expression)
    assert info.value.position == position
    assert detail in info.value.detail
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"RSE expression error at position {position}: ")
    assert lines[1:] == ["  " + expression, "  " + " " * (position - 1) + "^"]
    assert isinstance(info.value, InvalidInput)  # exit code 3 in the CLI


def test_parse_is_syntax_only_and_rejects_non_strings() -> None:
    parse("NOSUCH&key=value")  # names are checked against RSEs when evaluated
    with pytest.raises(InvalidInput, match="must be a string"):
        parse(None)  # type: ignore[arg-type]


def test_rse_list_shows_what_an_expression_selects(archive: Archive) -> None:
    runner = CliRunner()
    ws = ["-w", str(archive.config.workspace)]
    result = runner.invoke(app, [*ws, "rse", "list", "offsite&type=disk", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["items"]
    assert [r["name"] for r in rows] == ["CSCS", "DESY", "FRASCATI", "PIC"]
    assert [r["available"] for r in rows] == [True] * 4
    with transaction(archive.sessions) as session:  # as for an RSE dropped from the config
        session.execute(update(RSERow).where(RSERow.name == "DESY").values(available=False))
    assert archive.rse_select("offsite&type=disk&available") == ["CSCS", "FRASCATI", "PIC"]
    assert archive.rse_select("offsite&type=disk") == ["CSCS", "DESY", "FRASCATI", "PIC"]
    result = runner.invoke(app, [*ws, "rse", "list", "offsite&contry=ES"])
    assert result.exit_code == InvalidInput.exit_code
    assert "position 9" in result.stderr
    assert "Traceback" not in result.stderr
    result = runner.invoke(app, [*ws, "rse", "list"])
    assert result.exit_code == 0
    assert "PIC-TAPE" in result.stdout
