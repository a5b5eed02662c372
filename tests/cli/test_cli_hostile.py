"""The CLI with hostile input (issue 15, defects 6, 8 and 9): user data prints as it is, bounds
are clear errors with the documented exit code, never an internal error.

``dpps meta set DID 'note=[/]'`` used to apply the change and crash (Rich read the value as
markup), and every later ``dpps show`` of the product crashed too; ``[bold]`` in a file name
vanished from messages; the metadata key pattern printed as ``^{0,63}$``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dpps.cli.main import app
from dpps.core.errors import ConfigError, InvalidInput, Unavailable
from tests.bdms.helpers import make_fits

runner = CliRunner()
HOSTILE = ["[/]", "[bold]x[/bold]", "[red]", "a[/b]c", "\\[x]", "[link=http://e]e", "x\\"]


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def workspace(tmp_path: Path, catalog_url: str) -> tuple[str, str]:
    ws = tmp_path / "ws"
    code, _, err = run("init", str(ws), "--catalog-url", catalog_url, "--json")
    assert code == 0, err
    args = ("-w", str(ws))
    source = make_fits(tmp_path, "a.fits")
    assert run(*args, "ingest", str(source), "--rse", "CTAO-N", "--lfn", "/a.fits")[0] == 0
    return args


@pytest.mark.parametrize("value", HOSTILE)
def test_markup_in_metadata_values_prints_literally(
    workspace: tuple[str, str], value: str
) -> None:
    code, out, err = run(*workspace, "meta", "set", "/a.fits", f"note={value}")
    assert code == 0, err
    assert value in out
    code, out, err = run(*workspace, "show", "/a.fits")
    assert code == 0, err
    assert value in out
    code, out, _ = run(*workspace, "show", "/a.fits", "--json")
    assert json.loads(out)["file"]["meta"]["note"] == value


def test_markup_in_file_names_and_error_messages_prints_literally(
    workspace: tuple[str, str], tmp_path: Path
) -> None:
    odd = tmp_path / "[bold]d"
    odd.mkdir()
    source = make_fits(odd, "[bold]b.fits")
    code, _, err = run(*workspace, "ingest", str(source), "--rse", "CTAO-N", "--lfn-prefix", "/z")
    assert code == InvalidInput.exit_code
    assert "[bold]d/[bold]b.fits" in err
    code, _, err = run(*workspace, "meta", "set", "/a.fits", "Bad=1")
    assert code == InvalidInput.exit_code
    assert "^[a-z][a-z0-9_]{0,63}$" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("ls", "obs_id=99999999999999999999"), "integer from"),
        (("ls", "bytes>1e30"), "integer from"),
        (("ls", "(" * 200 + "obs_id=1" + ")" * 200), "nest more than"),
        (("ls", "not " * 500 + "obs_id=1"), "nest more than"),
        (("ls", "obs_id in (" + ",".join(["1"] * 3000) + ")"), "values in one filter"),
        (("show", "/a.fits@v0"), "versions start at 1"),
        (("show", "/a.fits@v99999999999"), "at most"),
        (("meta", "set", "/a.fits", "x=inf"), "not a finite number"),
        (("meta", "set", "/a.fits", "bytes=1"), "bytes"),
    ],
)
def test_unbounded_input_is_invalid_input(
    workspace: tuple[str, str], args: tuple[str, ...], needle: str
) -> None:
    code, out, err = run(*workspace, *args)
    assert code == InvalidInput.exit_code, (code, out, err)
    assert needle in err
    assert "internal error" not in err


def test_numeric_options_are_bounded(workspace: tuple[str, str]) -> None:
    for args in (
        ("rule", "add", "/a.fits", "--copies", "1", "--rses", "CTAO-S", "--lifetime", "1e308"),
        ("ls", "--limit", "99999999999999999999999"),
    ):
        code, _, err = run(*workspace, *args)
        assert code == 2, err  # a usage error, as for every other out-of-range option
        assert "internal error" not in err


def test_an_over_long_name_is_invalid_not_an_unavailable_rse(
    workspace: tuple[str, str], tmp_path: Path
) -> None:
    source = make_fits(tmp_path, "b.fits")
    lfn = "/" + "x" * 300 + ".fits"
    code, _, err = run(*workspace, "ingest", str(source), "--rse", "CTAO-N", "--lfn", lfn)
    assert code == InvalidInput.exit_code, err
    assert "longer than" in err


@pytest.mark.parametrize(
    ("url", "code", "needle"),
    [
        ("postgresql://nobody@127.0.0.1:1/nope", Unavailable.exit_code, "unavailable"),
        ("nosuchdb://x/y", ConfigError.exit_code, "cannot be used"),
    ],
)
def test_an_unreachable_or_malformed_catalog_is_not_a_bug(
    tmp_path: Path, url: str, code: int, needle: str
) -> None:
    ws = tmp_path / "ws"
    assert run("init", str(ws), "--json")[0] == 0
    config = yaml.safe_load((ws / "dpps.yaml").read_text())
    config["catalog"]["url"] = url
    (ws / "dpps.yaml").write_text(yaml.safe_dump(config))
    exit_code, _, err = run("-w", str(ws), "ls")
    assert exit_code == code, err
    assert needle in err
    assert "internal error" not in err
