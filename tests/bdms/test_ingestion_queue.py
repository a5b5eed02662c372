"""The ACADA ingestion queue (UC-110-1.1.1, UC-110-1.1.4) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from astropy.io import fits
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from typer.testing import CliRunner

from dpps.acada.simulate import simulate
from dpps.bdms.archive import Archive
from dpps.bdms.ingestion.queue import IngestionQueue
from dpps.bdms.samples import corrupt_bytes, truncate
from dpps.catalog.models import DIDRow, EventRow, RuleRow
from dpps.cli.main import app
from dpps.core.config import config_from_dict
from dpps.core.daemon import DaemonContext
from dpps.core.errors import ConfigError, Conflict, NotFound
from dpps.storage.checksums import checksum_file
from tests.acada.helpers import (
    assert_exactly_once,
    lfn_of,
    simulate_untriggered,
    small,
    trigger,
    triggers_left,
)

ACADA = "UC-110-1.1.1"
QUEUE = "UC-110-1.1.4"


@pytest.fixture
def queue(archive: Archive) -> Iterator[IngestionQueue]:
    q = archive.acada.queue(executor="inline")
    yield q
    q.close()


def run(queue: IngestionQueue) -> int:
    return queue.run_once(DaemonContext("ingest"))


def events(archive: Archive, action: str) -> list[EventRow]:
    with archive.sessions() as s:
        return list(s.scalars(select(EventRow).where(EventRow.action == action)))


@pytest.mark.verifies_usecase(ACADA)
@pytest.mark.verifies_usecase(QUEUE)
def test_simulated_files_are_taken_in_place_with_datasets_and_rules(
    archive: Archive, queue: IngestionQueue
) -> None:
    landing = queue.settings.landing
    files = simulate(landing, small())
    assert run(queue) == len(files)
    lfns = [lfn_of(landing, f) for f in files]
    assert_exactly_once(archive, lfns)
    assert triggers_left(landing) == []
    rse_root = Path(archive.config.rse_url("CTAO-N"))
    assert not (rse_root / "ctao").exists()  # nothing was copied to the deterministic path
    for path, lfn in zip(files, lfns, strict=True):
        details = archive.show(lfn)
        [replica] = details.replicas
        assert (replica.rse, replica.state) == ("CTAO-N", "AVAILABLE")
        assert replica.path == path.relative_to(rse_root).as_posix()
        size, sums = checksum_file(path, ["adler32", "blake3"])
        assert (details.file.bytes, details.file.adler32, details.file.blake3) == (
            size,
            sums["adler32"],
            sums["blake3"],
        )
        assert details.file.data_level == "DL0"
        assert details.file.obs_id == 1
        assert details.parents == ["ctao:" + lfn.rsplit("/", 1)[0]]
    # Each directory is a dataset with the acada policy's rules; containers up to /ctao/dl0.
    policy = archive.config.policies["acada"]
    with archive.sessions() as s:
        datasets = s.scalars(select(DIDRow).where(DIDRow.did_type == "DATASET")).all()
        assert {d.name for d in datasets} == {lfn.rsplit("/", 1)[0] for lfn in lfns}
        for d in datasets:
            rules = s.scalars(select(RuleRow).where(RuleRow.did_id == d.id)).all()
            assert sorted(
                (r.rse_expression, r.source_expression, r.copies) for r in rules
            ) == sorted((t.rses, t.source, t.copies) for t in policy)
            assert {r.account for r in rules} == {"acada"}
    tel_dataset = archive.show("/ctao/dl0/TEL001/events/2026/11/21")
    assert tel_dataset.parents == ["ctao:/ctao/dl0/TEL001/events/2026/11"]
    assert archive.show("/ctao/dl0/TEL001").parents == ["ctao:/ctao/dl0"]
    assert archive.show("/ctao/dl0").parents == []
    # A second pass finds nothing to do and changes nothing.
    before = assert_exactly_once(archive, lfns)
    assert run(queue) == 0
    assert assert_exactly_once(archive, lfns) == before
    assert queue.metrics.value("succeeded") == len(files)
    assert len(queue.latencies) == len(files)


@pytest.mark.verifies_usecase(QUEUE)
def test_prometheus_metrics_are_served_on_loopback(archive: Archive) -> None:
    q = archive.acada.queue(executor="inline", metrics_port=0)
    try:
        files = simulate(q.settings.landing, small())
        corrupt_bytes(files[0])
        run(q)
        assert q.metrics_port is not None
        server = q.metrics._server
        assert server is not None
        assert server.server_address[0] == "127.0.0.1"
        url = f"http://127.0.0.1:{q.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
    finally:
        q.close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    outcome = "dpps_acada_files_total"
    assert samples[(outcome, (("outcome", "succeeded"),))] == len(files) - 1
    assert samples[(outcome, (("outcome", "quarantined"),))] == 1
    assert samples[(outcome, (("outcome", "failed"),))] == 0
    assert samples[("dpps_acada_bytes_total", ())] == sum(f.stat().st_size for f in files[1:])
    assert samples[("dpps_acada_queue_length", ())] == len(files)
    latency = "dpps_acada_trigger_to_registered_seconds_count"
    assert samples[(latency, ())] == len(files) - 1


def _fits_without(path: Path, keyword: str) -> Path:
    primary = fits.PrimaryHDU()
    for key, value in {
        "DATALEVL": "DL0",
        "DATATYPE": "MONITORING",
        "OBS_ID": 5,
        "SB_ID": 1,
        "OBSNIGHT": "2026-11-21",
    }.items():
        if key != keyword:
            primary.header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([primary]).writeto(path, checksum=True)
    return path


@pytest.mark.verifies_usecase(ACADA)
@pytest.mark.parametrize(
    ("case", "error_type", "words"),
    [
        ("datasum", "IntegrityFailure", "DATASUM mismatch"),
        ("truncated", "IntegrityFailure", "truncated"),
        ("no_sb_id", "InvalidInput", "missing required metadata: sb_id"),
        ("no_datalevl", "InvalidInput", "missing required metadata: data_level"),
        ("empty", "InvalidInput", "empty"),
        ("not_fits", "IntegrityFailure", "not one"),
        ("bad_name", "InvalidInput", "are not allowed"),
    ],
)
def test_bad_files_go_to_quarantine_with_their_reason(
    archive: Archive, queue: IngestionQueue, case: str, error_type: str, words: str
) -> None:
    landing = queue.settings.landing
    good = simulate_untriggered(landing, small())
    where = landing / "dl0" / "TEL001" / "events" / "2026" / "11" / "21"
    if case == "datasum":
        bad = good.pop(0)
        corrupt_bytes(bad)
    elif case == "truncated":
        bad = good.pop(0)
        truncate(bad, 0.6)
    elif case == "no_sb_id":
        bad = _fits_without(where / "X_WEATHER.fits", "SB_ID")
    elif case == "no_datalevl":
        bad = _fits_without(where / "X_WEATHER.fits", "DATALEVL")
    elif case == "empty":
        bad = where / "EMPTY.fits.fz"
        bad.write_bytes(b"")
    elif case == "not_fits":
        bad = where / "NOT_FITS.fits.fz"
        bad.write_bytes(b"this is not a FITS file\n" * 200)
    else:
        bad = where / "BAD NAME.fits.fz"  # a space: no valid LFN
        bad.write_bytes(good.pop(0).read_bytes())
    for path in [*good, bad]:
        trigger(path)
    rel = bad.relative_to(landing).as_posix()

    run(queue)

    assert_exactly_once(archive, [lfn_of(landing, f) for f in good])
    assert triggers_left(landing) == []
    assert not bad.exists()
    moved = queue.settings.quarantine / rel
    assert moved.is_file()
    reason = json.loads((queue.settings.quarantine / (rel + ".reason.json")).read_text())
    assert reason["path"] == rel
    assert reason["lfn"] == lfn_of(landing, bad)
    assert reason["error_type"] == error_type
    assert words in reason["reason"]
    [event] = events(archive, "acada.quarantine")
    assert event.details["path"] == rel
    assert event.details["id"] == reason["id"]
    assert words in (event.reason or "")
    assert queue.metrics.value("quarantined") == 1


@pytest.mark.verifies_usecase(ACADA)
def test_registered_file_announced_again_is_skipped(
    archive: Archive, queue: IngestionQueue
) -> None:
    landing = queue.settings.landing
    files = simulate(landing, small())
    run(queue)
    before = assert_exactly_once(archive, [lfn_of(landing, f) for f in files])
    for f in files[:3]:  # a killed daemon's commit happened, its trigger removal did not
        trigger(f)
    assert run(queue) == 3
    assert assert_exactly_once(archive, [lfn_of(landing, f) for f in files]) == before
    assert triggers_left(landing) == []
    assert queue.metrics.value("skipped") == 3


@pytest.mark.verifies_usecase(ACADA)
def test_same_name_other_content_is_an_error_left_in_place(
    archive: Archive, queue: IngestionQueue, tmp_path: Path
) -> None:
    landing = queue.settings.landing
    files = simulate(landing, small())
    run(queue)
    target = files[0]
    lfn = lfn_of(landing, target)
    registered = archive.show(lfn).file.adler32
    other = simulate(tmp_path, small(seed=99))[0]
    target.write_bytes(other.read_bytes())  # ACADA rewrote a file it had already closed
    trig = trigger(target)

    assert run(queue) == 1
    assert trig.is_symlink()
    assert target.is_file()
    assert archive.show(lfn).file.adler32 == registered
    [event] = events(archive, "acada.conflict")
    assert event.details["path"] == target.relative_to(landing).as_posix()
    assert "other content" in (event.reason or "")
    assert queue.metrics.value("failed") == 1
    assert run(queue) == 0  # backed off: not re-read at every poll
    assert len(events(archive, "acada.conflict")) == 1


@pytest.mark.verifies_usecase(ACADA)
def test_trigger_without_file_is_quarantined_itself(
    archive: Archive, queue: IngestionQueue
) -> None:
    landing = queue.settings.landing
    ghost = landing / "dl0" / "TEL001" / "events" / "GHOST.fits.fz"
    ghost.parent.mkdir(parents=True)
    trig = trigger(ghost)
    run(queue)
    assert not os.path.lexists(trig)
    rel = trig.relative_to(landing).as_posix()
    assert os.path.lexists(queue.settings.quarantine / rel)
    [event] = events(archive, "acada.quarantine")
    assert "does not exist" in (event.reason or "")
    with archive.sessions() as s:
        assert s.scalars(select(DIDRow).where(DIDRow.did_type == "FILE")).all() == []


@pytest.mark.verifies_usecase(QUEUE)
def test_interrupted_quarantine_is_finished_with_one_event(
    archive: Archive, queue: IngestionQueue
) -> None:
    landing = queue.settings.landing
    [bad, *_] = simulate(landing, small())
    corrupt_bytes(bad)
    rel = bad.relative_to(landing).as_posix()
    # Killed after moving the file, before the catalog event and the trigger removal:
    record = queue.quarantine.put(bad, rel, "DATASUM mismatch", "IntegrityFailure", None)
    run(queue)
    [event] = events(archive, "acada.quarantine")
    assert event.details["id"] == record.id
    assert not os.path.lexists(bad.with_name(bad.name + ".trigger"))
    # Killed after the event, before the trigger removal: no second event.
    trigger(bad)
    run(queue)
    assert len(events(archive, "acada.quarantine")) == 1
    assert triggers_left(landing) == []


@pytest.mark.verifies_usecase(QUEUE)
def test_one_queue_per_landing_area(archive: Archive, queue: IngestionQueue) -> None:
    queue.start()
    other = archive.acada.queue(executor="inline")
    with pytest.raises(Conflict, match="one instance per landing area"):
        other.start()
    queue.close()
    other.start()  # the lock went with the first queue
    other.close()


def test_configuration_mistakes_are_refused(archive: Archive, tmp_path: Path) -> None:
    base = archive.config.model_dump(exclude={"workspace"})

    def config(**acada: object) -> object:
        data = {**base, "acada": {**base["acada"], **acada}}
        return config_from_dict(data, archive.config.workspace, environ={})

    with pytest.raises(ConfigError, match="not under the root"):
        archive.acada.queue(landing=tmp_path / "elsewhere")
    with pytest.raises(NotFound, match="unknown RSE"):
        archive.acada.queue("NOPE")
    archive.config = config(quarantine=str(Path(archive.config.rse_url("CTAO-N")) / "acada"))  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="must not lie inside the landing"):
        archive.acada.queue()
    archive.config = config(policy="nothing")  # type: ignore[assignment]
    with pytest.raises(NotFound, match="unknown replication policy"):
        archive.acada.queue()


@pytest.mark.verifies_usecase(ACADA)
def test_cli_ingest_acada_runs_the_same_logic_once(archive: Archive) -> None:
    landing = archive.acada.queue(executor="inline").settings.landing
    files = simulate_untriggered(landing, small())
    corrupt_bytes(files[1])
    ws = str(archive.config.workspace)
    runner = CliRunner()
    result = runner.invoke(
        app, ["-w", ws, "ingest", "--acada", "--rse", "CTAO-N", "--json", *map(str, files[:3])]
    )
    assert result.exit_code == 10, result.output
    report = json.loads(result.stdout)
    assert [r["status"] for r in report["results"]] == ["registered", "failed", "registered"]
    assert "quarantined" in report["results"][1]["error"]
    assert report["results"][1]["error_type"] == "IntegrityFailure"
    assert_exactly_once(archive, [lfn_of(landing, files[0]), lfn_of(landing, files[2])])
    single = runner.invoke(app, ["-w", ws, "ingest", "--acada", "--rse", "CTAO-N", str(files[1])])
    assert single.exit_code == 7  # quarantined by the first run, for a checksum mismatch
    assert "quarantined" in single.stderr
    wrong = runner.invoke(
        app, ["-w", ws, "ingest", "--acada", "--rse", "CTAO-N", "--lfn", "/x", str(files[3])]
    )
    assert wrong.exit_code == 3
    outside = runner.invoke(app, ["-w", ws, "ingest", "--acada", "--rse", "CTAO-N", ws])
    assert outside.exit_code == 3
    assert "not under the landing directory" in outside.stderr


@pytest.mark.verifies_usecase(QUEUE)
def test_cli_daemon_once(archive: Archive) -> None:
    landing = archive.acada.queue(executor="inline").settings.landing
    files = simulate(landing, small())
    result = CliRunner().invoke(
        app,
        [
            "-w",
            str(archive.config.workspace),
            "daemon",
            "ingest",
            "--once",
            "--executor",
            "inline",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["succeeded"] == len(files)
    assert summary["quarantined"] == summary["failed"] == 0
    assert triggers_left(landing) == []


@pytest.mark.verifies_usecase(QUEUE)
def test_the_per_file_work_runs_on_a_dask_cluster(tmp_path: Path) -> None:
    from dpps.testing.dask_cluster import DaskCluster

    with DaskCluster(tmp_path / "dask", {"CTAO-North": 1}) as cluster:
        archive = Archive.init(tmp_path / "ws")
        wms = archive.config.wms.model_copy(update={"dask_scheduler": cluster.address})
        archive.config = archive.config.model_copy(update={"wms": wms})
        q = archive.acada.queue(executor="dask")
        try:
            files = simulate(q.settings.landing, small())
            corrupt_bytes(files[0])
            assert run(q) == len(files)
        finally:
            q.close()
            archive.close()
    assert_exactly_once(archive, [lfn_of(q.settings.landing, f) for f in files[1:]])
    assert (q.settings.quarantine / files[0].relative_to(q.settings.landing)).is_file()


@pytest.mark.verifies_usecase(ACADA)
@pytest.mark.verifies_usecase("UC-110-1.12")
def test_a_file_for_a_closed_dataset_is_an_error_and_the_rest_goes_on(
    archive: Archive, queue: IngestionQueue, tmp_path: Path
) -> None:
    landing = queue.settings.landing
    files = simulate(landing, small())
    run(queue)
    dataset = archive.show(lfn_of(landing, files[0])).parents[0]
    archive.datasets.close(dataset)
    late = files[0].with_name("late_" + files[0].name)
    late.write_bytes(simulate(tmp_path, small(seed=99))[0].read_bytes())
    trig = trigger(late)

    assert run(queue) == 1
    assert trig.is_symlink()  # left for the operator, like any error
    with pytest.raises(NotFound):
        archive.show(lfn_of(landing, late))
    assert queue.metrics.value("failed") == 1
    assert archive.show(dataset).file.is_open is False
