"""A site's transfer agent reaching the catalog through the API (``catalog.url`` = the API).

Issue 11: a site process 150 ms from the catalog must cost at most two round trips per batch
of files. Over PostgreSQL each statement of a claim or of an outcome batch is one; through
``/api/v1/agents`` a claimed batch is one request and its outcomes one more. These tests run
the real server (uvicorn on 127.0.0.1) and count the agent's requests with httpx's hooks.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select, update
from typer.testing import CliRunner

from dpps.acada.simulate import simulate
from dpps.bdms.ingestion.queue import IngestionQueue
from dpps.bdms.ingestion.settings import QueueSettings
from dpps.bdms.preservation.auditor import SiteAuditor
from dpps.bdms.preservation.reaper import SiteReaper
from dpps.bdms.staging import stager
from dpps.bdms.staging.records import StageOutcome
from dpps.bdms.transfer.daemon import TransferDaemon
from dpps.catalog.models import EventRow, HeartbeatRow, ReplicaRow, RuleRow, StageRequestRow
from dpps.cli.main import app
from dpps.client.agent import (
    RemoteAuditLedger,
    RemoteHeartbeats,
    RemoteIngestLedger,
    RemoteLedger,
    RemoteReaperLedger,
    RemoteStageLedger,
)
from dpps.client.archive import RemoteArchive
from dpps.core.daemon import DaemonContext
from dpps.core.errors import InvalidInput, NotFound, PermissionDenied
from dpps.oms.server import BackgroundServer
from dpps.storage.checksums import checksum_file
from tests.acada.helpers import lfn_of, small, triggers_left
from tests.bdms.preservation_helpers import drop_tape_only, put_replica, set_time
from tests.bdms.replication_helpers import FAST, drive, evaluate, ingest_dataset, tuned
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


@pytest.mark.verifies_usecase("UC-190-1.2")
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
        with pytest.raises(InvalidInput, match="NUL"):  # PostgreSQL would fail on it
            agent._json(
                "POST", "/api/v1/agents/transfers/claim", json={**claim, "instance": "h\x00"}
            )
        with pytest.raises(InvalidInput):  # an id the catalog cannot hold
            agent._json(
                "POST",
                "/api/v1/agents/transfers/report",
                json={"instance": "h:1:x", "renew": [2**63]},
            )
        # transfer ids are 64-bit (migration 0008): one past 2^31 is an id like any other
        agent._json(
            "POST", "/api/v1/agents/transfers/report", json={"instance": "h:1:x", "renew": [2**31]}
        )
        # a site agent writes nothing else: no rules, no files
        with pytest.raises(PermissionDenied):
            agent._json(
                "POST",
                "/api/v1/rules",
                json={"did": "/ctao/dl0/obs_42", "copies": 1, "rses": "PIC"},
            )


@pytest.mark.verifies_usecase("UC-190-1.2")
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
        (["daemon", "evaluator", "--once"], "needs the catalog database"),
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


@pytest.mark.verifies_usecase("UC-110-1.1.1")
@pytest.mark.verifies_usecase("UC-110-1.1.4")
def test_a_telescope_site_queue_registers_through_the_api_one_request_per_batch(
    seeded: Seeded, live: BackgroundServer
) -> None:
    archive = seeded.archive
    settings = QueueSettings.from_config(archive.config, executor="inline")
    landing = settings.landing
    files = simulate(landing, small())
    requests: list[str] = []
    with RemoteArchive(live.url, seeded.tokens["site-agent"]) as remote:
        remote.http.event_hooks["request"].append(lambda r: requests.append(r.url.path))
        queue = IngestionQueue(
            None, settings, config=archive.config, ledger=RemoteIngestLedger(remote)
        )
        try:
            assert queue.run_once(DaemonContext("ingest")) == len(files)
        finally:
            queue.close()
    for path in files:  # each registered once, in place, with its checksum
        details = archive.show(lfn_of(landing, path))
        [replica] = details.replicas
        assert (replica.rse, replica.state) == ("CTAO-N", "AVAILABLE")
        assert replica.path == path.relative_to(archive.config.rse_url("CTAO-N")).as_posix()
        assert details.file.adler32 == checksum_file(path, ["adler32"])[1]["adler32"]
    assert triggers_left(landing) == []
    batches = -(-len(files) // settings.batch_size)
    registers = [p for p in requests if p.endswith("/ingest/register")]
    print(f"\n{len(files)} files: {len(requests)} requests, {len(registers)} registrations")
    assert 1 <= len(registers) <= 2 * batches, requests  # batches close early when slow
    assert set(requests) == {"/api/v1/agents/ingest/register"}, requests
    with archive.sessions() as s:  # the dataset got the policy's rules; events name the agent
        rules = s.scalars(select(RuleRow.id)).all()
        accounts = set(
            s.scalars(select(EventRow.account).where(EventRow.action == "file.register"))
        )
    assert rules
    assert "acct-site-agent" in accounts


@pytest.mark.verifies_usecase("UC-110-1.1.1")
def test_the_ingest_api_refuses_files_outside_the_queue_or_its_root(
    seeded: Seeded, live: BackgroundServer
) -> None:
    good = {
        "scope": "ctao",
        "name": "/ctao/dl0/acada/x.fits",
        "bytes": 1,
        "checksums": {"adler32": "00000001"},
        "rse_id": 0,
        "path": "acada/x.fits",
    }
    batch = {
        "scope": "ctao",
        "lfn_prefix": "/ctao/dl0/acada",
        "policy": "acada",
        "rse": "CTAO-N",
        "files": [["x.fits", good]],
    }
    cases = (
        ({"files": [["x", {**good, "path": "../../etc/passwd"}]]}, InvalidInput, "leaves"),
        ({"files": [["x", {**good, "path": "/etc/passwd"}]]}, InvalidInput, "leaves"),
        ({"files": [["x", {**good, "name": "/ctao/dl1/x.fits"}]]}, InvalidInput, "prefix"),
        ({"policy": "no-such-policy"}, NotFound, "policy"),
        ({"rse": "NOWHERE"}, NotFound, "NOWHERE"),
        ({"scope": "other"}, PermissionDenied, "scope"),
        ({"files": "not a list"}, InvalidInput, "malformed"),
    )
    with RemoteArchive(live.url, seeded.tokens["site-agent"]) as agent:
        for change, error, text in cases:
            with pytest.raises(error, match=text):
                agent._json(
                    "POST", "/api/v1/agents/ingest/register", json={"batch": {**batch, **change}}
                )
    with seeded.archive.sessions() as s:  # nothing of it reached the catalog
        assert not s.scalars(select(EventRow).where(EventRow.reason.like("%x.fits%"))).all()
    assert not [f for f in seeded.archive.list_files("") if "x.fits" in f.did]


@pytest.mark.verifies_usecase("UC-110-1.8")
def test_a_site_reaper_through_the_api_deletes_safe_on_site_copies_in_two_requests(
    seeded: Seeded, tmp_path: Path
) -> None:
    archive = tuned(
        seeded.archive,
        {**FAST, "reaper": {"onsite_retention_days": 0, "min_offsite_copies": 1}},
    )
    archive.add_rule("/ctao/dl0/obs_42", copies=1, rses="PIC")
    drive(archive)  # the off-site copies, rules OK
    onsite_root = Path(archive.config.rse_url("CTAO-N"))
    paths = {d: archive.show(d).replicas for d in seeded.dl0_files}
    requests: list[str] = []
    served = frozenset({"CTAO-N"})
    with (
        BackgroundServer(archive) as server,
        RemoteArchive(server.url, seeded.tokens["site-agent"]) as remote,
    ):
        remote.http.event_hooks["request"].append(lambda r: requests.append(r.url.path))
        site_reaper = SiteReaper(archive.config, RemoteReaperLedger(remote, served), served)
        assert site_reaper.run_once(DaemonContext("reaper")) == len(seeded.dl0_files)
    assert requests == ["/api/v1/agents/reaper/claim", "/api/v1/agents/reaper/purged"]
    for did, before in paths.items():
        onsite = next(r for r in before if r.rse == "CTAO-N")
        assert not (onsite_root / onsite.path).exists()  # the bytes are gone
        after = {r.rse: r.state for r in archive.show(did).replicas}
        assert after == {"PIC": "AVAILABLE"}, after  # and the row; the safe copy stays
    with archive.sessions() as s:
        deleted_by = set(
            s.scalars(select(EventRow.account).where(EventRow.action == "replica.delete"))
        )
    assert deleted_by == {"acct-site-agent"}


@pytest.mark.verifies_usecase("UC-110-1.8")
def test_a_site_reaper_cannot_forget_another_sites_replica(
    seeded: Seeded, live: BackgroundServer
) -> None:
    did = seeded.dl0_files[0]
    [replica] = seeded.archive.show(did).replicas
    with seeded.archive.sessions() as s:  # as if marked for deletion at CTAO-N
        replica_id = s.scalars(select(ReplicaRow.id).where(ReplicaRow.path == replica.path)).one()
        s.execute(
            update(ReplicaRow).where(ReplicaRow.id == replica_id).values(state="BEING_DELETED")
        )
        s.commit()
    lie = {"replica_id": replica_id, "rse": "PIC", "path": replica.path, "reason": "x"}
    with RemoteArchive(live.url, seeded.tokens["site-agent"]) as agent:
        answer = agent._json("POST", "/api/v1/agents/reaper/purged", json={"removed": [lie]})
        assert answer == {"forgotten": 0}  # the replica is at CTAO-N, not PIC: kept
        with pytest.raises(NotFound, match="NOWHERE"):
            agent._json(
                "POST",
                "/api/v1/agents/reaper/claim",
                json={"instance": "h:1:x", "rses": ["NOWHERE"]},
            )
        with pytest.raises(InvalidInput, match="slot"):
            agent._json(
                "POST",
                "/api/v1/agents/reaper/claim",
                json={"instance": "h:1:x", "rses": ["CTAO-N"], "slot": [2, 2]},
            )
    assert [r.rse for r in seeded.archive.show(did).replicas] == ["CTAO-N"]


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_site_heartbeats_cross_the_wan_at_most_every_interval(
    seeded: Seeded, live: BackgroundServer
) -> None:
    requests: list[str] = []
    with RemoteArchive(live.url, seeded.tokens["site-agent"]) as remote:
        remote.http.event_hooks["request"].append(lambda r: requests.append(r.url.path))
        beats = RemoteHeartbeats(remote, interval_s=60.0)
        first = beats.beat("reaper@CTAO-N", "h:1:a", {})
        assert beats.beat("reaper@CTAO-N", "h:1:a", {}) == first  # from memory
        assert len(requests) == 1
        beats.beat("reaper@CTAO-N", "h:2:b", {})  # another instance: its own beat
        assert len(requests) == 2
        with seeded.archive.sessions() as s:  # recorded as where the agent runs
            rows = s.scalars(select(HeartbeatRow).order_by(HeartbeatRow.instance)).all()
        assert [(r.daemon, r.hostname, r.pid) for r in rows] == [
            ("reaper@CTAO-N", "h", 1),
            ("reaper@CTAO-N", "h", 2),
        ]
        beats.forget("reaper@CTAO-N", "h:1:a")
        beats.beat("reaper@CTAO-N", "h:1:a", {})  # forgotten: beats again at once
        assert len(requests) == 4


@pytest.mark.verifies_usecase("UC-110-1.7")
def test_a_site_auditor_through_the_api_reads_here_and_reports_once_per_chunk(
    seeded: Seeded, live: BackgroundServer
) -> None:
    archive = seeded.archive
    onsite_root = Path(archive.config.rse_url("CTAO-N"))
    rotten_did = seeded.dl0_files[0]
    [rotten] = archive.show(rotten_did).replicas
    (onsite_root / rotten.path).write_bytes(b"bit rot")
    with archive.sessions() as s:  # ingest verified them just now: make them due again
        s.execute(update(ReplicaRow).values(last_verified_at=None))
        s.commit()
    requests: list[str] = []
    served = frozenset({"CTAO-N"})
    with RemoteArchive(live.url, seeded.tokens["site-agent"]) as remote:
        remote.http.event_hooks["request"].append(lambda r: requests.append(r.url.path))
        site_auditor = SiteAuditor(archive.config, RemoteAuditLedger(remote, served), served)
        assert site_auditor.run_once(DaemonContext("auditor")) == len(seeded.dl0_files)
        assert requests == ["/api/v1/agents/auditor/claim", "/api/v1/agents/auditor/report"]
        # a second pass finds nothing due (the intact ones were stamped, the rotten one is BAD)
        assert site_auditor.run_once(DaemonContext("auditor")) == 0
        # a report naming another site's replica, or one it was not given, changes nothing
        [dl1] = archive.show("/ctao/dl1/obs_42/tel_001.h5").replicas
        with archive.sessions() as s:
            dl1_id = s.scalars(select(ReplicaRow.id).where(ReplicaRow.path == dl1.path)).one()
        lost = RemoteAuditLedger(remote, served).record([], [(dl1_id, "says the liar")])
        assert lost == []
    assert {r.rse: r.state for r in archive.show(rotten_did).replicas} == {"CTAO-N": "BAD"}
    for did in seeded.dl0_files[1:]:
        assert [r.state for r in archive.show(did).replicas] == ["AVAILABLE"]
    assert [r.state for r in archive.show("/ctao/dl1/obs_42/tel_001.h5").replicas] == ["AVAILABLE"]
    with archive.sessions() as s:
        declared_by = set(
            s.scalars(select(EventRow.account).where(EventRow.action == "replica.bad"))
        )
    assert declared_by == {"acct-site-agent"}


@pytest.mark.verifies_usecase("UC-110-1.10")
def test_a_site_stager_through_the_api_stages_and_expires_in_two_requests_a_pass(
    seeded: Seeded, live: BackgroundServer
) -> None:
    """PIC's stager, the API as its catalog: a pass stages the due requests of PIC's tape
    into its buffer (checksums verified) in one claim and one report; a later pass removes
    the expired buffer copies the same way. Events carry the agent's account."""
    archive = seeded.archive
    on_tape = seeded.dl0_files[:3]
    for did in on_tape:
        put_replica(archive, did, "PIC-TAPE")
        drop_tape_only(archive, did)
    archive.preservation.stage(on_tape)
    set_time(archive, StageRequestRow, "requested_at", dt.timedelta(seconds=10))
    requests: list[str] = []
    served = frozenset({"PIC", "PIC-TAPE"})
    buffer = stager.buffer_storage(archive.config)
    with RemoteArchive(live.url, seeded.tokens["site-agent"]) as remote:
        remote.http.event_hooks["request"].append(lambda r: requests.append(r.url.path))
        site_stager = stager.SiteStager(archive.config, RemoteStageLedger(remote, served), served)
        assert site_stager.run_once(DaemonContext("stager")) == len(on_tape)
        assert requests == ["/api/v1/agents/stager/claim", "/api/v1/agents/stager/report"]
        with archive.sessions() as s:
            rows = list(s.scalars(select(StageRequestRow).order_by(StageRequestRow.id)))
        assert [r.state for r in rows] == ["READY"] * len(on_tape)
        for row in rows:
            assert buffer.exists(row.buffer_path or "")
        # their lifetime over, the next pass removes the buffer copies
        requests.clear()
        set_time(archive, StageRequestRow, "expires_at", dt.timedelta(seconds=1))
        assert site_stager.run_once(DaemonContext("stager")) == len(on_tape)
        assert requests == ["/api/v1/agents/stager/claim", "/api/v1/agents/stager/report"]
    with archive.sessions() as s:
        after = list(s.scalars(select(StageRequestRow).order_by(StageRequestRow.id)))
        accounts = set(s.scalars(select(EventRow.account).where(EventRow.action.like("stage.%"))))
    assert [r.state for r in after] == ["EXPIRED"] * len(on_tape)
    assert not any(buffer.exists(r.buffer_path or "") for r in after)
    assert "acct-site-agent" in accounts


@pytest.mark.verifies_usecase("UC-110-1.10")
def test_the_stager_api_refuses_what_is_not_its_own(
    seeded: Seeded, live: BackgroundServer
) -> None:
    """Unknown RSEs and malformed outcomes are refused; a report on a request the instance
    does not hold changes nothing; a stager of CSCS (no tape) is given nothing of PIC's."""
    archive = seeded.archive
    did = seeded.dl0_files[0]
    put_replica(archive, did, "PIC-TAPE")
    drop_tape_only(archive, did)
    archive.preservation.stage([did])
    set_time(archive, StageRequestRow, "requested_at", dt.timedelta(seconds=10))
    with RemoteArchive(live.url, seeded.tokens["site-agent"]) as remote:
        with pytest.raises(NotFound, match="NOWHERE"):
            RemoteStageLedger(remote, frozenset({"NOWHERE"})).claim("me:1:a", ["NOWHERE"], 5)
        assert RemoteStageLedger(remote, frozenset({"CSCS"})).claim("me:1:a", ["CSCS"], 5) == (
            [],
            [],
        )
        pic = RemoteStageLedger(remote, frozenset({"PIC-TAPE"}))
        with archive.sessions() as s:
            [req_id] = s.scalars(select(StageRequestRow.id)).all()
        with pytest.raises(InvalidInput, match="state"):
            remote._json(
                "POST",
                "/api/v1/agents/stager/report",
                json={
                    "instance": "me:1:a",
                    "rses": ["PIC-TAPE"],
                    "outcomes": [{"request_id": req_id, "state": "DONE"}],
                },
            )
        # not claimed by this instance: the READY it reports is ignored
        pic.report("liar:1:x", [StageOutcome(req_id, "READY", buffer_path="x")], [])
        with archive.sessions() as s:
            assert s.scalars(select(StageRequestRow.state)).all() == ["QUEUED"]
        jobs, _ = pic.claim("me:1:a", ["PIC-TAPE"], 5)
        assert [j.request_id for j in jobs] == [req_id]
