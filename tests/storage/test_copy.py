"""RSE-to-RSE copies for transfers: verified, atomic, resumable, interruptible."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from dpps.core.errors import Conflict, IntegrityFailure, InvalidInput, NotFound
from dpps.storage import copy as copy_module
from dpps.storage.checksums import checksum_file
from dpps.storage.copy import SourceCorrupt, copy_replica, remove_leftovers
from dpps.storage.rse import CopyInterrupted, StorageElement

REL = "ctao/dl0/run1/f.dat"


def _local(tmp_path: Path, name: str) -> StorageElement:
    root = tmp_path / name
    root.mkdir(parents=True, exist_ok=True)
    return StorageElement(name, str(root))


def _memory(name: str) -> StorageElement:
    return StorageElement(name, f"memory://dpps-test-{uuid.uuid4().hex}/{name}")


def _put(rse: StorageElement, data: bytes, rel: str = REL) -> dict[str, str]:
    path = rse.resolve(rel)
    rse.fs.makedirs(path.rpartition("/")[0], exist_ok=True)
    with rse.fs.open(path, "wb") as f:
        f.write(data)
    return rse.checksum(rel, ["adler32", "blake3"])[1]


def _files(rse: StorageElement) -> list[str]:
    return sorted(rse.fs.find(rse.root, withdirs=False))


@pytest.mark.parametrize(
    ("kinds", "method"),
    [
        (("local", "local"), "kernel"),
        (("memory", "memory"), "server"),
        (("memory", "local"), "stream"),
    ],
)
def test_copy_is_verified_and_published_whole(
    tmp_path: Path, kinds: tuple[str, str], method: str
) -> None:
    src, dst = (
        _local(tmp_path, n) if k == "local" else _memory(n)
        for k, n in zip(kinds, "AB", strict=True)
    )
    data = os.urandom(3 * 1024 * 1024 + 17)
    expected = _put(src, data)
    if kinds == ("memory", "memory"):  # one object store: same filesystem object
        dst = StorageElement("B", src.root.rpartition("/")[0] + "/B", filesystem=src.fs)
    out = copy_replica(src, REL, dst, REL, expected, size=len(data))
    assert out.method == method
    assert (out.size, out.digests) == (len(data), expected)
    with dst.open_read(REL) as f:
        assert f.read() == data
    assert _files(dst) == [dst.resolve(REL)]  # no temporary left beside it


def test_a_corrupt_source_is_told_apart_and_nothing_is_published(tmp_path: Path) -> None:
    src, dst = _local(tmp_path, "A"), _local(tmp_path, "B")
    expected = _put(src, b"x" * 10_000)
    _put(src, b"y" * 10_000)  # the source rotted after it was catalogued
    with pytest.raises(SourceCorrupt, match=r"source replica .* does not match the catalog"):
        copy_replica(src, REL, dst, REL, expected, size=10_000)
    assert _files(dst) == []


def test_redo_cleans_leftovers_and_accepts_or_replaces_a_published_file(tmp_path: Path) -> None:
    src, dst = _local(tmp_path, "A"), _local(tmp_path, "B")
    data = os.urandom(50_000)
    expected = _put(src, data)
    final = Path(dst.resolve(REL))
    final.parent.mkdir(parents=True)
    (final.parent / f".{final.name}.part-{uuid.uuid4().hex}").write_bytes(data[:1000])
    (final.parent / ".other.dat.part-1234").write_bytes(b"not ours")
    out = copy_replica(src, REL, dst, REL, expected, size=len(data), redo=True)
    assert out.method == "kernel"
    assert sorted(p.name for p in final.parent.iterdir()) == [".other.dat.part-1234", "f.dat"]
    # an earlier attempt published the file, then died before the catalog heard of it
    again = copy_replica(src, REL, dst, REL, expected, size=len(data), redo=True)
    assert again.method == "present"
    # a damaged file under the final name (a BAD replica being repaired) is replaced
    final.write_bytes(b"damaged")
    repaired = copy_replica(src, REL, dst, REL, expected, size=len(data), redo=True)
    assert repaired.method == "kernel"
    assert final.read_bytes() == data
    assert remove_leftovers(dst, REL) == 0


def test_stop_interrupts_a_throttled_copy_and_leaves_nothing(tmp_path: Path) -> None:
    src, dst = _local(tmp_path, "A"), _local(tmp_path, "B")
    data = os.urandom(4 * 1024 * 1024)
    expected = _put(src, data)
    stop = threading.Event()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    try:
        with pytest.raises(CopyInterrupted):  # 4 MB at 1 MB/s takes 4 s: stopped long before
            copy_replica(src, REL, dst, REL, expected, stop=stop, max_bytes_s=1e6)
    finally:
        timer.cancel()
    assert _files(dst) == []


def test_stream_copy_can_be_stopped_too(tmp_path: Path) -> None:
    src, dst = _memory("A"), _local(tmp_path, "B")
    expected = _put(src, os.urandom(100_000))
    stop = threading.Event()
    stop.set()
    with pytest.raises(CopyInterrupted):
        copy_replica(src, REL, dst, REL, expected, stop=stop)
    assert _files(dst) == []


def test_bad_requests(tmp_path: Path) -> None:
    src, dst = _local(tmp_path, "A"), _local(tmp_path, "B")
    with pytest.raises(InvalidInput, match="adler32"):
        copy_replica(src, REL, dst, REL, {"blake3": "00"})
    with pytest.raises(NotFound):
        copy_replica(src, REL, dst, REL, {"adler32": "00000001"})
    assert _files(dst) == []
    data = os.urandom(1000)
    expected = _put(src, data)
    copy_replica(src, REL, dst, REL, expected)
    assert checksum_file(dst.resolve(REL), ["adler32", "blake3"])[1] == expected


@pytest.mark.verifies_usecase("UC-110-1.6")
@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_a_copy_damaged_on_its_way_is_caught_and_nothing_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    # The destination is read back, not the source: bytes that the kernel copy (or the disk
    # under it) spoils after the source was read must fail the transfer, source unblamed.
    src, dst = _local(tmp_path, "A"), _local(tmp_path, "B")
    data = os.urandom(3 * 1024 * 1024 + 5)
    expected = _put(src, data)
    real = os.copy_file_range

    def spoiling(fd_in: int, fd_out: int, count: int) -> int:
        copied = real(fd_in, fd_out, count)
        if copied == 0 and damage == "truncated":
            os.ftruncate(fd_out, len(data) - 1)
        elif copied and damage == "flipped":
            os.pwrite(fd_out, bytes([data[0] ^ 0xFF]), 0)
        return copied

    monkeypatch.setattr(os, "copy_file_range", spoiling)
    with pytest.raises(IntegrityFailure, match="arrived damaged") as caught:
        copy_replica(src, REL, dst, REL, expected, size=len(data))
    assert not isinstance(caught.value, SourceCorrupt)
    assert _files(dst) == []


def test_a_copy_of_many_chunks_is_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks of 64 KiB: every full chunk starts its write-back before the next is copied.
    monkeypatch.setattr(copy_module, "KERNEL_CHUNK", 64 * 1024)
    src, dst = _local(tmp_path, "A"), _local(tmp_path, "B")
    data = os.urandom(20 * 64 * 1024 + 3)
    expected = _put(src, data)
    out = copy_replica(src, REL, dst, REL, expected, size=len(data))
    assert (out.method, out.size, out.digests) == ("kernel", len(data), expected)
    assert Path(dst.resolve(REL)).read_bytes() == data


def _names_while_copying(monkeypatch: pytest.MonkeyPatch, directory: Path) -> list[list[str]]:
    """What ``directory`` holds each time the kernel copies a chunk (a spy, not a fake)."""
    seen: list[list[str]] = []
    real = os.copy_file_range

    def spy(fd_in: int, fd_out: int, count: int) -> int:
        seen.append(sorted(p.name for p in directory.iterdir()))
        return real(fd_in, fd_out, count)

    monkeypatch.setattr(os, "copy_file_range", spy)
    return seen


def test_a_small_copy_has_no_name_until_it_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Up to UNNAMED_MAX (1 MiB) the copy is a nameless file (O_TMPFILE) linked under its final
    # name once verified and fsynced: no temporary to create, remove, or leave behind.
    src, dst = _local(tmp_path, "A"), _local(tmp_path, "B")
    data = os.urandom(4096)
    expected = _put(src, data)
    (tmp_path / "B" / "ctao" / "dl0" / "run1").mkdir(parents=True)
    seen = _names_while_copying(monkeypatch, tmp_path / "B" / "ctao" / "dl0" / "run1")
    out = copy_replica(src, REL, dst, REL, expected, size=len(data), sync_dir=False)
    assert seen
    assert all(names == [] for names in seen)
    assert (out.method, out.size, out.digests) == ("kernel", len(data), expected)
    assert out.unsynced_dir == str(tmp_path / "B" / "ctao" / "dl0" / "run1")
    assert Path(dst.resolve(REL)).read_bytes() == data
    assert _files(dst) == [dst.resolve(REL)]


@pytest.mark.parametrize("why", ["filesystem", "size"])
def test_a_named_temporary_when_there_can_be_no_nameless_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    # A filesystem without O_TMPFILE, or a file larger than UNNAMED_MAX (a long copy stays
    # visible): the copy goes to a ``.part-`` name beside the final one, removed after.
    src, dst = _local(tmp_path, "A"), _local(tmp_path, "B")
    data = os.urandom(3 * 64 * 1024)
    expected = _put(src, data)
    if why == "size":
        monkeypatch.setattr(copy_module, "UNNAMED_MAX", len(data) - 1)
    else:
        real_open = os.open

        def no_tmpfile(path: str, flags: int, mode: int = 0o777) -> int:
            if flags & os.O_TMPFILE == os.O_TMPFILE:
                raise OSError(95, "Operation not supported")  # EOPNOTSUPP, as tmpfs of old
            return real_open(path, flags, mode)

        monkeypatch.setattr(os, "open", no_tmpfile)
    (tmp_path / "B" / "ctao" / "dl0" / "run1").mkdir(parents=True)
    seen = _names_while_copying(monkeypatch, tmp_path / "B" / "ctao" / "dl0" / "run1")
    out = copy_replica(src, REL, dst, REL, expected, size=len(data))
    assert seen
    assert all(len(names) == 1 and ".f.dat.part-" in names[0] for names in seen)
    assert (out.method, out.size, out.digests) == ("kernel", len(data), expected)
    assert _files(dst) == [dst.resolve(REL)]


def test_a_nameless_copy_never_replaces_a_file(tmp_path: Path) -> None:
    # Linked without replacing, like the named temporary: a file that appeared under the
    # final name meanwhile stays, and the caller hears Conflict (copy_replica then accepts
    # that file if its checksums match).
    dst = _local(tmp_path, "B")
    data = os.urandom(4096)
    final = Path(dst.resolve(REL))
    final.parent.mkdir(parents=True)
    fd = copy_module._open_unnamed(str(final.parent))
    assert fd is not None
    try:
        os.write(fd, data)
        final.write_bytes(b"someone else")
        with pytest.raises(Conflict):
            copy_module._link_unnamed(fd, str(final), sync_dir=True)
    finally:
        os.close(fd)
    assert final.read_bytes() == b"someone else"
