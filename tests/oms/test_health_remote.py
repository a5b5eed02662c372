"""``dpps health`` over REST gives the local answer and exit code (issue 15, defect 5)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dpps.cli.main import app
from dpps.core.errors import Unavailable
from dpps.oms.server import BackgroundServer
from tests.bdms.test_auditor import beat_required
from tests.oms.conftest import Seeded

runner = CliRunner()


def both(seeded: Seeded, live: BackgroundServer) -> tuple[int, dict[str, object]]:
    local = runner.invoke(
        app, ["-w", str(seeded.archive.config.workspace), "health", "--json"], env={"DPPS_URL": ""}
    )
    remote = runner.invoke(
        app,
        ["health", "--json"],
        env={"DPPS_URL": live.url, "DPPS_TOKEN": seeded.tokens["reader"]},
    )
    assert local.exit_code == remote.exit_code, (local.stdout, remote.stdout, remote.stderr)
    mine, theirs = json.loads(local.stdout), json.loads(remote.stdout)
    for answer in (mine, theirs):
        answer.pop("checked_at")
        for daemon in answer["daemons"]:
            daemon.pop("last_seen")
    assert mine == theirs
    return local.exit_code, mine


@pytest.mark.verifies_usecase("UC-160-1.2")
def test_health_is_the_same_alarm_locally_and_remotely(
    seeded: Seeded, live: BackgroundServer
) -> None:
    code, answer = both(seeded, live)
    assert code == Unavailable.exit_code  # no daemon runs
    assert answer["ok"] is False
    assert any("not running" in a for a in answer["alarms"])  # type: ignore[attr-defined]
    beat_required(seeded.archive)
    code, answer = both(seeded, live)
    assert (code, answer["ok"], answer["alarms"]) == (0, True, [])
