"""The CLI end to end: every command has --help and --json; errors are one line + exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpps.cli.main import app
from dpps.core.errors import Conflict, IntegrityFailure, InvalidInput, NotFound
from tests.bdms.helpers import make_fits

runner = CliRunner()
COMMANDS = [
    [],
    ["init"],
    ["ingest"],
    ["ls"],
    ["show"],
    ["locate"],
    ["get"],
    ["meta", "set"],
    ["meta", "refresh"],
    ["rse", "list"],
    ["demo"],
    ["verify"],
]


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "dpps")
def test_every_command_has_help(command: list[str]) -> None:
    code, out, _ = run(*command, "--help")
    assert code == 0
    assert "Usage" in out
    if command:
        assert "--json" in out


@pytest.fixture
def workspace(tmp_path: Path, catalog_url: str) -> Path:
    ws = tmp_path / "ws"
    code, out, err = run("init", str(ws), "--catalog-url", catalog_url, "--json")
    assert code == 0, err
    assert {r["name"] for r in json.loads(out)["rses"]} >= {"CTAO-N", "CTAO-S", "PIC-TAPE"}
    return ws


@pytest.mark.verifies_usecase("UC-110-1.1.3")
@pytest.mark.verifies_usecase("UC-110-1.2.2")
@pytest.mark.verifies_usecase("UC-110-1.3.1")
def test_ingest_query_show_locate_get(workspace: Path, tmp_path: Path) -> None:
    ws = ("-w", str(workspace))
    src = tmp_path / "in"
    for i in range(3):
        make_fits(src, f"tel_{i:03d}.fits", obs_id=300, tel_id=i, seed=i)
    code, out, err = run(
        *ws,
        "ingest",
        str(src),
        "-r",
        "--rse",
        "CTAO-N",
        "--lfn-prefix",
        "/ctao/dl0/obs_300",
        "--dataset",
        "/ctao/dl0/obs_300",
        "--meta",
        "campaign=demo",
        "--json",
    )
    assert code == 0, err
    assert [r["status"] for r in json.loads(out)["results"]] == ["registered"] * 3

    code, out, _ = run(*ws, "ls", "obs_id=300 and tel_id in (1,2)", "--json")
    assert [f["name"] for f in json.loads(out)["items"]] == [
        "/ctao/dl0/obs_300/tel_001.fits",
        "/ctao/dl0/obs_300/tel_002.fits",
    ]
    code, out, _ = run(*ws, "ls", "meta.campaign=demo", "--count", "--json")
    assert json.loads(out) == {"count": 3}

    code, out, _ = run(*ws, "show", "ctao:/ctao/dl0/obs_300/tel_001.fits", "--json")
    shown = json.loads(out)
    assert shown["file"]["obs_id"] == 300
    assert shown["parents"] == ["ctao:/ctao/dl0/obs_300"]
    assert shown["replicas"][0]["state"] == "AVAILABLE"

    code, out, _ = run(*ws, "locate", "/ctao/dl0/obs_300/tel_001.fits", "--json")
    assert code == 0
    assert json.loads(out)["best_rse"] == "CTAO-N"

    dest = tmp_path / "out"
    code, out, err = run(
        *ws,
        "get",
        "/ctao/dl0/obs_300/tel_001.fits",
        "/ctao/dl0/obs_300/tel_002.fits",
        str(dest),
        "--json",
    )
    assert code == 0, err
    assert (dest / "tel_001.fits").read_bytes() == (src / "tel_001.fits").read_bytes()

    code, out, _ = run(
        *ws, "meta", "set", "/ctao/dl0/obs_300/tel_001.fits", "category=B", "--json"
    )
    assert code == 0
    assert json.loads(out)[0]["new"] == "B"
    code, out, _ = run(*ws, "meta", "refresh", "obs_id=300", "--json")
    assert code == 0
    assert json.loads(out)["examined"] == 3
    code, out, _ = run(*ws, "rse", "list", "--json")
    assert {r["name"]: r["files"] for r in json.loads(out)["items"]}["CTAO-N"] == 3


@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_errors_are_one_line_with_documented_exit_codes(workspace: Path, tmp_path: Path) -> None:
    ws = ("-w", str(workspace))
    good = make_fits(tmp_path, "a.fits", seed=1)
    other = make_fits(tmp_path / "o", "a.fits", seed=2)
    bad = make_fits(tmp_path / "b", "bad.fits", seed=3)
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    assert run(*ws, "ingest", str(good), "--rse", "CTAO-N", "--lfn", "/a.fits")[0] == 0
    cases = [
        (("ingest", str(good), "--rse", "NOPE", "--lfn", "/b.fits"), NotFound.exit_code),
        (("ingest", str(other), "--rse", "CTAO-N", "--lfn", "/a.fits"), Conflict.exit_code),
        (
            ("ingest", str(bad), "--rse", "CTAO-N", "--lfn", "/bad.fits"),
            IntegrityFailure.exit_code,
        ),
        (
            ("ingest", str(good), "--rse", "CTAO-N", "--lfn", "/x/../a.fits"),
            InvalidInput.exit_code,
        ),
        (("ls", "obs_id >= and"), InvalidInput.exit_code),
        (("show", "/missing.fits"), NotFound.exit_code),
        (("meta", "set", "/a.fits", "novalue"), InvalidInput.exit_code),
    ]
    for args, expected in cases:
        code, out, err = run(*ws, *args)
        assert code == expected, (args, code, out, err)
        assert "Traceback" not in err + out
        assert err.strip(), args


def test_workspace_is_found_from_a_subdirectory(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = workspace / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    monkeypatch.delenv("DPPS_WORKSPACE", raising=False)
    code, out, _ = run("rse", "list", "--json")
    assert code == 0
    assert json.loads(out)["total"] == 8
    monkeypatch.chdir(workspace.parent)
    code, _, err = run("rse", "list")
    assert code == NotFound.exit_code
    assert "dpps init" in err


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    code, out, err = run("demo", "--dir", str(tmp_path / "demo"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ingest"]["registered"] == 10
    assert summary["ingest"]["failed"] == 0
    assert summary["query"]["matches"]
    assert Path(summary["retrieve"]["path"]).is_file()
    # a second run recreates its own workspace, but refuses to touch anything else
    assert run("demo", "--dir", str(tmp_path / "demo"), "--json")[0] == 0
    other = tmp_path / "precious"
    other.mkdir()
    assert run("demo", "--dir", str(other))[0] == Conflict.exit_code
