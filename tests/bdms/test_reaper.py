"""The reaper and deliberate deletion (UC-110-1.8, UC-110-1.9): delete what is past retention,
never what a rule needs, never a live file's last copy, and never forget a file."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.bdms.preservation import deletion, reaper
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, ReplicaRow, RuleRow
from dpps.cli.main import app
from dpps.core.daemon import DaemonContext, WorkerSlot
from dpps.core.errors import InvalidInput, NotFound
from tests.bdms.helpers import make_fits
from tests.bdms.preservation_helpers import (
    actions,
    ingest_files,
    open_workspace,
    put_replica,
    replica_rows,
    replicate,
    rule_states,
    set_time,
    storage_file,
)

ONSITE = "UC-110-1.8"
EXPIRE = "UC-110-1.9"
DATASET = "/ctao/dl0/run1"


@pytest.fixture
def archive(tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    with open_workspace(tmp_path, catalog_url, {"reaper": {"onsite_retention_days": 0}}) as arch:
        yield arch


def _reap(archive: Archive, slot: WorkerSlot | None = None) -> int:
    ctx = DaemonContext(name="reaper", slot=slot or WorkerSlot())
    return reaper.one_pass(ctx, archive.sessions, archive.config)


def _preserved(archive: Archive, tmp_path: Path, count: int = 3) -> list[str]:
    """Files ingested on-site, the ACADA policy on their dataset, replicated until OK."""
    dids = ingest_files(archive, tmp_path / "src", count)
    archive.apply_policy(DATASET, "acada")
    replicate(archive)
    return dids


@pytest.mark.verifies_usecase(ONSITE)
def test_onsite_copies_go_once_preserved_offsite(archive: Archive, tmp_path: Path) -> None:
    dids = ingest_files(archive, tmp_path / "src", 3)
    archive.apply_policy(DATASET, "acada")
    onsite = {d: storage_file(archive, d, "CTAO-N") for d in dids}
    assert _reap(archive) == 0  # rules not OK yet: nothing may go
    assert all(p.exists() for p in onsite.values())
    replicate(archive)
    assert _reap(archive) == 3
    for did in dids:
        reps = replica_rows(archive, did)
        assert "CTAO-N" not in reps
        kinds = {archive.config.rses[r].kind.value for r in reps}
        assert kinds == {"disk", "tape"}
        assert all(r.state == "AVAILABLE" for r in reps.values())
        assert not onsite[did].exists()
        assert actions(archive, did)[-2:] == ["replica.deleting", "replica.delete"]
        assert archive.show(did).file.did == did  # the file stays, with its history
    assert archive.count(f"name like {DATASET}/%") == 3
    assert _reap(archive) == 0  # idempotent


@pytest.mark.verifies_usecase(ONSITE)
def test_onsite_copies_stay_while_anything_is_missing(tmp_path: Path, catalog_url: str) -> None:
    with open_workspace(tmp_path, catalog_url) as archive:  # 7 days of on-site retention
        dids = _preserved(archive, tmp_path, 2)
        assert _reap(archive) == 0  # retention not passed
        set_time(archive, ReplicaRow, "created_at", dt.timedelta(days=8))
        with transaction(archive.sessions) as session:  # a rule still replicating
            session.execute(update(RuleRow).where(RuleRow.id == 1).values(state="REPLICATING"))
        assert _reap(archive) == 0
        with transaction(archive.sessions) as session:
            session.execute(update(RuleRow).values(state="OK"))
        tape = next(r for r in replica_rows(archive, dids[0]) if r.endswith("TAPE"))
        with transaction(archive.sessions) as session:  # one off-site copy went BAD
            session.execute(
                update(ReplicaRow)
                .where(ReplicaRow.id == replica_rows(archive, dids[0])[tape].id)
                .values(state="BAD")
            )
        assert _reap(archive) == 1  # only the other file has two good off-site copies
        assert "CTAO-N" in replica_rows(archive, dids[0])
        assert "CTAO-N" not in replica_rows(archive, dids[1])


@pytest.mark.verifies_usecase(ONSITE)
def test_a_locked_onsite_copy_is_never_deleted(archive: Archive, tmp_path: Path) -> None:
    dids = ingest_files(archive, tmp_path / "src", 1)
    archive.apply_policy(DATASET, "acada")
    archive.add_rule(dids[0], copies=1, rses="CTAO-N")  # someone wants it kept on-site
    replicate(archive)
    assert replica_rows(archive, dids[0])["CTAO-N"].lock_count == 1
    assert _reap(archive) == 0
    assert storage_file(archive, dids[0], "CTAO-N").exists()


@pytest.mark.verifies_usecase(EXPIRE)
def test_an_expired_rule_frees_its_copies(archive: Archive, tmp_path: Path) -> None:
    dids = _preserved(archive, tmp_path, 2)
    # A temporary copy at the other site (which the ACADA rules never use).
    rule_id = archive.add_rule(DATASET, copies=1, rses="CTAO-S", lifetime=dt.timedelta(days=1))
    replicate(archive)
    assert all(replica_rows(archive, d)["CTAO-S"].lock_count == 1 for d in dids)
    _reap(archive)  # the CTAO-N copies go; the CTAO-S copies are still wanted
    assert all(set(replica_rows(archive, d)) & {"CTAO-N", "CTAO-S"} == {"CTAO-S"} for d in dids)
    set_time(archive, RuleRow, "expires_at", dt.timedelta(seconds=1), id=rule_id)
    _reap(archive)
    with archive.sessions() as session:
        assert session.get(RuleRow, rule_id) is None
    for did in dids:
        reps = replica_rows(archive, did)
        assert "CTAO-S" not in reps
        assert len(reps) == 2
    assert "rule.expire" in actions(archive)
    assert rule_states(archive) == ["OK", "OK"]


@pytest.mark.verifies_usecase(EXPIRE)
def test_a_tombstone_never_takes_a_live_files_last_copy(archive: Archive, tmp_path: Path) -> None:
    [did] = ingest_files(archive, tmp_path / "src", 1)
    with transaction(archive.sessions) as session:
        session.execute(update(ReplicaRow).values(tombstone_at=dt.datetime(2000, 1, 1)))
    assert _reap(archive) == 0
    assert replica_rows(archive, did)["CTAO-N"].state == "AVAILABLE"
    put_replica(archive, did, "PIC")
    with transaction(archive.sessions) as session:
        session.execute(update(ReplicaRow).values(tombstone_at=dt.datetime(2000, 1, 1)))
    assert _reap(archive) == 1  # one of the two may go, never both
    assert len(replica_rows(archive, did)) == 1


@pytest.mark.verifies_usecase(EXPIRE)
def test_simulated_dl0_expires_after_its_default_lifetime(
    archive: Archive, tmp_path: Path
) -> None:
    sim = make_fits(tmp_path / "src", "sim.fits", category="SIM", seed=7)
    real = make_fits(tmp_path / "src", "real.fits", seed=8)
    archive.ingest([sim, real], "CTAO-N", lfn_prefix="/ctao/sim", dataset="/ctao/sim")
    sim_did, real_did = "ctao:/ctao/sim/sim.fits", "ctao:/ctao/sim/real.fits"
    put_replica(archive, sim_did, "PIC")
    archive.add_rule(sim_did, copies=1, rses="PIC")
    _reap(archive)
    with archive.sessions() as session:
        rows = {
            r.name: r for r in session.scalars(select(DIDRow).where(DIDRow.did_type == "FILE"))
        }
    sim_row, real_row = rows["/ctao/sim/sim.fits"], rows["/ctao/sim/real.fits"]
    assert real_row.expires_at is None
    assert sim_row.expires_at is not None
    assert (sim_row.expires_at - sim_row.created_at).days == 1095  # 3 years
    assert "did.lifetime" in actions(archive, sim_did)
    assert len(replica_rows(archive, sim_did)) == 2  # not yet
    set_time(archive, DIDRow, "expires_at", dt.timedelta(seconds=1), id=sim_row.id)
    _reap(archive)
    assert replica_rows(archive, sim_did) == {}
    assert not (tmp_path / "ws" / "rse" / "CTAO-N" / "ctao/ctao/sim/sim.fits").exists()
    details = archive.show(sim_did)  # the record stays
    assert "did.expire" in [e.action for e in details.events]
    assert "rule.delete" in [e.action for e in details.events]
    assert [f.did for f in archive.list_files("name like /ctao/sim/%")] == [real_did]
    assert len(replica_rows(archive, real_did)) == 1


@pytest.mark.verifies_usecase(EXPIRE)
def test_deliberate_deletion_removes_rules_and_replicas_but_not_the_record(
    archive: Archive, tmp_path: Path
) -> None:
    dids = _preserved(archive, tmp_path, 3)
    shared = dids[0]
    archive.ingest(
        [make_fits(tmp_path / "other", "x.fits", seed=99)],
        "CTAO-N",
        lfn="/other/x.fits",
        dataset="/other",
    )
    from dpps.catalog import attachments as attachment_repo
    from dpps.catalog import dids as did_repo
    from dpps.core.identifiers import parse_did

    with transaction(archive.sessions) as session:
        other = did_repo.get_did(session, parse_did("ctao:/other"))
        attachment_repo.attach(
            session, other.id, [did_repo.get_did(session, parse_did(shared)).id]
        )
    files_before = {
        d: [storage_file(archive, d, r) for r in replica_rows(archive, d)] for d in dids
    }
    report = archive.preservation.delete(DATASET, reason="test campaign withdrawn")
    assert report.files == 2
    assert report.rules_removed == 2
    assert report.replicas_pending == 0
    assert report.replicas_deleted == 6
    assert report.kept == ["ctao:/other"]
    for did in dids[1:]:
        assert replica_rows(archive, did) == {}
        assert not any(p.exists() for p in files_before[did])
        evs = archive.show(did).events
        assert any(e.action == "did.delete" and e.reason == "test campaign withdrawn" for e in evs)
    assert len(replica_rows(archive, shared)) == 3  # still in /other: kept
    assert rule_states(archive) == []
    assert archive.count(f"name like {DATASET}/%") == 1
    with pytest.raises(NotFound, match="already deleted"):
        archive.preservation.delete(DATASET, reason="again")
    with pytest.raises(InvalidInput, match="reason"):
        archive.preservation.delete(shared, reason=" ")
    assert len(replica_rows(archive, shared)) == 3


@pytest.mark.verifies_usecase(EXPIRE)
def test_deletion_refused_by_storage_is_finished_later(archive: Archive, tmp_path: Path) -> None:
    [did] = ingest_files(archive, tmp_path / "src", 1)
    put_replica(archive, did, "PIC")
    stuck = storage_file(archive, did, "PIC")
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode:
        pytest.skip("chattr +i (immutable files) is not supported here")
    try:
        report = archive.preservation.delete(did, reason="withdrawn")
        assert report.replicas_deleted == 1
        assert report.replicas_pending == 1
        assert "PIC" in report.errors[0]
        assert replica_rows(archive, did)["PIC"].state == "BEING_DELETED"
        assert archive.list_files(f"name = {did.partition(':')[2]}") == []  # deleted for users
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert _reap(archive) == 0  # maybe still in progress elsewhere: wait a little
    set_time(archive, ReplicaRow, "updated_at", dt.timedelta(minutes=5))
    assert _reap(archive) == 1
    assert replica_rows(archive, did) == {}
    assert not stuck.exists()


@pytest.mark.verifies_usecase(EXPIRE)
def test_a_killed_reaper_is_resumed(archive: Archive, tmp_path: Path) -> None:
    dids = ingest_files(archive, tmp_path / "src", 2)
    put_replica(archive, dids[0], "PIC")
    rep = replica_rows(archive, dids[0])["PIC"]
    with transaction(archive.sessions) as session:  # marked, then the process died
        deletion.mark_being_deleted(session, [rep.id], account="reaper", reason="test")
    assert storage_file(archive, dids[0], "PIC").exists()
    set_time(archive, ReplicaRow, "updated_at", dt.timedelta(minutes=5), id=rep.id)
    assert _reap(archive) == 1
    assert "PIC" not in replica_rows(archive, dids[0])
    assert actions(archive, dids[0])[-1] == "replica.delete"


@pytest.mark.verifies_usecase(ONSITE)
def test_two_reapers_delete_each_replica_once(archive: Archive, tmp_path: Path) -> None:
    dids = ingest_files(archive, tmp_path / "src", 20)
    for did in dids:
        put_replica(archive, did, "PIC")
    with transaction(archive.sessions) as session:
        pic = archive.rse_id("PIC")
        session.execute(
            update(ReplicaRow)
            .where(ReplicaRow.rse_id == pic)
            .values(tombstone_at=dt.datetime(2000, 1, 1))
        )
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            _reap(archive, WorkerSlot(number, 2))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert all(list(replica_rows(archive, d)) == ["CTAO-N"] for d in dids)
    assert actions(archive).count("replica.delete") == 20


def test_cli_delete_and_its_errors(archive: Archive, tmp_path: Path) -> None:
    [did] = ingest_files(archive, tmp_path / "src", 1)
    runner = CliRunner()
    ws = ("-w", str(archive.config.workspace))
    res = runner.invoke(app, [*ws, "delete", did])
    assert res.exit_code == 2  # --reason is required
    res = runner.invoke(app, [*ws, "delete", did, "--reason", "bad calibration", "--json"])
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["files"] == 1
    assert out["replicas_deleted"] == 1
    res = runner.invoke(app, [*ws, "delete", did, "--reason", "again"])
    assert res.exit_code == NotFound.exit_code
    assert "already deleted" in res.stderr
    assert res.stderr.count("\n") == 1
    res = runner.invoke(app, [*ws, "delete", "/no/such.fits", "--reason", "x"])
    assert res.exit_code == NotFound.exit_code


def test_a_bad_lifetime_filter_is_a_configuration_error(tmp_path: Path, catalog_url: str) -> None:
    from dpps.core.errors import ConfigError

    overrides = {"reaper": {"lifetimes": {"categroy=SIM": 10}}}
    with (
        open_workspace(tmp_path, catalog_url, overrides) as archive,
        pytest.raises(ConfigError, match="categroy"),
    ):
        _reap(archive)
