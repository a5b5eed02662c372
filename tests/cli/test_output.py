"""Listings for terminals and for pipes (issue 14, deliverable 6).

The operators' complaint: at 80 columns tables broke DIDs, states and timestamps inside words
(a DID over five lines, ``REPLICATIN`` / ``G``), nothing fed ``xargs`` or a spreadsheet, and
``ls --json`` gave the first 100 rows without saying there were more. These tests read the
real rendered text at several widths and parse every format the way a script would.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpps.cli.listing import Column, Listing, OutputFormat, emit, output_format, table_width
from dpps.cli.main import app
from dpps.core.errors import InvalidInput
from tests.bdms.helpers import make_fits
from tests.cli.test_cli_remote import leaf_commands

runner = CliRunner()
PREFIX = "/ctao/dl0/array-north/2026-12-07/observation-block-000123/run-0000456-subarray-lst"
WIDTHS = (60, 80, 120)
FORMATS = [f.value for f in OutputFormat]

#: Every listing command and the arguments it needs in the ``listed`` workspace.
LISTINGS: dict[str, list[str]] = {
    "ls": [],
    "rse list": [],
    "dataset ls": [PREFIX],
    "rule list": [],
    "transfer list": [],
    "stage": ["--list"],
    "wms list": [],
    "wms transformation list": [],
    "campaign list": [],
    "account list": [],
    "token list": ["ops"],
    "role list": [],
    "daemon list": [],
    "pipeline list": [],
}


def run(*args: str, columns: int | None = None) -> tuple[int, str, str]:
    env = {"COLUMNS": str(columns)} if columns else None
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def listed(tmp_path: Path, catalog_url: str) -> tuple[Path, list[str]]:
    """``make_listed`` on each catalog."""
    return make_listed(tmp_path, catalog_url)


def make_listed(tmp_path: Path, catalog_url: str | None) -> tuple[Path, list[str]]:
    """A workspace with three files under a long LFN prefix (DIDs of 100 characters), in one
    dataset, with a replication rule on each (REPLICATING), and an account."""
    ws = tmp_path / "ws"
    url = ("--catalog-url", catalog_url) if catalog_url else ()
    code, _, err = run("init", str(ws), *url, "--json")
    assert code == 0, err
    src = tmp_path / "in"
    for tel in (1, 2, 3):
        make_fits(src, f"tel_{tel:03d}.fits", obs_id=123, tel_id=tel, seed=tel)
    w = ("-w", str(ws))
    code, out, err = run(
        *w,
        "ingest",
        str(src),
        "-r",
        "--rse",
        "CTAO-N",
        "--lfn-prefix",
        PREFIX,
        "--dataset",
        PREFIX,
        "--json",
    )
    assert code == 0, err
    dids = sorted(r["did"] for r in json.loads(out)["results"])
    code, _, err = run(*w, "rule", "add", *dids, "--rses", "offsite&type=disk", "--json")
    assert code == 0, err
    code, _, err = run(*w, "account", "add", "ops", "--role", "operator", "--json")
    assert code == 0, err
    return ws, dids


@pytest.mark.verifies_usecase("UC-110-1.2.2")
def test_tables_never_break_a_did_or_a_state_at_any_width(listed: tuple[Path, list[str]]) -> None:
    ws, dids = listed
    assert len(dids[0]) >= 100
    shown = json.loads(run("-w", str(ws), "show", dids[0], "--json")[1])["file"]
    for columns in (*WIDTHS, 250):
        for args, header in ((("ls",), ["DID", "level"]), (("rule", "list"), ["id", "DID"])):
            code, out, err = run("-w", str(ws), *args, columns=columns)
            assert code == 0, err
            lines = out.splitlines()
            for did in dids:
                assert any(did in line for line in lines), (columns, args, out)
            if args == ("rule", "list"):
                assert sum("REPLICATING" in line for line in lines) == 3, (columns, out)
            # Wide: a header row, then one row a record, within the width; narrow: one
            # block a record, the first column's line first.
            is_table = lines[0].split()[:2] == header
            assert is_table is (columns == 250), (columns, out)
            if is_table:
                assert len(lines) == 4
                assert all(len(line) <= columns for line in lines), out
            else:
                assert sum(line.startswith(f"{header[0]} ") for line in lines) == 3, out
        # Reports' tables (show, locate, rule show...) keep every word whole too.
        code, out, err = run("-w", str(ws), "show", dids[0], columns=columns)
        assert code == 0, err
        for word in (dids[0], shown["blake3"], shown["created_at"][:19]):
            assert any(word in line for line in out.splitlines()), (columns, word, out)


@pytest.mark.verifies_usecase("UC-110-1.2.2")
def test_ls_in_every_format_with_its_total_and_paging(listed: tuple[Path, list[str]]) -> None:
    ws, dids = listed
    w = ("-w", str(ws))
    code, out, _ = run(*w, "ls", "--limit", "2", "-o", "json")
    assert code == 0
    page = json.loads(out)
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    assert [f["did"] for f in page["items"]] == dids[:2]
    code, out, _ = run(*w, "ls", "--limit", "2", "--offset", "2", "--json")
    assert json.loads(out)["total"] == 3
    assert [f["did"] for f in json.loads(out)["items"]] == dids[2:]

    code, out, err = run(*w, "ls", "--limit", "2", "-o", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["DID"] for r in rows] == dids[:2]
    assert rows[0]["size"].isdigit()  # raw bytes, not "5.8 kB"
    assert "showing 2 of 3" in err  # the notice goes to stderr: the pipe gets data only

    code, out, err = run(*w, "ls", "-o", "plain")
    assert out.splitlines() == dids
    assert err == ""

    code, out, _ = run(*w, "ls", "--limit", "2", columns=250)
    assert "showing 2 of 3 (1-2); next: --offset 2" in out


def test_conflicting_or_unknown_formats_are_refused(listed: tuple[Path, list[str]]) -> None:
    ws, _ = listed
    code, out, err = run("-w", str(ws), "ls", "--json", "-o", "csv")
    assert code == InvalidInput.exit_code
    assert "--json and --output csv disagree" in err
    assert out == ""
    code, _, err = run("-w", str(ws), "ls", "-o", "xml")
    assert code == 2
    assert "xml" in err


def test_every_listing_command_takes_every_output(tmp_path: Path) -> None:
    """The walk runs on the workspace's own SQLite catalog only (the formats do not depend on
    the catalog; ``ls`` and ``rule list`` above run on both)."""
    ws, dids = make_listed(tmp_path, None)
    leaves = leaf_commands()
    listing_like = {c for c in leaves if c.split()[-1] in ("ls", "list")} | {"stage"}
    assert listing_like == set(LISTINGS)
    for name, args in LISTINGS.items():
        argv = ["-w", str(ws), *name.split(), *args]
        code, out, err = run(*argv, "--help")
        assert "--output" in out, name
        assert "--json" in out, name
        seen: dict[str, str] = {}
        for fmt in FORMATS:
            code, out, err = run(*argv, "-o", fmt)
            assert code == 0, (name, fmt, err)
            seen[fmt] = out
        page = json.loads(seen["json"])
        assert set(page) == {"items", "total", "limit", "offset"}, name
        assert page["total"] >= len(page["items"]), name  # every listing counts its matches
        _header, *rows = list(csv.reader(io.StringIO(seen["csv"])))
        assert len(rows) == len(page["items"]), name
        assert len(seen["plain"].splitlines()) == len(page["items"]), name
    code, out, _ = run("-w", str(ws), "dataset", "ls", PREFIX, "-o", "plain")
    assert out.splitlines() == dids
    code, out, _ = run("-w", str(ws), "dataset", "ls", PREFIX, "--limit", "1", "--offset", "1")
    assert "showing 1 of 3 (2-2); next: --offset 2" in " ".join(out.split())
    page = json.loads(
        run("-w", str(ws), "dataset", "ls", PREFIX, "-r", "--limit", "2", "--json")[1]
    )
    assert (len(page["items"]), page["total"]) == (2, 3)


def test_formats_agree_and_long_identifiers_need_blocks() -> None:
    did = "ctao:" + PREFIX + "/tel_001.fits"
    listing = Listing(
        [Column("DID"), Column("state"), Column("error", whole=False)],
        [[did, "REPLICATING", "a free text reason that may wrap between its words"]],
        items=[],
    )
    assert table_width(listing.columns, [[did, "REPLICATING", "x" * 50]]) > 120
    with pytest.raises(InvalidInput, match="disagree"):
        output_format(OutputFormat.PLAIN, True)
    assert output_format(None, False) is OutputFormat.TABLE


def test_emit_blocks_keep_each_value_on_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    did = "ctao:" + PREFIX + "/tel_001.fits"
    listing = Listing(
        [Column("DID"), Column("state"), Column("error", whole=False)],
        [[did, "REPLICATING", None], [did + "2", "OK", "x"]],
        items=[],
    )
    emit(listing, OutputFormat.TABLE, width=60)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["DID", did]
    assert lines[1].split() == ["state", "REPLICATING"]
    assert lines[0].index(did) == lines[1].index("REPLICATING")  # values in one column
    assert "" in lines  # a blank line between records
    assert not any("error" in line for line in lines[:3])  # empty fields are left out


def test_free_text_wraps_between_words_never_inside_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = "/ctao/dl0/array-north/2026-12-07/obs_123/tel_001.fits"  # a word of 53
    reason = f"checksum mismatch reading {path} from PIC after 3 attempts, giving up now"
    listing = Listing([Column("id"), Column("error", whole=False)], [[7, reason]], items=[])
    for width in WIDTHS:
        emit(listing, OutputFormat.TABLE, width=width)
        out = capsys.readouterr().out
        assert any(path in line for line in out.splitlines()), (width, out)
        assert all(len(line.rstrip()) <= width for line in out.splitlines()), (width, out)
        # Wide enough for the path: a table whose reason wraps onto several lines.
        assert out.splitlines()[0].split() == ["id", "error"], (width, out)
        assert len(out.splitlines()) > 2 or width >= len(reason) + 4, (width, out)
