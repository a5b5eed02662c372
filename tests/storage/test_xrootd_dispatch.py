"""The RSE factory and the transfer copy pick XRootD's own path for ``root://`` RSEs: the
factory builds an ``XRootDStorageElement`` from the configuration, and a transfer copy between
two XRootD RSEs is a third-party copy verified by the destination server's adler32."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from dpps.core.config import Config
from dpps.storage.copy import SourceCorrupt, copy_replica
from dpps.storage.rse import StorageElement
from dpps.storage.xrootd import XRootDStorageElement
from dpps.testing.xrootd import TemporaryXRootD, xrootd_available
from tests.storage.test_xrootd import rses, servers

pytestmark = pytest.mark.skipif(xrootd_available() is not None, reason=str(xrootd_available()))
__all__ = ["rses", "servers"]  # fixtures shared with test_xrootd


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


def test_factory_builds_xrootd_for_root_urls(
    servers: tuple[TemporaryXRootD, TemporaryXRootD], tmp_path: Path
) -> None:
    config = Config.model_validate(
        {
            "workspace": str(tmp_path),
            "sites": {"PIC": {}},
            "rses": {
                "PIC": {"site": "PIC", "url": f"{servers[0].url}//pic"},
                "LOCAL": {"site": "PIC", "url": str(tmp_path / "local")},
            },
        }
    )
    assert isinstance(StorageElement.from_config("PIC", config), XRootDStorageElement)
    assert not isinstance(StorageElement.from_config("LOCAL", config), XRootDStorageElement)


@pytest.mark.verifies_usecase("UC-190-1.2")
def test_transfer_copy_between_xrootd_rses_is_third_party(
    rses: tuple[XRootDStorageElement, XRootDStorageElement],
    servers: tuple[TemporaryXRootD, TemporaryXRootD],
    tmp_path: Path,
) -> None:
    src, dst = rses
    data = os.urandom(2 * 1024 * 1024 + 11)
    (tmp_path / "f").write_bytes(data)
    src.upload(tmp_path / "f", "ctao/t/f.dat", ["adler32"])
    expected = {"adler32": adler(data), "blake3": "0" * 64}  # blake3 cannot be checked by TPC
    out = copy_replica(src, "ctao/t/f.dat", dst, "ctao/t/f.dat", expected, size=len(data))
    assert (out.method, out.size, out.digests) == ("tpc", len(data), {"adler32": adler(data)})
    on_disk = servers[1].data_dir / dst.root.lstrip("/") / "ctao/t/f.dat"
    assert on_disk.read_bytes() == data
    # a redo finds the published file and accepts it (by streaming it: it holds blake3 too)
    again = copy_replica(
        src, "ctao/t/f.dat", dst, "ctao/t/f.dat", {"adler32": adler(data)}, redo=True
    )
    assert again.method == "present"
    # a source that does not match the catalog is told apart from a bad copy
    with pytest.raises(SourceCorrupt):
        copy_replica(src, "ctao/t/f.dat", dst, "ctao/t/g.dat", {"adler32": "00000001"})
    assert not dst.exists("ctao/t/g.dat")
