"""RSEs over a real XRootD server (Debian's xrootd-server) in a private network namespace,
reached at 127.0.0.1 through the launcher's forwarding proxy: put, get, stat, server-side
adler32, delete, third-party copy between two servers, and the catalog recording a root://
replica on both catalogs."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpps.core.errors import Conflict, IntegrityFailure, NotFound
from dpps.storage.rse import CopyInterrupted, StorageElement
from dpps.storage.xrootd import XRootDStorageElement, storage_element
from dpps.testing.xrootd import TemporaryXRootD, xrootd_available

pytestmark = pytest.mark.skipif(xrootd_available() is not None, reason=str(xrootd_available()))


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[TemporaryXRootD, TemporaryXRootD]]:
    """Two servers in one private namespace (third-party copy needs them to see each other)."""
    base = Path(tempfile.mkdtemp(prefix="dpps-xrd-test-"))
    a = TemporaryXRootD(base / "a")
    b = TemporaryXRootD(base / "b")
    a.start()
    try:
        b.start(share_with=a)
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def rses(
    servers: tuple[TemporaryXRootD, TemporaryXRootD],
) -> tuple[XRootDStorageElement, XRootDStorageElement]:
    a, b = servers
    sub = os.urandom(4).hex()
    src = storage_element("XRD-A", f"{a.url}//rse-{sub}")
    dst = storage_element("XRD-B", f"{b.url}//rse-{sub}")
    assert isinstance(src, XRootDStorageElement)
    assert isinstance(dst, XRootDStorageElement)
    return src, dst


def test_put_get_stat_checksum_delete(
    rses: tuple[XRootDStorageElement, XRootDStorageElement], tmp_path: Path
) -> None:
    rse, _ = rses
    data = os.urandom(2 * 1024 * 1024 + 3)
    local = tmp_path / "in.fits.fz"
    local.write_bytes(data)
    size, digests = rse.upload(local, "ctao/raw/a.fits.fz", ["adler32", "blake3"])
    assert size == len(data)
    assert digests["adler32"] == adler(data)
    assert rse.exists("ctao/raw/a.fits.fz")
    assert rse.size("ctao/raw/a.fits.fz") == len(data)
    # adler32 alone comes from the server, without reading the bytes back
    assert rse.server_checksum("ctao/raw/a.fits.fz") == adler(data)
    assert rse.checksum("ctao/raw/a.fits.fz", ["adler32"]) == (len(data), {"adler32": adler(data)})
    out = tmp_path / "out.fits.fz"
    rse.download("ctao/raw/a.fits.fz", out, ["adler32"], expected={"adler32": adler(data)})
    assert out.read_bytes() == data
    with pytest.raises(Conflict):
        rse.upload(local, "ctao/raw/a.fits.fz", ["adler32"])
    rse.remove("ctao/raw/a.fits.fz")
    assert not rse.exists("ctao/raw/a.fits.fz")
    rse.remove("ctao/raw/a.fits.fz")  # already gone: not an error
    with pytest.raises(NotFound):
        rse.server_checksum("ctao/raw/a.fits.fz")


@pytest.mark.verifies_usecase("UC-190-1.2")
def test_third_party_copy_is_verified_and_never_overwrites(
    rses: tuple[XRootDStorageElement, XRootDStorageElement],
    servers: tuple[TemporaryXRootD, TemporaryXRootD],
    tmp_path: Path,
) -> None:
    src, dst = rses
    data = os.urandom(3 * 1024 * 1024)
    local = tmp_path / "f"
    local.write_bytes(data)
    src.upload(local, "ctao/x/f.dat", ["adler32"])
    size, digests = dst.copy_from(src, "ctao/x/f.dat", "ctao/x/f.dat")
    assert (size, digests) == (len(data), {"adler32": adler(data)})
    # the destination server's own disk holds the bytes: the copy went server to server
    on_disk = servers[1].data_dir / dst.root.lstrip("/") / "ctao/x/f.dat"
    assert on_disk.read_bytes() == data
    assert not [p for p in on_disk.parent.iterdir() if p.name.startswith(".")]
    with pytest.raises(Conflict):
        dst.copy_from(src, "ctao/x/f.dat", "ctao/x/f.dat")
    with pytest.raises(IntegrityFailure):
        dst.copy_from(src, "ctao/x/f.dat", "ctao/x/g.dat", expected={"adler32": "00000001"})
    assert not dst.exists("ctao/x/g.dat")
    assert not [p for p in on_disk.parent.iterdir() if p.name.startswith(".")]
    with pytest.raises(NotFound):
        dst.copy_from(src, "ctao/x/missing.dat", "ctao/x/missing.dat")


@pytest.mark.verifies_usecase("UC-190-1.2")
def test_a_stopped_third_party_copy_is_cancelled_and_leaves_nothing(
    rses: tuple[XRootDStorageElement, XRootDStorageElement],
    servers: tuple[TemporaryXRootD, TemporaryXRootD],
    tmp_path: Path,
) -> None:
    """The transfer daemon's stop request reaches a copy that runs inside the destination
    server: XrdCl asks whether to cancel at its next check, the copy is abandoned and its
    temporary file removed."""
    src, dst = rses
    local = tmp_path / "f"
    local.write_bytes(os.urandom(1024 * 1024))
    src.upload(local, "ctao/s/f.dat", ["adler32"])
    stop = threading.Event()
    stop.set()
    with pytest.raises(CopyInterrupted):
        dst.third_party_copy(src, "ctao/s/f.dat", "ctao/s/f.dat", stop=stop)
    assert not dst.exists("ctao/s/f.dat")
    folder = servers[1].data_dir / dst.root.lstrip("/") / "ctao/s"
    assert not folder.exists() or not list(folder.iterdir())
    # the same copy without the stop request goes through
    assert dst.third_party_copy(src, "ctao/s/f.dat", "ctao/s/f.dat")[0] == 1024 * 1024


def test_copy_between_xrootd_and_local_streams(
    rses: tuple[XRootDStorageElement, XRootDStorageElement], tmp_path: Path
) -> None:
    """Other digests than adler32 need the bytes: the streamed copy, in both directions."""
    src, _ = rses
    (tmp_path / "rse").mkdir()
    (tmp_path / "rse2").mkdir()
    local_rse = StorageElement("LOCAL", str(tmp_path / "rse"))
    data = os.urandom(1024 * 1024)
    (tmp_path / "f").write_bytes(data)
    local_rse.upload(tmp_path / "f", "ctao/y/f.dat", ["adler32"])
    size, digests = src.copy_from(local_rse, "ctao/y/f.dat", "ctao/y/f.dat", ["adler32", "blake3"])
    assert size == len(data)
    assert digests["adler32"] == adler(data)
    back = StorageElement("LOCAL2", str(tmp_path / "rse2"))
    back.copy_from(src, "ctao/y/f.dat", "ctao/y/f.dat")
    assert (tmp_path / "rse2/ctao/y/f.dat").read_bytes() == data
