"""A site's transfer agent reaching the catalog through the API (``catalog.url`` = the API).

Issue 11: a site process 150 ms from the catalog must cost at most two round trips per batch
of files. Over PostgreSQL each statement of a claim or of an outcome batch is one; through
``/api/v1/agents`` a claimed batch is one request and its outcomes one more. These tests run
the real server (uvicorn on 127.0.0.1) and count the agent's requests with httpx's hooks.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from dpps.bdms.transfer.daemon import TransferDaemon
from dpps.catalog.models import EventRow, HeartbeatRow
from dpps.cli.main import app
from dpps.client.agent import RemoteLedger
from dpps.client.archive import RemoteArchive
from dpps.core.daemon import DaemonContext
from dpps.core.errors import InvalidInput, NotFound, PermissionDenied
from dpps.oms.server import BackgroundServer
from tests.bdms.replication_helpers import evaluate, ingest_dataset, tuned
from tests.oms.conftest import Seeded

FILES = 40
runner = CliRunner()


def agent_workspace(seeded: Seeded, live: BackgroundServer, tmp_path: Path) -> Path:
    """The off-site center's workspace: the same RSEs, the API as its catalog."""
    data = yaml.safe_load((seeded.archive.config.workspace / "dpps.yaml").read_text())
    for rse in data["rses"].values():  # the server's paths, made absolute for this workspace
        url = rse["url"]
        if "://" not in url and not Path(url).is_absolute():
            rse["url"] = str(seeded.archive.config.workspace / url)
    data["catalog"] = {"url": live.url, "token_file": "agent.token"}
    workspace = tmp_path / "pic"
    workspace.mkdir()
    (workspace / "dpps.yaml").write_text(yaml.safe_dump(data))
    (workspace / "agent.token").write_text(seeded.tokens["site-agent"] + "\n")
    return workspace


@pytest.mark.verifies_usecase("UC-190-1.2")
def test_an_agent_through_the_api_costs_two_requests_per_batch(
    seeded: Seeded, live: BackgroundServer, tmp_path: Path
) -> None:
    archive = tuned(seeded.archive, {"transfers": {"batch": FILES, "threads": 4}})
    dids = ingest_dataset(archive, tmp_path / "in", FILES)
    archive.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    evaluate(archive)
    requests: list[tuple[str, int]] = []
    with RemoteArchive(live.url, seeded.tokens["site-agent"]) as remote:
        remote.http.event_hooks["response"].append(
            lambda r: requests.append((r.request.url.path, len(r.read())))
        )
        ledger = RemoteLedger(remote, frozenset({"PIC"}))
        with TransferDaemon(config=archive.config, ledger=ledger) as agent:
            done = agent.run_once(DaemonContext("transfer"))
    assert done == FILES
    claims = [n for path, n in requests if path.endswith("/claim")]
    reports = [path for path, _ in requests if path.endswith("/report")]
    working_claims = [n for n in claims if n > len('{"jobs":[]}')]
    print(
        f"\n{len(requests)} requests for {FILES} files: {len(working_claims)} claims with work, "
        f"{len(claims) - len(working_claims)} empty, {len(reports)} reports"
    )
    assert len(working_claims) == 1  # one batch of FILES
    # The batch's copies are reported as they finish (at least once a second), each report
    # carrying many: at most two requests per batch on this local, fast storage.
    assert len(working_claims) + len(reports) <= 2 * len(working_claims) + 1, requests
    for did in dids:
        replicas = {r.rse: r.state for r in archive.locate(did).replicas}
        assert replicas["PIC"] == "AVAILABLE", (did, replicas)
    rule = archive.replication.list_rules(did="/ctao/dl0/run1")[0]
    assert rule.state == "OK"
    with archive.sessions() as s:  # the catalog names the agent's account for what it did
        accounts = set(
            s.scalars(select(EventRow.account).where(EventRow.action == "transfer.done"))
        )
    assert accounts == {"acct-site-agent"}


def test_the_agent_api_refuses_what_is_not_its_own(seeded: Seeded, live: BackgroundServer) -> None:
    claim = {"instance": "h:1:x", "limit": 10, "rses": ["PIC"]}
    with (
        RemoteArchive(live.url, seeded.tokens["reader"]) as reader,
        pytest.raises(PermissionDenied, match="may not agent"),
    ):
        reader._json("POST", "/api/v1/agents/transfers/claim", json=claim)
    with RemoteArchive(live.url, seeded.tokens["site-agent"]) as agent:
        with pytest.raises(NotFound, match=r"unknown RSE.*NOWHERE"):
            agent._json(
                "POST", "/api/v1/agents/transfers/claim", json={**claim, "rses": ["NOWHERE"]}
            )
        with pytest.raises(InvalidInput, match="malformed transfer outcome"):
            agent._json(
                "POST",
                "/api/v1/agents/transfers/report",
                json={"instance": "h:1:x", "outcomes": [{"job": {"transfer_id": 1}}]},
            )
        with pytest.raises(InvalidInput):
            agent._json("POST", "/api/v1/agents/transfers/claim", json={**claim, "limit": 0})
        # a site agent writes nothing else: no rules, no files
        with pytest.raises(PermissionDenied):
            agent._json(
                "POST",
                "/api/v1/rules",
                json={"did": "/ctao/dl0/obs_42", "copies": 1, "rses": "PIC"},
            )


def test_dpps_daemon_transfer_runs_a_site_agent_against_the_api(
    seeded: Seeded, live: BackgroundServer, tmp_path: Path
) -> None:
    archive = seeded.archive
    archive.add_rule("/ctao/dl0/obs_42", copies=1, rses="PIC")
    evaluate(archive)
    workspace = agent_workspace(seeded, live, tmp_path)
    env = {"DPPS_URL": "", "DPPS_TOKEN": "", "DPPS_WORKSPACE": None}
    result = runner.invoke(
        app,
        ["-w", str(workspace), "daemon", "transfer", "--site", "PIC", "--once", "--json"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "transfer" in json.loads(result.stdout)
    for did in seeded.dl0_files:
        assert {r.rse: r.state for r in archive.locate(did).replicas}["PIC"] == "AVAILABLE"
    with archive.sessions() as s:  # it beat under its partition's name while it ran
        beats = s.scalars(select(HeartbeatRow.daemon)).all()
    assert "transfer@PIC" in beats or not beats  # forgotten again when it stopped cleanly

    # Refusals, before anything runs: no --site, a daemon that needs the database, no token.
    refusals = (
        (["daemon", "transfer", "--once"], "give --site or --rses"),
        (["daemon", "reaper", "--site", "PIC", "--once"], "needs the catalog database"),
    )
    for args, message in refusals:
        r = runner.invoke(app, ["-w", str(workspace), *args], env=env)
        assert r.exit_code == 4, (args, r.output)
        assert message in r.stderr, r.stderr
    (workspace / "agent.token").unlink()
    r = runner.invoke(
        app, ["-w", str(workspace), "daemon", "transfer", "--site", "PIC", "--once"], env=env
    )
    assert r.exit_code == 4, r.output
    assert "agent.token" in r.stderr
    with httpx.Client() as plain:  # the server says no to an agent without a token
        assert plain.post(f"{live.url}/api/v1/agents/heartbeats", json={}).status_code == 401
