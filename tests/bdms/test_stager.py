"""Tape staging (UC-110-1.10): stage requests, the stager daemon, get/locate on tape-only files."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.bdms.daemons import REGISTRY
from dpps.bdms.staging import stager
from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.catalog.models import StageRequestRow
from dpps.cli.main import app
from dpps.core.daemon import DaemonContext, run_registered
from dpps.core.errors import ConfigError, InvalidInput, NotFound, Unavailable
from tests.bdms.preservation_helpers import (
    actions,
    drop_tape_only,
    ingest_files,
    open_workspace,
    put_replica,
    replica_rows,
    set_time,
    storage_file,
)

UC = "UC-110-1.10"
pytestmark = pytest.mark.verifies_usecase(UC)


@pytest.fixture
def archive(tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    with open_workspace(tmp_path, catalog_url) as arch:
        yield arch


@pytest.fixture
def on_tape(archive: Archive, tmp_path: Path) -> list[str]:
    """Three files whose only replica is on PIC-TAPE."""
    dids = ingest_files(archive, tmp_path / "src", 3)
    for did in dids:
        put_replica(archive, did, "PIC-TAPE")
        drop_tape_only(archive, did)
    return dids


def _requests(archive: Archive) -> list[StageRequestRow]:
    with archive.sessions() as session:
        return list(session.scalars(select(StageRequestRow).order_by(StageRequestRow.id)))


def _stager(archive: Archive, **kw: object) -> int:
    return stager.one_pass(DaemonContext(name="stager"), archive.sessions, archive.config, **kw)  # type: ignore[arg-type]


def test_get_stages_tape_only_files_and_verifies_them(
    archive: Archive, on_tape: list[str], tmp_path: Path
) -> None:
    """Without a stager daemon the waiting client stages its own files, then reads them."""
    report = archive.get(on_tape, tmp_path / "out")
    assert [r.status for r in report.results] == ["retrieved"] * 3
    for did, result in zip(on_tape, report.results, strict=True):
        assert result.rse == "PIC-TAPE"
        assert "(staged)" in result.source
        original = storage_file(archive, did, "PIC-TAPE").read_bytes()
        assert Path(result.path or "").read_bytes() == original
        assert actions(archive, did)[-2:] == ["stage.request", "stage.ready"]
    requests = _requests(archive)
    assert [r.state for r in requests] == ["READY"] * 3
    buffer = stager.buffer_storage(archive.config)
    assert all(buffer.exists(r.buffer_path or "") for r in requests)


def test_no_wait_requests_staging_and_a_second_get_reads_the_buffer(
    archive: Archive, on_tape: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = archive.get(on_tape[:1], out / "a.fits", wait=False)
    [result] = first.results
    assert result.status == "staging"
    assert not (out / "a.fits").exists()
    [req] = _requests(archive)
    assert req.state == "QUEUED"
    # A second request for the same file joins the open one.
    archive.get(on_tape[:1], out / "a.fits", wait=False)
    assert len(_requests(archive)) == 1
    set_time(archive, StageRequestRow, "requested_at", dt.timedelta(seconds=10), id=req.id)
    assert _stager(archive) == 1
    second = archive.get(on_tape[:1], out / "a.fits", wait=False)
    assert second.results[0].status == "retrieved"
    assert (out / "a.fits").read_bytes() == storage_file(
        archive, on_tape[0], "PIC-TAPE"
    ).read_bytes()


def test_stager_waits_for_the_tape_delay(archive: Archive, on_tape: list[str]) -> None:
    archive.config.rses["PIC-TAPE"].__dict__["staging_delay_s"] = 3600.0
    archive.preservation.stage(on_tape)
    assert _stager(archive) == 0
    assert {r.state for r in _requests(archive)} == {"QUEUED"}
    infos = archive.preservation.stage_requests()
    assert all(i.eta_seconds is not None and i.eta_seconds > 3000 for i in infos)
    page = archive.preservation.stage_listing(limit=2, offset=1)  # stage --list paging
    assert [i.id for i in page.items] == [infos[1].id, infos[0].id]  # newest first
    assert (page.total, archive.preservation.stage_listing(state="READY").total) == (3, 0)
    set_time(archive, StageRequestRow, "requested_at", dt.timedelta(hours=2))
    assert _stager(archive) == 3
    assert {r.state for r in _requests(archive)} == {"READY"}


def test_locate_includes_the_staging_time(archive: Archive, on_tape: list[str]) -> None:
    before = archive.locate(on_tape[0])
    assert before.available
    assert before.best_rse == "PIC-TAPE"
    delay = archive.config.rses["PIC-TAPE"].staging_delay_s
    assert before.estimated_seconds is not None
    assert before.estimated_seconds >= delay
    archive.preservation.stage(on_tape[:1], wait=True)
    after = archive.locate(on_tape[0])
    assert after.estimated_seconds is not None
    assert after.estimated_seconds == pytest.approx(before.estimated_seconds - delay)


def test_buffer_copies_expire(archive: Archive, on_tape: list[str], tmp_path: Path) -> None:
    [info] = archive.preservation.stage(on_tape[:1], wait=True)
    assert info.state == "READY"
    assert info.buffer_path
    buffer = stager.buffer_storage(archive.config)
    assert buffer.exists(info.buffer_path)
    assert _stager(archive) == 0  # not expired yet: nothing to do
    set_time(archive, StageRequestRow, "expires_at", dt.timedelta(seconds=1), id=info.id)
    assert _stager(archive) == 1
    [req] = _requests(archive)
    assert req.state == "EXPIRED"
    assert not buffer.exists(info.buffer_path)
    assert not any((tmp_path / "ws" / "staging").rglob("*.fits"))
    assert actions(archive, on_tape[0])[-1] == "stage.expire"
    # Reading again stages again.
    report = archive.get(on_tape[:1], tmp_path / "again.fits")
    assert report.results[0].status == "retrieved"
    assert [r.state for r in _requests(archive)] == ["EXPIRED", "READY"]


def test_a_damaged_tape_replica_fails_staging_and_is_marked_bad(
    archive: Archive, on_tape: list[str], tmp_path: Path
) -> None:
    path = storage_file(archive, on_tape[0], "PIC-TAPE")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    report = archive.get(on_tape[:1], tmp_path / "x.fits")
    [result] = report.results
    assert result.status == "failed"
    assert result.error_type == "Unavailable"
    assert "no AVAILABLE tape replica" in (result.error or "")
    assert not (tmp_path / "x.fits").exists()
    assert replica_rows(archive, on_tape[0])["PIC-TAPE"].state == "BAD"
    assert "replica.bad" in actions(archive, on_tape[0])
    [req] = _requests(archive)
    assert req.state == "FAILED"
    assert "checksum" in (req.error or "")


def test_a_killed_stager_leaves_the_request_to_another(
    archive: Archive, on_tape: list[str]
) -> None:
    archive.preservation.stage(on_tape[:1])
    set_time(archive, StageRequestRow, "requested_at", dt.timedelta(seconds=10))
    dead = DaemonContext(name="stager")
    ledger = stager.CatalogStageLedger(archive.sessions, archive.config)
    claimed, _ = ledger.claim(dead.instance, ["PIC-TAPE"], 10)
    assert len(claimed) == 1  # ... and the owner dies before copying
    assert _stager(archive) == 0  # leased: another stager leaves it alone
    set_time(archive, StageRequestRow, "lease_expires_at", dt.timedelta(seconds=1))
    assert _stager(archive) == 1
    assert [r.state for r in _requests(archive)] == ["READY"]
    assert actions(archive, on_tape[0]).count("stage.ready") == 1


def test_two_stagers_stage_each_request_once(archive: Archive, tmp_path: Path) -> None:
    dids = ingest_files(archive, tmp_path / "many", 12, prefix="/ctao/dl0/many", dataset=None)
    for did in dids:
        put_replica(archive, did, "DESY-TAPE")
        drop_tape_only(archive, did, keep="DESY-TAPE")
    archive.preservation.stage(dids)
    set_time(archive, StageRequestRow, "requested_at", dt.timedelta(seconds=10))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while _stager(archive, batch=2):
                pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert {r.state for r in _requests(archive)} == {"READY"}
    assert actions(archive).count("stage.ready") == len(dids)


def test_the_registered_daemon_runs_once(archive: Archive, on_tape: list[str]) -> None:
    archive.preservation.stage(on_tape)
    set_time(archive, StageRequestRow, "requested_at", dt.timedelta(seconds=10))
    assert REGISTRY["stager"].package == "bdms"
    ctx = run_registered(
        "stager", archive.context, DatabaseHeartbeats(archive.sessions), once=True
    )
    assert not ctx.errors
    assert {r.state for r in _requests(archive)} == {"READY"}


def test_staging_needs_a_tape_replica_and_a_file(
    archive: Archive, on_tape: list[str], tmp_path: Path
) -> None:
    [disk_only] = ingest_files(archive, tmp_path / "d", 1, prefix="/disk", dataset="/disk")
    with pytest.raises(Unavailable, match="no AVAILABLE tape replica"):
        archive.preservation.stage([disk_only])
    with pytest.raises(NotFound):
        archive.preservation.stage(["/no/such/file.fits"])
    with pytest.raises(NotFound):
        archive.preservation.stage(["/ctao/dl0/run1"])  # a dataset, not a file
    with pytest.raises(InvalidInput):
        archive.preservation.stage([])
    assert _requests(archive) == []


def test_buffer_may_be_a_disk_rse_but_not_tape(tmp_path: Path, catalog_url: str) -> None:
    with open_workspace(tmp_path / "a", catalog_url, {"staging": {"buffer": "CSCS"}}) as arch:
        assert stager.buffer_storage(arch.config).name == "CSCS"
    with (
        open_workspace(tmp_path / "b", catalog_url, {"staging": {"buffer": "PIC-TAPE"}}) as arch,
        pytest.raises(NotFound, match="must be a disk RSE"),
    ):
        stager.buffer_storage(arch.config)
    with pytest.raises(ConfigError, match="buffer_lifetime_s"):
        open_workspace(tmp_path / "c", catalog_url, {"staging": {"buffer_lifetime_s": -1}})


def test_cli_get_no_wait_then_stage_wait(
    archive: Archive, on_tape: list[str], tmp_path: Path
) -> None:
    runner = CliRunner()
    ws = ("-w", str(archive.config.workspace))
    res = runner.invoke(app, [*ws, "get", on_tape[0], str(tmp_path / "o.fits"), "--no-wait"])
    # Nothing fetched yet: "unavailable", so a script does not go on as if the file were there.
    assert res.exit_code == Unavailable.exit_code, res.stderr
    assert "staging requested" in res.stdout
    assert "1 not retrieved yet" in res.stderr
    assert not (tmp_path / "o.fits").exists()
    res = runner.invoke(app, [*ws, "stage", on_tape[0], "--wait", "--json"])
    assert res.exit_code == 0, res.stderr
    [info] = json.loads(res.stdout)
    assert info["state"] == "READY"
    assert info["rse"] == "PIC-TAPE"
    res = runner.invoke(app, [*ws, "stage", "--list", "--state", "READY", "--json"])
    assert [i["did"] for i in json.loads(res.stdout)["items"]] == [on_tape[0]]
    res = runner.invoke(app, [*ws, "get", on_tape[0], str(tmp_path / "o.fits"), "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["results"][0]["status"] == "retrieved"
    res = runner.invoke(app, [*ws, "stage", "/no/such.fits"])
    assert res.exit_code == NotFound.exit_code
    assert res.stderr.count("\n") == 1
