"""Site processes (``dpps daemon NAME --site/--rses``): a transfer agent takes only the
transfers into its own RSEs, an auditor reads and a reaper deletes only its own RSEs' storage,
and a process pointed at another site's RSEs is refused before it touches anything."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, update
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.bdms.preservation.auditor import Auditor
from dpps.bdms.preservation.reaper import Reaper
from dpps.bdms.transfer.daemon import TransferDaemon
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, HeartbeatRow, ReplicaRow, RSERow, TransferRow
from dpps.cli.daemon_cmds import partition
from dpps.cli.main import app
from dpps.core.clock import utcnow
from dpps.core.daemon import DaemonContext
from dpps.core.errors import ConfigError, InvalidInput
from tests.bdms.preservation_helpers import put_replica, storage_file
from tests.bdms.replication_helpers import evaluate, ingest_dataset, tuned

pytestmark = pytest.mark.verifies_usecase("UC-190-1.2")


def _by_dest(archive: Archive) -> dict[str, list[str]]:
    with archive.sessions() as session:
        rows = session.execute(
            select(RSERow.name, TransferRow.state)
            .join(RSERow, RSERow.id == TransferRow.dest_rse_id)
            .order_by(RSERow.name)
        ).all()
    out: dict[str, list[str]] = {}
    for name, state in rows:
        out.setdefault(name, []).append(state)
    return out


def test_two_site_transfer_agents_take_only_transfers_into_their_own_rses(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "in", 4)
    arch.add_rule("/ctao/dl0/run1", copies=2, rses="PIC|DESY")
    evaluate(arch)
    assert _by_dest(arch) == {"DESY": ["QUEUED"] * 4, "PIC": ["QUEUED"] * 4}
    pic = replace(arch.context, rses=partition(arch.config, "transfer", "PIC", None))
    assert pic.rses == frozenset({"PIC", "PIC-TAPE"})
    with TransferDaemon(pic) as agent:
        assert agent.run_once(DaemonContext("transfer")) == 4
    assert _by_dest(arch) == {"DESY": ["QUEUED"] * 4, "PIC": ["DONE"] * 4}
    desy = replace(arch.context, rses=partition(arch.config, "transfer", None, "DESY"))
    with TransferDaemon(desy) as agent:
        assert agent.run_once(DaemonContext("transfer")) == 4
    assert _by_dest(arch) == {"DESY": ["DONE"] * 4, "PIC": ["DONE"] * 4}


def test_a_site_auditor_reads_and_a_site_reaper_deletes_only_its_own_rses(
    archive: Archive, tmp_path: Path
) -> None:
    dids = ingest_dataset(archive, tmp_path / "in", 3)
    for did in dids:
        put_replica(archive, did, "PIC")
        put_replica(archive, did, "DESY")
    files = {(d, r): storage_file(archive, d, r) for d in dids for r in ("PIC", "DESY", "CTAO-N")}
    with transaction(archive.sessions) as session:
        session.execute(update(ReplicaRow).values(last_verified_at=None))
    ctx = replace(archive.context, rses=partition(archive.config, "auditor", "DESY", None))
    assert Auditor(ctx).run_once(DaemonContext("auditor")) == 3
    with archive.sessions() as session:
        verified = session.execute(
            select(RSERow.name, ReplicaRow.last_verified_at).join(RSERow)
        ).all()
    assert {n for n, at in verified if at is not None} == {"DESY"}
    # every file expires: a PIC reaper deletes PIC's copies and leaves the others' storage
    with transaction(archive.sessions) as session:
        session.execute(
            update(DIDRow)
            .where(DIDRow.did_type == "FILE")
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    ctx = replace(archive.context, rses=partition(archive.config, "reaper", "PIC", None))
    Reaper(ctx).run_once(DaemonContext("reaper"))
    for did in dids:
        assert not files[did, "PIC"].exists()
        assert files[did, "DESY"].exists()
        assert files[did, "CTAO-N"].exists()
    with archive.sessions() as session:
        left = session.execute(select(RSERow.name, ReplicaRow.state).join(RSERow)).all()
    assert sorted({n for n, _ in left}) == ["CTAO-N", "DESY"]
    assert {s for _, s in left} == {"BEING_DELETED"}
    # the other sites' reapers finish their own
    for site in ("CTAO-North", "DESY"):
        ctx = replace(archive.context, rses=partition(archive.config, "reaper", site, None))
        with transaction(archive.sessions) as session:  # what a killed reaper leaves behind
            session.execute(
                update(ReplicaRow).values(updated_at=utcnow() - dt.timedelta(minutes=5))
            )
        Reaper(ctx).run_once(DaemonContext("reaper"))
    for did in dids:
        assert not files[did, "DESY"].exists()
        assert not files[did, "CTAO-N"].exists()


def test_a_site_process_pointed_at_another_sites_rses_is_refused(archive: Archive) -> None:
    config = archive.config
    with pytest.raises(ConfigError, match=r"CTAO-N \(at CTAO-North\).*own site"):
        partition(config, "transfer", "PIC", "CTAO-N")
    with pytest.raises(ConfigError, match="no such site"):
        partition(config, "reaper", "NOWHERE", None)
    with pytest.raises(ConfigError, match="selects no configured RSE"):
        partition(config, "auditor", None, "type=nothing")
    with pytest.raises(InvalidInput, match="serves the whole archive"):
        partition(config, "evaluator", "PIC", None)
    with pytest.raises(ConfigError, match="landing area is on CTAO-N"):
        partition(config, "ingest", "PIC", None)
    assert partition(config, "transfer", None, None) is None
    # a configuration that gives the process no path for its own site's storage
    lacking = config.model_copy(
        update={"rses": {n: r for n, r in config.rses.items() if r.site != "PIC"}}
    )
    with pytest.raises(ConfigError, match="no RSE at PIC"):
        partition(lacking, "transfer", "PIC", None)


def test_the_cli_refuses_before_touching_the_catalog(archive: Archive) -> None:
    workspace = str(archive.config.workspace)
    path = archive.config.workspace / "dpps.yaml"
    before = path.read_text()
    result = CliRunner().invoke(
        app,
        ["--workspace", workspace, "daemon", "transfer", "--site", "PIC", "--rses", "CTAO-N"],
    )
    assert result.exit_code != 0
    assert "own site" in result.output + str(result.stderr_bytes or b"")
    with archive.sessions() as session:
        assert session.scalars(select(HeartbeatRow)).all() == []
    assert path.read_text() == before
    assert yaml.safe_load(before)["rses"]["PIC"]["site"] == "PIC"
