"""``dpps campaign`` against a live server: the server's campaign daemon runs what the remote
CLI queued, the CLI follows it and prints the same report; plans, records and refusals are the
same both ways (UC-130-3.1.1 operated remotely, UC-160-1.1)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.cli.main import app
from dpps.core.authz import Role
from dpps.core.daemon import run_registered
from dpps.oms.accounts import AccountService
from dpps.oms.server import BackgroundServer
from dpps.pipelines import daemons
from dpps.wms.api import WMS
from tests.pipelines.campaign.conftest import TARGET
from tests.pipelines.campaign.test_campaign import QUERY

UC = "UC-130-3.1.1"
runner = CliRunner()
STEPS = ("camera", "atmosphere", "dl1", "dl2", "dl3", "quality")


@dataclass
class Live:
    archive: Archive
    server: BackgroundServer
    tokens: dict[str, str]
    config: Path

    def local(self, *args: str) -> tuple[int, str, str]:
        ws = str(self.archive.config.workspace)
        r = runner.invoke(app, ["-w", ws, *args], env={"DPPS_URL": ""})
        return r.exit_code, r.stdout, r.stderr

    def remote(self, role: str, *args: str) -> tuple[int, str, str]:
        env = {"DPPS_URL": self.server.url, "DPPS_TOKEN": self.tokens[role]}
        r = runner.invoke(app, list(args), env=env)
        return r.exit_code, r.stdout, r.stderr

    def reprocess(self, *extra: str) -> list[str]:
        return [
            "campaign",
            "reprocess",
            QUERY,
            "--software-version",
            "datapipe 2.0",
            "--config",
            str(self.config),
            "--timeout",
            "900",
            *extra,
        ]


@pytest.fixture
def live(tape_archive: Archive, tmp_path: Path) -> Iterator[Live]:
    """A server on the archive and, as ``dpps serve`` runs it, the campaign daemon."""
    service = AccountService(tape_archive.sessions)
    tokens = {}
    for role in (Role.DATA_PROCESSING_MANAGER, Role.READER):
        service.add_account(f"acct-{role.value}", [role.value], ["ctao"])
        tokens[role.value] = service.create_token(f"acct-{role.value}").token
    config = tmp_path / "campaign.yaml"
    config.write_text(
        yaml.safe_dump({"dl2": {"target": TARGET}, "dl3": {"pointing_tolerance_deg": 0.2}})
    )
    assert "campaigns" in daemons.NAMES  # imported: registered
    stop = threading.Event()
    options = {"stop": stop, "sleep_s": 0.2, "max_sleep_s": 0.5}
    heartbeats = DatabaseHeartbeats(tape_archive.sessions)
    args = ("campaigns", tape_archive.context, heartbeats)
    worker = threading.Thread(target=run_registered, args=args, kwargs=options)
    worker.start()
    try:
        with BackgroundServer(tape_archive) as server:
            yield Live(tape_archive, server, tokens, config)
    finally:
        stop.set()
        worker.join(timeout=30)
        assert not worker.is_alive()


def _without_time(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "seconds"}


@pytest.mark.verifies_usecase(UC)
@pytest.mark.verifies_usecase("UC-160-1.1")
# SQLite only: the daemon's run on PostgreSQL is test_record's (a campaign costs a minute).
@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_a_remote_campaign_is_run_by_the_server_and_reported_alike(live: Live) -> None:
    dpm = Role.DATA_PROCESSING_MANAGER.value
    # the plan (dry run) is the same both ways, and changes nothing
    plan = live.reprocess("--name", "remote-2026", "--dry-run", "--json")
    code, out, err = live.local(*plan)
    assert code == 0, err
    rcode, rout, rerr = live.remote(Role.READER.value, *plan)
    assert rcode == 0, rerr
    assert _without_time(json.loads(rout)) == _without_time(json.loads(out))
    assert WMS(live.archive).campaigns.recent() == []

    # the campaign: queued over REST, run by the daemon, followed by the CLI
    code, out, err = live.remote(dpm, *live.reprocess("--name", "remote-2026", "--json"))
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True
    assert report["counts"] == {
        s: {"runs": 2, "ok": 2, "failed": 0, "submitted": 2} for s in STEPS
    }
    info = WMS(live.archive).campaigns.get("remote-2026")
    assert (info.state, info.account) == ("DONE", f"acct-{dpm}")
    assert info.report == report
    produced = live.archive.list_files("meta.campaign = 'remote-2026'", limit=None)
    assert report["verification"]["products"] == len(produced) > 0

    # the record reads the same both ways
    for args in (["campaign", "show", "remote-2026", "--json"], ["campaign", "list", "--json"]):
        here, there = live.local(*args), live.remote(Role.READER.value, *args)
        assert here[0] == there[0] == 0, (here, there)
        assert json.loads(here[1]) == json.loads(there[1])
    shown = live.remote(Role.READER.value, "campaign", "show", "remote-2026")
    assert shown[0] == 0
    assert "remote-2026: DONE" in shown[1]
    assert "verified" in shown[1]

    # the same name again: rerun, nothing new to do (the daemon finds every block done)
    code, out, err = live.remote(dpm, *live.reprocess("--name", "remote-2026", "--json"))
    assert code == 0, err
    again = json.loads(out)
    assert again["staging"]["files"] == 0
    assert {(s["step"], s["how"]) for s in again["steps"]} == {("block", "existing")}
    assert WMS(live.archive).campaigns.get("remote-2026").attempts == 2


def test_remote_campaign_refusals_record_nothing(live: Live) -> None:
    dpm = Role.DATA_PROCESSING_MANAGER.value
    reader = live.remote(Role.READER.value, *live.reprocess("--name", "by-reader"))
    assert reader[0] == 8, reader  # a reader may plan but not run a campaign
    bad = live.remote(dpm, "campaign", "reprocess", "obs_id in (1", "--software-version", "2")
    assert bad[0] == 3, bad
    assert "obs_id in (1" in bad[2]
    none = live.remote(dpm, "campaign", "reprocess", "obs_id = 999", "--software-version", "2")
    assert none[0] == 5, none  # selects no DL0: refused, not a campaign over nothing
    options = live.remote(
        dpm,
        "campaign",
        "reprocess",
        QUERY,
        "--software-version",
        "2",
        "--set",
        "dl1.no_such_option=1",
    )
    assert options[0] == 4, options
    for flag in ("--models", "--irf"):
        unknown = live.remote(
            dpm,
            "campaign",
            "reprocess",
            QUERY,
            "--software-version",
            "2",
            flag,
            "ctao:/ctao/none.joblib",
        )
        assert unknown[0] == 5, unknown
        assert "ctao:/ctao/none.joblib" in unknown[2]
    assert WMS(live.archive).campaigns.recent() == []
    missing = live.remote(Role.READER.value, "campaign", "show", "nope")
    assert missing[0] == 5, missing
    # queued without waiting, then another definition under the same name is a conflict
    code, out, err = live.remote(dpm, *live.reprocess("--name", "queued", "--no-wait", "--json"))
    assert code == 0, err
    assert json.loads(out)["name"] == "queued"
    other = live.remote(
        dpm,
        "campaign",
        "reprocess",
        "obs_id = 1",
        "--software-version",
        "3",
        "--name",
        "queued",
        "--no-wait",
    )
    assert other[0] == 6, other
    assert "another definition" in other[2]
