"""Storage elements over real local directories and the fsspec memory filesystem."""

from __future__ import annotations

import errno
import io
import os
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from dpps.core.config import config_from_dict
from dpps.core.errors import (
    Conflict,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from dpps.core.states import RSEKind
from dpps.storage.rse import StorageElement

ALGS = ("adler32", "blake3")


def digests_of(data: bytes) -> dict[str, str]:
    return {"adler32": f"{zlib.adler32(data):08x}", "blake3": blake3.blake3(data).hexdigest()}


def all_files(root: Path) -> list[str]:
    """Every file under ``root`` (temporaries included), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


@pytest.fixture
def rse(tmp_path: Path) -> StorageElement:
    (tmp_path / "rse").mkdir()  # only 'dpps init' creates roots: writes never do
    return StorageElement("TEST-DISK", str(tmp_path / "rse"))


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(3 * 1024 * 1024 + 5)
    path = tmp_path / "in" / "obs_000123_tel_001.fits.fz"
    path.parent.mkdir()
    path.write_bytes(data)
    return path, data


# -- paths -------------------------------------------------------------------------------


def test_path_for() -> None:
    lfn = "/ctao/dl0/north/2026/11/21/obs_000123/tel_001.fits.fz"
    assert StorageElement.path_for("ctao", lfn) == f"ctao{lfn}"
    assert StorageElement.path_for("ctao", lfn, 1) == f"ctao{lfn}"
    assert StorageElement.path_for("ctao", lfn, 3) == f"ctao{lfn}@v3"


@pytest.mark.parametrize(
    ("scope", "lfn", "version"),
    [
        ("CTAO", "/a", 1),
        ("ctao", "a/b", 1),
        ("ctao", "/a/../b", 1),
        ("ctao", "/a@v2", 1),
        ("ctao", "/a", 0),
        ("ctao", "/a", -1),
    ],
)
def test_path_for_rejects_invalid(scope: str, lfn: str, version: int) -> None:
    with pytest.raises(InvalidInput):
        StorageElement.path_for(scope, lfn, version)


TRAVERSALS = ["../x", "/etc/passwd", "a/../../x", "a/\x00b", "a//b", "./a", "a/", "", "a/."]


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_traversal_refused_everywhere(
    rse: StorageElement, source: tuple[Path, bytes], tmp_path: Path, bad: str
) -> None:
    with pytest.raises(PermissionDenied):
        rse.resolve(bad)
    with pytest.raises(PermissionDenied):
        rse.upload(source[0], bad, ALGS)
    for call in (rse.exists, rse.size, rse.open_read, rse.remove):
        with pytest.raises(PermissionDenied):
            call(bad)
    with pytest.raises(PermissionDenied):
        rse.checksum(bad, ALGS)
    with pytest.raises(PermissionDenied):
        rse.download(bad, tmp_path / "out", ALGS)
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "out").exists()


def test_symlink_to_outside_file_refused(rse: StorageElement, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    root = Path(rse.root)
    (root / "link").symlink_to(secret)
    (root / "dangling").symlink_to(tmp_path / "nothing-yet")
    for rel in ("link", "dangling"):
        with pytest.raises(PermissionDenied, match="outside the RSE root"):
            rse.exists(rel)
        with pytest.raises(PermissionDenied):
            rse.open_read(rel)
    with pytest.raises(PermissionDenied):
        rse.remove("link")
    assert secret.read_text() == "not yours"


def test_symlinked_directory_to_outside_refused(
    rse: StorageElement, source: tuple[Path, bytes], tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = Path(rse.root)
    (root / "ctao").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PermissionDenied):
        rse.upload(source[0], "ctao/dl0/new.fits", ALGS)
    with pytest.raises(PermissionDenied):
        rse.upload(source[0], "ctao/new.fits", ALGS)
    assert list(outside.iterdir()) == []


def test_symlinks_staying_inside_are_fine(rse: StorageElement, source: tuple[Path, bytes]) -> None:
    root = Path(rse.root)
    (root / "real").mkdir(parents=True)
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    rse.upload(source[0], "alias/f.bin", ALGS)
    assert (root / "real" / "f.bin").read_bytes() == source[1]


def test_root_given_through_a_symlink(tmp_path: Path, source: tuple[Path, bytes]) -> None:
    (tmp_path / "real-root").mkdir()
    (tmp_path / "root-link").symlink_to(tmp_path / "real-root", target_is_directory=True)
    rse = StorageElement("LINKED", str(tmp_path / "root-link"))
    rse.upload(source[0], "a/f.bin", ALGS)
    assert rse.exists("a/f.bin")
    assert rse.relative_path_of(tmp_path / "real-root" / "a" / "f.bin") == "a/f.bin"


def test_symlinked_directory_deep_inside_pointing_out_refused(
    rse: StorageElement, source: tuple[Path, bytes], tmp_path: Path
) -> None:
    """A link planted below plain directories of the root (not at its top) is followed too,
    for files under it that exist and for new ones."""
    outside = tmp_path / "outside"
    (outside / "night").mkdir(parents=True)
    (outside / "night" / "there.fits").write_bytes(b"not yours")
    root = Path(rse.root)
    (root / "ctao" / "dl0").mkdir(parents=True)
    (root / "ctao" / "dl0" / "2026").symlink_to(outside, target_is_directory=True)
    for rel in ("ctao/dl0/2026/night/there.fits", "ctao/dl0/2026/night/new.fits"):
        with pytest.raises(PermissionDenied, match="outside the RSE root"):
            rse.resolve(rel)
    with pytest.raises(PermissionDenied):
        rse.upload(source[0], "ctao/dl0/2026/night/new.fits", ALGS)
    with pytest.raises(PermissionDenied):
        rse.remove("ctao/dl0/2026/night/there.fits")
    assert sorted(p.name for p in (outside / "night").iterdir()) == ["there.fits"]


def test_links_chained_or_relative_out_of_the_root_refused(
    rse: StorageElement, tmp_path: Path
) -> None:
    """A link to a link that leaves, and a relative link climbing out with '..', are caught
    wherever they sit; a link whose target stays inside through '..' is fine."""
    (tmp_path / "secret.txt").write_text("not yours")
    root = Path(rse.root)
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "out").symlink_to(tmp_path / "secret.txt")
    (root / "a" / "b" / "chain").symlink_to("../out")  # inside, then out
    (root / "a" / "b" / "climb").symlink_to("../../../secret.txt")  # relative, out
    (root / "a" / "b" / "up").symlink_to("..", target_is_directory=True)  # stays inside
    for rel in ("a/b/chain", "a/b/climb", "a/b/up/out", "a/b/up/b/climb"):
        with pytest.raises(PermissionDenied, match="outside the RSE root"):
            rse.resolve(rel)
    assert rse.resolve("a/b/up/b/new.fits") == f"{rse.root}/a/b/up/b/new.fits"


def test_sibling_directory_with_the_root_as_prefix_is_outside(
    rse: StorageElement, tmp_path: Path
) -> None:
    """``/x/rse-evil`` is not inside ``/x/rse`` although its name starts with it."""
    (tmp_path / "rse-evil").mkdir()
    (Path(rse.root) / "door").symlink_to(tmp_path / "rse-evil", target_is_directory=True)
    with pytest.raises(PermissionDenied, match="outside the RSE root"):
        rse.resolve("door/f.fits")


def test_root_repointed_after_first_use_is_noticed(tmp_path: Path) -> None:
    """An RSE remembers its resolved root: if the link it was given later leads elsewhere,
    paths are refused rather than followed to the new place."""
    (tmp_path / "real-root" / "d").mkdir(parents=True)
    (tmp_path / "elsewhere" / "d").mkdir(parents=True)
    link = tmp_path / "root-link"
    link.symlink_to(tmp_path / "real-root", target_is_directory=True)
    rse = StorageElement("LINKED", str(link))
    assert rse.resolve("d/f.fits") == f"{link}/d/f.fits"
    link.unlink()
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(PermissionDenied, match="outside the RSE root"):
        rse.resolve("d/f.fits")


def test_path_through_a_file_or_missing_directories_resolves(rse: StorageElement) -> None:
    """Components that are not there (a new file's directories) or not directories are no
    escape: the path resolves, and using it fails as it would anyway."""
    root = Path(rse.root)
    (root / "plain").write_bytes(b"x")
    assert rse.resolve("new/dirs/f.fits") == f"{rse.root}/new/dirs/f.fits"
    assert rse.resolve("plain/below") == f"{rse.root}/plain/below"
    with pytest.raises(NotFound):
        rse.size("plain/below")


def test_relative_path_of(rse: StorageElement, tmp_path: Path) -> None:
    root = Path(rse.root)
    (root / "ctao" / "dl0").mkdir(parents=True)
    inside = root / "ctao" / "dl0" / "f.fits"
    inside.write_bytes(b"x")
    outside = tmp_path / "elsewhere.fits"
    outside.write_bytes(b"y")
    (root / "escape").symlink_to(outside)
    (tmp_path / "shortcut").symlink_to(inside)

    assert rse.relative_path_of(inside) == "ctao/dl0/f.fits"
    assert rse.relative_path_of(str(inside)) == "ctao/dl0/f.fits"
    assert rse.relative_path_of(root / "ctao" / ".." / "ctao" / "dl0" / "f.fits") == (
        "ctao/dl0/f.fits"
    )
    assert rse.relative_path_of(tmp_path / "shortcut") == "ctao/dl0/f.fits"
    assert rse.relative_path_of(outside) is None
    assert rse.relative_path_of(root / "escape") is None
    assert rse.relative_path_of(root) is None
    assert rse.relative_path_of(tmp_path / "rse-sibling" / "f") is None


# -- upload / download ---------------------------------------------------------------------


@pytest.mark.verifies_usecase("UC-110-1.1.3")
def test_upload_stores_verified_immutable_copy(
    rse: StorageElement, source: tuple[Path, bytes]
) -> None:
    path, data = source
    rel = StorageElement.path_for("ctao", "/ctao/dl0/north/obs_000123/tel_001.fits.fz")
    size, digests = rse.upload(path, rel, ALGS, expected=digests_of(data))
    assert (size, digests) == (len(data), digests_of(data))
    assert rse.exists(rel)
    assert rse.size(rel) == len(data)
    assert rse.checksum(rel, ALGS) == (len(data), digests_of(data))
    with rse.open_read(rel) as f:
        assert f.read() == data
    assert all_files(Path(rse.root)) == [rel]
    with pytest.raises(Conflict, match="immutable"):
        rse.upload(path, rel, ALGS)
    assert rse.checksum(rel, ALGS)[1] == digests_of(data)


@pytest.mark.verifies_usecase("UC-110-1.3.1")
def test_download_round_trip(
    rse: StorageElement, source: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = source
    rse.upload(path, "ctao/a/f.bin", ALGS)
    dest = tmp_path / "out" / "deep" / "f.bin"
    size, digests = rse.download("ctao/a/f.bin", dest, ALGS, expected=digests_of(data))
    assert (size, digests) == (len(data), digests_of(data))
    assert dest.read_bytes() == data
    assert all_files(dest.parent) == ["f.bin"]

    with pytest.raises(Conflict, match="overwrite"):
        rse.download("ctao/a/f.bin", dest, ALGS)
    dest.write_bytes(b"stale")
    rse.download("ctao/a/f.bin", dest, ALGS, overwrite=True)
    assert dest.read_bytes() == data


def test_upload_checksum_mismatch_leaves_nothing(
    rse: StorageElement, source: tuple[Path, bytes]
) -> None:
    path, data = source
    wrong = {"adler32": digests_of(data)["adler32"], "blake3": "00" * 32}
    with pytest.raises(IntegrityFailure, match="blake3"):
        rse.upload(path, "ctao/f.bin", ALGS, expected=wrong)
    assert not rse.exists("ctao/f.bin")
    assert all_files(Path(rse.root)) == []


def test_upload_checks_expected_algorithms_not_requested(
    rse: StorageElement, source: tuple[Path, bytes]
) -> None:
    path, _ = source
    with pytest.raises(IntegrityFailure, match="md5"):
        rse.upload(path, "f.bin", ["blake3"], expected={"md5": "0" * 32})
    assert all_files(Path(rse.root)) == []
    with pytest.raises(InvalidInput):
        rse.upload(path, "f.bin", ["blake3"], expected={"crc32": "0"})


def test_download_checksum_mismatch_leaves_nothing(
    rse: StorageElement, source: tuple[Path, bytes], tmp_path: Path
) -> None:
    rse.upload(source[0], "f.bin", ALGS)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityFailure):
        rse.download("f.bin", out / "f.bin", ALGS, expected={"adler32": "deadbeef"})
    assert all_files(out) == []


def test_missing_files(rse: StorageElement, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        rse.upload(tmp_path / "no-such-file", "f.bin", ALGS)
    assert not rse.exists("f.bin")
    for call in (rse.size, rse.open_read):
        with pytest.raises(NotFound):
            call("f.bin")
    with pytest.raises(NotFound):
        rse.checksum("f.bin", ALGS)
    with pytest.raises(NotFound):
        rse.download("f.bin", tmp_path / "out.bin", ALGS)
    assert not (tmp_path / "out.bin").exists()
    rse.remove("f.bin")  # already gone: not an error


def test_remove_and_usage(rse: StorageElement, source: tuple[Path, bytes]) -> None:
    assert rse.usage() == 0  # root does not exist yet
    rse.upload(source[0], "a/one", ALGS)
    rse.upload(source[0], "b/two", ALGS)
    assert rse.usage() == 2 * len(source[1])
    rse.remove("a/one")
    assert not rse.exists("a/one")
    assert rse.usage() == len(source[1])


def test_unknown_algorithm_rejected_before_writing(
    rse: StorageElement, source: tuple[Path, bytes]
) -> None:
    with pytest.raises(InvalidInput):
        rse.upload(source[0], "f.bin", ["crc32"])
    assert all_files(Path(rse.root)) == []


# -- failing storage -----------------------------------------------------------------------


class _FullFile(io.RawIOBase):
    """A writable file that fails with ENOSPC once ``budget`` bytes have been written."""

    def __init__(self, inner: Any, budget: int) -> None:
        self.inner, self.budget, self.written = inner, budget, 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        room = self.budget - self.written
        if len(b) > room:
            self.inner.write(bytes(b[:room]))
            self.written = self.budget
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.inner.write(b)
        self.written += len(b)
        return len(b)

    def fileno(self) -> int:
        return int(self.inner.fileno())

    def close(self) -> None:
        self.inner.close()
        super().close()


class AlmostFullFS(LocalFileSystem):
    """A real local filesystem whose files can hold only one MiB each."""

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = super()._open(path, mode=mode, **kwargs)
        return _FullFile(f, 1 << 20) if "w" in mode else f


class BitRotFS(LocalFileSystem):
    """A local filesystem that returns one flipped bit when temporary files are read back."""

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = super()._open(path, mode=mode, **kwargs)
        if "r" in mode and ".part-" in path:
            with f:
                data = bytearray(f.read())
            data[len(data) // 2] ^= 1
            return io.BytesIO(bytes(data))
        return f


class DroppedConnectionFS(MemoryFileSystem):
    """An in-memory "remote" store whose reads fail once the connection drops."""

    dropped = False

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = super()._open(path, mode=mode, **kwargs)
        if "r" not in mode or not self.dropped:
            return f

        class Dropped(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

        return Dropped()


def test_enospc_mid_write_is_unavailable_and_leaves_nothing(
    tmp_path: Path, source: tuple[Path, bytes]
) -> None:
    fs = AlmostFullFS(skip_instance_cache=True)
    (tmp_path / "rse").mkdir()
    rse = StorageElement("FULL", str(tmp_path / "rse"), filesystem=fs)
    with pytest.raises(Unavailable, match="No space left on device"):
        rse.upload(source[0], "ctao/f.bin", ALGS)
    assert not (tmp_path / "rse" / "ctao" / "f.bin").exists()
    assert all_files(tmp_path / "rse") == []


def test_corrupt_read_back_is_integrity_failure(
    tmp_path: Path, source: tuple[Path, bytes]
) -> None:
    (tmp_path / "rse").mkdir()
    rse = StorageElement(
        "ROT", str(tmp_path / "rse"), filesystem=BitRotFS(skip_instance_cache=True)
    )
    with pytest.raises(IntegrityFailure, match="reads back differently"):
        rse.upload(source[0], "f.bin", ALGS)
    assert all_files(tmp_path / "rse") == []


def test_connection_lost_during_download(tmp_path: Path, source: tuple[Path, bytes]) -> None:
    root = f"/dpps-test-{uuid.uuid4().hex}"
    fs = DroppedConnectionFS(skip_instance_cache=True)
    rse = StorageElement("REMOTE", root, filesystem=fs)
    rse.upload(source[0], "f.bin", ALGS)
    fs.dropped = True
    out = tmp_path / "out"
    out.mkdir()
    try:
        with pytest.raises(Unavailable, match="Connection reset"):
            rse.download("f.bin", out / "f.bin", ALGS)
        assert all_files(out) == []
    finally:
        fs.rm(root, recursive=True)


# -- other filesystems and configuration ---------------------------------------------------


@pytest.fixture
def memory_root() -> Iterator[str]:
    root = f"memory://dpps-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.mark.verifies_usecase("UC-110-1.3.1")
def test_memory_filesystem_round_trip(
    memory_root: str, source: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = source
    rse = StorageElement("MEM", memory_root, RSEKind.TAPE)
    assert rse.kind is RSEKind.TAPE
    assert not rse.is_local
    rel = StorageElement.path_for("ctao", "/ctao/dl0/f.fits.fz", 2)
    assert rse.upload(path, rel, ALGS) == (len(data), digests_of(data))
    assert rse.exists(rel)
    assert rse.size(rel) == len(data)
    assert rse.checksum(rel, ["adler32"]) == (len(data), {"adler32": digests_of(data)["adler32"]})
    assert rse.usage() == len(data)
    assert [p for p in rse.fs.find(rse.root) if ".part-" in p] == []
    with pytest.raises(Conflict):
        rse.upload(path, rel, ALGS)
    rse.download(rel, tmp_path / "back.fits.fz", ALGS, expected=digests_of(data))
    assert (tmp_path / "back.fits.fz").read_bytes() == data
    assert rse.relative_path_of(path) is None
    with pytest.raises(PermissionDenied):
        rse.exists("../other-rse/f")
    rse.remove(rel)
    assert not rse.exists(rel)


def test_from_config(tmp_path: Path) -> None:
    config = config_from_dict(
        {
            "sites": {"PIC": {}},
            "rses": {
                "PIC-DISK": {"url": "storage/pic-disk", "site": "PIC"},
                "PIC-TAPE": {"url": "memory://pic-tape", "site": "PIC", "kind": "tape"},
            },
        },
        tmp_path,
        environ={},
    )
    disk = StorageElement.from_config("PIC-DISK", config)
    assert (disk.name, disk.kind, disk.is_local) == ("PIC-DISK", RSEKind.DISK, True)
    assert disk.root == str(tmp_path / "storage" / "pic-disk")
    tape = StorageElement.from_config("PIC-TAPE", config)
    assert (tape.kind, tape.is_local, tape.root) == (RSEKind.TAPE, False, "/pic-tape")
    with pytest.raises(NotFound):
        StorageElement.from_config("NOPE", config)


def test_invalid_kind(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        StorageElement("X", str(tmp_path), "cloud")
