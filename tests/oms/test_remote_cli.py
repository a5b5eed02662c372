"""The same ``dpps`` commands locally and against a live server (DPPS_URL + DPPS_TOKEN)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.cli.main import app
from dpps.client.archive import RemoteArchive
from dpps.oms.server import BackgroundServer
from dpps.storage.checksums import checksum_file
from dpps.wms.api import WMS
from dpps.wms.builder import load_job
from tests.bdms.helpers import make_fits
from tests.oms.conftest import DL0, Seeded, account_for
from tests.wms.conftest import SUMMARIZE_CWL, write

runner = CliRunner()


def _local(archive: Archive, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, ["-w", str(archive.config.workspace), *args], env={"DPPS_URL": ""})
    return r.exit_code, r.stdout, r.stderr


def _remote(server: BackgroundServer, token: str, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env={"DPPS_URL": server.url, "DPPS_TOKEN": token})
    return r.exit_code, r.stdout, r.stderr


def _both(s: Seeded, server: BackgroundServer, *args: str, role: str = "admin") -> Any:
    local = _local(s.archive, *args)
    remote = _remote(server, s.tokens[role], *args)
    assert local[0] == remote[0], (args, local, remote)
    return local, remote


@pytest.mark.verifies_usecase("UC-160-1.1")
@pytest.mark.verifies_usecase("UC-110-1.2.2")
def test_read_commands_print_the_same_locally_and_remotely(
    seeded: Seeded, live: BackgroundServer
) -> None:
    did = seeded.dl0_files[0]
    for args in (
        ("ls", "obs_id=42", "--json"),
        ("ls", "obs_id=42"),
        ("ls", "obs_id=42", "--limit", "1", "--offset", "1", "--json"),  # total and paging
        ("ls", "obs_id=42", "-o", "csv"),
        ("ls", "obs_id=42", "-o", "plain"),
        ("ls", "", "--count", "--json"),
        ("ls", "", "--type", "DATASET", "--json"),
        ("show", did, "--json"),
        ("show", did),
        ("locate", did, "--json"),
        ("rse", "list", "--json"),
    ):
        local, remote = _both(seeded, live, *args, role="reader")
        assert local[0] == 0, local
        assert local[1] == remote[1], args
    # Errors: same one-line message kind and the same exit code both ways.
    for args, code in (
        (("show", "ctao:/ctao/none.fits"), 5),
        (("ls", "obs_id=="), 3),
        (("locate", "no scope at all"), 3),
    ):
        local, remote = _both(seeded, live, *args)
        assert local[0] == code
        assert remote[0] == code
        assert remote[2].startswith("error:"), remote


@pytest.mark.verifies_usecase("UC-110-1.1.3")
@pytest.mark.verifies_usecase("UC-110-1.3.1")
def test_ingest_get_and_meta_work_remotely(
    seeded: Seeded, live: BackgroundServer, tmp_path: Path
) -> None:
    src = tmp_path / "new"
    for tel in (4, 5):
        make_fits(src, f"tel_{tel:03d}.fits", obs_id=43, tel_id=tel, seed=tel)
    (src / "tel_004.fits.json").write_text(json.dumps({"campaign": "remote"}))
    (src / "empty.fits").write_bytes(b"")
    token = seeded.tokens["data-processing-manager"]
    files = [str(src / n) for n in ("tel_004.fits", "tel_005.fits", "empty.fits")]
    options = [
        "--rse",
        "CTAO-N",
        "--lfn-prefix",
        "/ctao/dl0/obs_43",
        "--dataset",
        "/ctao/dl0/obs_43",
        "--meta",
        "run_type=test",
        "--json",
    ]
    code, out, err = _remote(live, token, "ingest", *files, *options)
    assert code == 10, err
    results = json.loads(out)["results"]
    assert [r["status"] for r in results] == ["registered", "registered", "failed"]
    assert (
        results[2]["error"] == f"{src / 'empty.fits'} is empty: refusing to archive a 0-byte file"
    )
    shown = seeded.archive.show("/ctao/dl0/obs_43/tel_004.fits")
    assert shown.file.meta["campaign"] == "remote"
    assert shown.file.meta["run_type"] == "test"
    assert shown.events[-1].account == "acct-data-processing-manager"
    again = _remote(
        live,
        token,
        "ingest",
        str(src / "tel_004.fits"),
        "--rse",
        "CTAO-N",
        "--lfn",
        "/ctao/dl0/obs_43/tel_004.fits",
        "--json",
    )
    assert again[0] == 0
    assert json.loads(again[1])["results"][0]["status"] == "present"
    unknown = _remote(
        live, token, "ingest", str(src / "tel_005.fits"), "--rse", "NOPE", "--lfn", "/ctao/x.fits"
    )
    assert unknown[0] == 5
    assert "unknown RSE" in unknown[2]
    reader = _remote(
        live,
        seeded.tokens["reader"],
        "ingest",
        str(src / "tel_005.fits"),
        "--rse",
        "CTAO-N",
        "--lfn",
        "/ctao/y.fits",
    )
    assert reader[0] == 8
    assert "may not did.write" in reader[2]

    out_dir = tmp_path / "got"
    code, out, err = _remote(
        live,
        seeded.tokens["reader"],
        "get",
        *seeded.dl0_files[:2],
        "/ctao/dl0/obs_43/tel_005.fits",
        str(out_dir),
        "--json",
    )
    assert code == 0, err
    for r in json.loads(out)["results"]:
        got = Path(r["path"])
        assert (
            checksum_file(got, ("adler32",))[1]["adler32"]
            == seeded.archive.show(r["did"]).file.adler32
        )
    assert not list(out_dir.glob(".*part*"))
    same = _remote(live, seeded.tokens["reader"], "get", seeded.dl0_files[0], str(out_dir))
    assert same[0] == 0, same[2]  # the identical file already there is kept, not fetched
    assert "identical" in same[1]
    mine = out_dir / Path(seeded.dl0_files[0]).name
    mine.write_bytes(b"mine")
    exists = _remote(live, seeded.tokens["reader"], "get", seeded.dl0_files[0], str(out_dir))
    assert exists[0] == 6
    assert "exists with other content" in exists[2]
    assert mine.read_bytes() == b"mine"

    setm = _remote(
        live,
        seeded.tokens["operator"],
        "meta",
        "set",
        seeded.dl0_files[1],
        "quality=good",
        "--reason",
        "shift review",
        "--json",
    )
    assert setm[0] == 0, setm[2]
    assert json.loads(setm[1]) == [
        {"did": seeded.dl0_files[1], "key": "quality", "old": None, "new": "good"}
    ]
    last = seeded.archive.show(seeded.dl0_files[1]).events[0]
    assert (last.account, last.action, last.reason) == (
        "acct-operator",
        "meta.set",
        "shift review",
    )
    refresh = _both(seeded, live, "meta", "refresh", "obs_id=42", "--dry-run", "--json")
    assert json.loads(refresh[0][1])["examined"] == json.loads(refresh[1][1])["examined"] == 4


@pytest.mark.verifies_usecase("UC-160-1.2")
def test_accounts_tokens_report_and_health_remotely(
    seeded: Seeded, live: BackgroundServer
) -> None:
    admin = seeded.tokens["admin"]
    code, out, err = _remote(live, admin, "account", "add", "newbie", "--role", "reader", "--json")
    assert code == 0, err
    code, out, err = _remote(live, admin, "token", "create", "newbie", "--json")
    token = json.loads(out)["token"]
    whoami = RemoteArchive(live.url, token)
    assert whoami.whoami()["name"] == "newbie"
    whoami.close()
    mine = _remote(live, token, "token", "list", "--json")
    assert [t["account"] for t in json.loads(mine[1])["items"]] == ["newbie"]
    denied = _remote(live, token, "account", "add", "other", "--role", "admin")
    assert denied[0] == 8
    assert "account.write" in denied[2]
    revoke = _remote(live, admin, "token", "revoke", str(json.loads(out)["id"]))
    assert revoke[0] == 0
    after = _remote(live, token, "ls")
    assert after[0] == 8
    assert "revoked" in after[2]
    report = _remote(live, admin, "report", "--since", "1d", "--format", "json")
    assert report[0] == 0, report[2]
    ingested = {v["key"]: v["files"] for v in json.loads(report[1])["ingested"]}
    assert ingested == {"CTAO-North": 3, "CTAO-South": 1}
    local, remote = _both(seeded, live, "health", "--json")
    assert json.loads(local[1])["lost"] == json.loads(remote[1])["lost"] == 0
    # (delete, audit, stage, export are remote now: test_deletion_roles, test_remote_staging,
    # test_remote_export); registering in place on an on-site RSE is the server's own business
    landed = seeded.archive.config.workspace / "landed.fits"
    landed.write_bytes(b"SIMPLE")
    unsupported = _remote(live, admin, "ingest", "--acada", str(landed), "--rse", "CTAO-N")
    assert unsupported[0] == 3
    assert "not available over REST" in unsupported[2]
    unreachable = runner.invoke(
        app, ["ls"], env={"DPPS_URL": "http://127.0.0.1:9", "DPPS_TOKEN": "x"}
    )
    assert unreachable.exit_code == 9
    assert "cannot reach" in unreachable.stderr
    no_token = runner.invoke(app, ["ls"], env={"DPPS_URL": live.url, "DPPS_TOKEN": ""})
    assert no_token.exit_code == 4
    assert "DPPS_TOKEN" in no_token.stderr
    assert seeded.archive.count(f"name like {DL0}/%") == 3


@pytest.mark.verifies_usecase("UC-100-2")
@pytest.mark.verifies_usecase("UC-100-1.2")
def test_wms_commands_locally_and_remotely(
    seeded: Seeded, live: BackgroundServer, tmp_path: Path
) -> None:
    """submit/status/list/kill/retry and transformation add/list, the same both ways."""
    job = tmp_path / "JOB.yaml"
    job.write_text('name: noop\ncommand: ["true"]\npriority: 4\n')
    template = write(tmp_path / "cwl" / "summarize.cwl", SUMMARIZE_CWL)
    dpm = "data-processing-manager"
    ids: dict[str, int] = {}
    for where, run in (
        ("local", lambda *a: _local(seeded.archive, *a)),
        ("remote", lambda *a: _remote(live, seeded.tokens[dpm], *a)),
    ):
        code, out, err = run("wms", "submit", str(job), "--json")
        assert code == 0, (where, err)
        sub = json.loads(out)
        assert (sub["kind"], sub["detail"]["priority"]) == ("job", 4), where
        ids[where] = sub["id"]
        code, out, err = run("wms", "status", str(sub["id"]), "--json")
        assert json.loads(out)["state"] == "SUBMITTED", (where, err)
        code, out, err = run("wms", "logs", str(sub["id"]), "--json")
        assert json.loads(out) == {"job": sub["id"], "log": ""}, (where, err)
        assert run("wms", "kill", str(sub["id"]), "--reason", "test")[0] == 0, where
        again = run("wms", "kill", str(sub["id"]))
        assert again[0] == 6, (where, again)
        assert "KILLED already" in again[2], where
        assert run("wms", "retry", str(sub["id"]), "--json")[0] == 0, where
        code, out, err = run("wms", "list", "--state", "SUBMITTED", "--json")
        assert sub["id"] in [j["id"] for j in json.loads(out)["items"]], (where, err)
        name = f"summaries-{where}"
        code, out, err = run(
            "wms",
            "transformation",
            "add",
            name,
            str(template),
            "--filter",
            "data_level=DL1",
            "--json",
        )
        assert code == 0, (where, err)
        assert json.loads(out)["input_port"] == "infile"
        code, out, err = run("wms", "transformation", "list", "--json")
        assert name in [t["name"] for t in json.loads(out)["items"]], (where, err)
    assert ids["remote"] == ids["local"] + 1  # one catalog: the server's job follows
    local = _local(seeded.archive, "wms", "status", str(ids["remote"]), "--json")
    history = json.loads(local[1])["events"]
    assert history[0]["account"] == account_for(dpm)
    assert {e["state"] for e in history} >= {"SUBMITTED", "KILLED"}
    # A reader may look but not submit; the refusal has the local exit code of a denial.
    reader = _remote(live, seeded.tokens["reader"], "wms", "submit", str(job))
    assert reader[0] == 8
    assert "wms.write" in reader[2]
    looked = _remote(live, seeded.tokens["reader"], "wms", "list", "--json")
    assert looked[0] == 0
    ran = WMS(seeded.archive)  # one job that ran, so the accounting has a row
    ran.wait(ran.submit_job(load_job({"name": "acct", "command": ["true"]})[0], {}))
    for args in (("wms", "accounting", "--json"), ("wms", "accounting", "--by", "tool,site")):
        local, remote = _both(seeded, live, *args, role="reader")
        assert local[0] == 0, local
        assert local[1] == remote[1], args
    assert json.loads(_local(seeded.archive, "wms", "accounting", "--json")[1])  # jobs ran
    bad = _both(seeded, live, "wms", "accounting", "--by", "colour")
    assert bad[0][0] == bad[1][0] == 3, bad


def test_remote_wms_methods_accept_what_wms_methods_accept() -> None:
    """The same check for ``dpps wms``: RemoteWMS stands in for WMS in the commands."""
    from dpps.client.wms import RemoteWMS
    from dpps.wms.api import WMS

    checked = 0
    for name, member in inspect.getmembers(RemoteWMS, inspect.isfunction):
        if name.startswith("_"):
            continue
        local = getattr(WMS, name)  # every public method of RemoteWMS exists on WMS
        mine = inspect.signature(member).parameters
        theirs = inspect.signature(local).parameters
        assert list(mine) == list(theirs), name
        for p in theirs.values():
            assert mine[p.name].kind == p.kind, (name, p.name)
            assert str(mine[p.name].default) == str(p.default), (name, p.name)
        checked += 1
    assert checked >= 12
