"""Copies of a catalogued file from one RSE to another, for the transfer daemon.

Unlike ``StorageElement.copy_from`` (a one-off copy), a transfer copy may be one of many
attempts at the same file, may be stopped half-way (daemon shutdown, SIGKILL) and redone by
another process, and must leave proof that the *destination* holds the catalogued bytes:

* the destination is re-read after the copy and every catalogued checksum (adler32 and BLAKE3)
  compared before the file is published under its final name; when it does not match, the
  source is hashed too, so a corrupt source (``SourceCorrupt``) is told apart from a bad copy;
* a redo removes the ``.part-`` leftovers of earlier attempts, and accepts a file already
  published under the final name when its checksums match (an earlier attempt died between
  publication and the catalog commit) or removes it when they do not (a BAD replica repaired);
* local-to-local copies run in the kernel (``copy_file_range``, like ``cp``), chunk by chunk,
  so a stop request or a bandwidth cap takes effect within one chunk; copies between two RSEs
  of one object store are server-side; anything else is streamed;
* local destinations are fsynced before publication: a replica the catalog calls AVAILABLE
  survives a power cut. The disk's write-back of each chunk is started as soon as the kernel
  has copied it (``sync_file_range``), so the disk writes while the next chunks are copied and
  the destination is hashed from the page cache, and the final fsync waits for little; left
  to the kernel, write-back of a few GB would start only at the fsync (the dirty-page
  threshold is a tenth of RAM), after all the CPU work, as with ``cp`` then ``sync``.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from dpps.core.errors import Conflict, IntegrityFailure, InvalidInput
from dpps.storage.checksums import (
    MultiHasher,
    checksum_file,
    checksum_opened,
    checksum_stream,
    compare,
)
from dpps.storage.checksums import copy_with_checksums as _stream_copy
from dpps.storage.posix import fsync_dir
from dpps.storage.rse import CopyInterrupted, StorageElement
from dpps.storage.xrootd import XRootDStorageElement

KERNEL_CHUNK = 8 * 1024 * 1024
#: Files up to this size are copied into a nameless file (``_open_unnamed``).
UNNAMED_MAX = 1024 * 1024
_NO_KERNEL_COPY = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP)


def _libc_sync_file_range() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):  # not Linux: the final fsync does all the work
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _libc_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start write-back of the range's dirty pages, do not wait


def _start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the disk to start writing these bytes now; durability still comes from fsync (a
    failure here is only a lost head start, and fsync reports write errors)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


class SourceCorrupt(IntegrityFailure):
    """The source replica's bytes do not match the catalog: it is BAD, try another source."""


@dataclass(frozen=True, slots=True)
class CopyOutcome:
    size: int
    digests: dict[str, str]
    method: str  # "kernel", "server", "stream", "tpc" (XRootD third-party) or "present"
    #: With ``sync_dir=False`` on a local RSE: the directory the caller must fsync before it
    #: tells anyone the copy exists.
    unsynced_dir: str | None = None


def copy_replica(
    source: StorageElement,
    rel_src: str,
    dest: StorageElement,
    rel_dst: str,
    expected: Mapping[str, str],
    *,
    size: int | None = None,
    redo: bool = False,
    stop: threading.Event | None = None,
    max_bytes_s: float = 0.0,
    sync_dir: bool = True,
) -> CopyOutcome:
    """Copy ``rel_src`` of ``source`` to ``rel_dst`` of ``dest`` and prove it arrived intact.

    ``expected`` holds the catalog's checksums (adler32 at least); ``size`` its byte count.
    ``redo`` says an earlier attempt may have left debris. Raises ``CopyInterrupted`` when
    ``stop`` is set mid-copy, ``SourceCorrupt`` or ``IntegrityFailure`` on a mismatch, and the
    storage errors of ``StorageElement`` (``Unavailable`` for a full disk or a lost server).
    Whatever fails, nothing is left under a temporary name. ``sync_dir=False`` leaves the
    fsync of the destination directory to the caller (``CopyOutcome.unsynced_dir``), who
    can do it once for a batch of files published in the same directory.
    """
    names = _names(expected)
    src_path = source.resolve(rel_src)
    final = dest.resolve(rel_dst)
    if redo:
        remove_leftovers(dest, rel_dst)
    present = _accept_existing(dest, rel_dst, final, expected, names, size)
    if present is not None:
        return present
    what = f"{source.name}:{rel_src} -> {dest.name}:{rel_dst}"
    if isinstance(source, XRootDStorageElement) and isinstance(dest, XRootDStorageElement):
        return _third_party(source, rel_src, dest, rel_dst, expected, names, size, what, stop)
    parent, _, base = final.rpartition("/")
    temp = f"{parent}/.{base}.part-{uuid.uuid4().hex}"
    unnamed: int | None = None  # descriptor of a nameless copy (small local files)
    try:
        if not (dest.is_local and os.path.isdir(parent)):  # ``final`` was resolved above
            dest.make_parent(rel_dst)  # Unavailable when the root is missing: never created
        if source.is_local and dest.is_local:
            method = "kernel"
            if size is not None and size <= UNNAMED_MAX:
                with dest._errors("copy", rel_dst):
                    unnamed = _open_unnamed(parent)
            got_size, digests = _kernel_copy(
                source, src_path, rel_src, dest, temp, rel_dst, names, stop, max_bytes_s, unnamed
            )
        else:
            if _same_store(source, dest) and not max_bytes_s:
                method = "server"
                with dest._errors("copy", rel_dst):
                    dest.fs.copy(src_path, temp)
            else:
                method = "stream"
                _stream(source, src_path, rel_src, dest, temp, rel_dst, names, stop, max_bytes_s)
            if stop is not None and stop.is_set():
                raise CopyInterrupted(f"copy {what} stopped")
            got_size, digests = _hash(dest, temp, names, rel_dst)
            if dest.is_local:  # a stream from an object store into a local RSE
                with dest._errors("sync", rel_dst):
                    _fsync_file(temp)
        if compare(expected, digests) or (size is not None and got_size != size):
            _blame(source, rel_src, expected, names, size, what, got_size, digests)
        try:
            with dest._errors("publish", rel_dst):
                if unnamed is not None:
                    _link_unnamed(unnamed, final, sync_dir=sync_dir)
                else:
                    dest._publish(temp, final, rel_dst, got_size, sync_dir=sync_dir)
        except Conflict:
            # Another attempt published the same file meanwhile: fine if it is the right one.
            present = _accept_existing(dest, rel_dst, final, expected, names, size, keep=True)
            if present is None:
                raise
            return present
    except BaseException:
        if unnamed is None:
            dest._discard(temp)
        raise
    finally:
        if unnamed is not None:
            os.close(unnamed)  # a copy never linked vanishes with its last descriptor
    unsynced = parent if dest.is_local and not sync_dir else None
    return CopyOutcome(got_size, digests, method, unsynced)


def _third_party(
    source: XRootDStorageElement,
    rel_src: str,
    dest: XRootDStorageElement,
    rel_dst: str,
    expected: Mapping[str, str],
    names: Sequence[str],
    size: int | None,
    what: str,
    stop: threading.Event | None,
) -> CopyOutcome:
    """Between two XRootD servers the destination pulls from the source (the bytes go
    straight from one data center to the other, never through this process, and a per-link
    rate cap is the network's) and verifies by its own server-side adler32 before publishing.
    BLAKE3 cannot be computed on the way: adler32 is the proof, as for Rucio's TPC."""
    try:
        got_size, digests = dest.third_party_copy(
            source, rel_src, rel_dst, {"adler32": expected["adler32"]}, stop=stop
        )
    except Conflict:
        # Another attempt published the same file meanwhile: fine if it is the right one.
        present = _accept_existing(
            dest, rel_dst, dest.resolve(rel_dst), expected, names, size, keep=True
        )
        if present is None:
            raise
        return present
    except IntegrityFailure:
        if source.server_checksum(rel_src) != expected["adler32"]:
            raise SourceCorrupt(f"source of {what} does not match the catalog") from None
        raise
    if size is not None and got_size != size:
        dest.remove(rel_dst)
        raise IntegrityFailure(f"size mismatch in {what}: expected {size} got {got_size}")
    return CopyOutcome(got_size, digests, "tpc")


def remove_leftovers(dest: StorageElement, rel_dst: str) -> int:
    """Remove the ``.part-`` files earlier attempts left beside ``rel_dst``; returns how many.

    Only called for a redo (the catalog says a copy was under way and its owner is gone), so
    no live writer owns them.
    """
    final = dest.resolve(rel_dst)
    parent, _, base = final.rpartition("/")
    pattern = f"{glob.escape(parent)}/.{glob.escape(base)}.part-*"
    with dest._errors("list", rel_dst):
        found = glob.glob(pattern) if dest.is_local else list(dest.fs.glob(pattern))
    for path in found:
        dest._discard(path)
    return len(found)


def _names(expected: Mapping[str, str]) -> list[str]:
    if "adler32" not in expected:
        raise InvalidInput("a transfer needs the catalog's adler32 to verify the destination")
    names = list(expected)
    MultiHasher(names)
    return names


def _accept_existing(
    dest: StorageElement,
    rel_dst: str,
    final: str,
    expected: Mapping[str, str],
    names: Sequence[str],
    size: int | None,
    *,
    keep: bool = False,
) -> CopyOutcome | None:
    """A file already under the final name: accepted if it matches, else removed (or, with
    ``keep``, left alone and None returned)."""
    with dest._errors("check", rel_dst):
        if not (os.path.lexists(final) if dest.is_local else dest.fs.exists(final)):
            return None
    got_size, digests = _hash(dest, final, names, rel_dst)
    if not compare(expected, digests) and (size is None or got_size == size):
        return CopyOutcome(got_size, digests, "present")
    if not keep:
        # Nothing vouches for these bytes: the catalog holds no AVAILABLE replica here.
        dest.remove(rel_dst)
    return None


def _same_store(a: StorageElement, b: StorageElement) -> bool:
    if a.fs is b.fs:
        return True
    options_a = dict(getattr(a.fs, "storage_options", {}) or {})
    options_b = dict(getattr(b.fs, "storage_options", {}) or {})
    return type(a.fs) is type(b.fs) and options_a == options_b


def _hash(
    rse: StorageElement, path: str, names: Sequence[str], rel: str
) -> tuple[int, dict[str, str]]:
    with rse._errors("verify", rel):
        if rse.is_local:
            return checksum_file(path, names)
        with rse.fs.open(path, "rb") as stream:
            return checksum_stream(stream, names)


def _blame(
    source: StorageElement,
    rel_src: str,
    expected: Mapping[str, str],
    names: Sequence[str],
    size: int | None,
    what: str,
    got_size: int,
    got: Mapping[str, str],
) -> None:
    """The destination does not match the catalog: find out whether the source is to blame."""
    src_size, src_digests = source.checksum(rel_src, names)
    detail = ", ".join(f"{n} {got[n]} (catalog {expected[n]})" for n in compare(expected, got))
    detail = detail or f"{got_size} bytes (catalog {size})"
    if compare(expected, src_digests) or (size is not None and src_size != size):
        raise SourceCorrupt(f"source replica of {what} does not match the catalog: {detail}")
    raise IntegrityFailure(f"copy {what} arrived damaged: {detail}")


#: Nameless files (``O_TMPFILE``) can be given a name through /proc (Linux).
_UNNAMED = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
#: What a filesystem without ``O_TMPFILE`` answers: then the named temporary it is.
_NO_UNNAMED = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL)


def _open_unnamed(directory: str) -> int | None:
    """A new file without a name in ``directory`` (``O_TMPFILE``), or None where the system
    or the filesystem has none.

    For a small file the name of a temporary cost more than its bytes: creating it and
    removing it after publication are two journalled directory changes per copy, and the
    copy of a killed daemon left it behind as debris. A nameless file needs neither (it
    vanishes with its descriptor); it is published by a hard link to the same inode,
    exactly as the named temporary was. Larger files keep their ``.part-`` name: there
    the name costs little against the bytes, and a long copy under way stays visible
    (``du``, ``ls``)."""
    if not _UNNAMED:
        return None
    try:
        return os.open(directory, os.O_RDWR | os.O_TMPFILE | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno in _NO_UNNAMED:
            return None
        raise


def _link_unnamed(fd: int, final: str, *, sync_dir: bool) -> None:
    """Publish the nameless file ``fd`` as ``final`` (never over an existing file)."""
    try:
        # linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N: the way to name an O_TMPFILE
        # without privileges. os.link calls linkat only when given a directory descriptor
        # (ignored here: the path is absolute).
        os.link(f"/proc/self/fd/{fd}", final, src_dir_fd=fd, follow_symlinks=True)
    except FileExistsError:
        raise Conflict(f"{final} already exists; files are immutable") from None
    if sync_dir:
        fsync_dir(os.path.dirname(final))


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Throttle:
    """Sleeps so that ``done`` bytes take at least ``done / max_bytes_s`` seconds; honours stop."""

    def __init__(self, max_bytes_s: float, stop: threading.Event | None, what: str) -> None:
        self.rate = max_bytes_s
        self.stop = stop
        self.what = what
        self.started = time.monotonic()

    def check(self, done: int) -> None:
        if self.stop is not None and self.stop.is_set():
            raise CopyInterrupted(f"copy {self.what} stopped after {done} bytes")
        if self.rate > 0:
            delay = self.started + done / self.rate - time.monotonic()
            if delay > 0 and self.stop is not None and self.stop.wait(delay):
                raise CopyInterrupted(f"copy {self.what} stopped after {done} bytes")
            if delay > 0 and self.stop is None:
                time.sleep(delay)


def _kernel_copy(
    source: StorageElement,
    src_path: str,
    rel_src: str,
    dest: StorageElement,
    temp: str,
    rel_dst: str,
    names: Sequence[str],
    stop: threading.Event | None,
    max_bytes_s: float,
    unnamed: int | None = None,
) -> tuple[int, dict[str, str]]:
    """Copy in the kernel, then read the destination back through the same descriptor to
    hash it, and fsync it: (size, digests) of what the destination holds. One descriptor
    for the three: each open costs a path walk, and small files are all opens. The
    destination is ``temp``, created here, or the nameless file ``unnamed`` (left open:
    the caller publishes it through that descriptor)."""
    chunk = KERNEL_CHUNK
    if max_bytes_s:
        chunk = max(64 * 1024, min(KERNEL_CHUNK, int(max_bytes_s / 8)))
    throttle = _Throttle(max_bytes_s, stop, rel_dst)
    with source._errors("read", rel_src):
        fin = open(src_path, "rb", buffering=0)  # noqa: SIM115 - closed below
    with (
        fin,
        dest._errors("copy", rel_dst),
        open(
            temp if unnamed is None else unnamed,
            "xb+" if unnamed is None else "rb+",
            buffering=0,
            closefd=unnamed is None,
        ) as fout,
    ):
        kernel = True
        done = 0
        while True:
            throttle.check(done)
            if kernel:
                try:
                    copied = os.copy_file_range(fin.fileno(), fout.fileno(), chunk)
                except OSError as exc:
                    if exc.errno not in _NO_KERNEL_COPY or done:
                        raise
                    kernel = False
                    continue
            else:
                copied = os.sendfile(fout.fileno(), fin.fileno(), None, chunk)
            if copied == 0:
                break
            if copied == chunk:  # more may follow; a last chunk is left to the fsync
                _start_writeback(fout.fileno(), done, copied)
            done += copied
        if stop is not None and stop.is_set():
            raise CopyInterrupted(f"copy {source.name}:{rel_src} -> {rel_dst} stopped")
        fout.seek(0)
        with dest._errors("verify", rel_dst):
            # in this thread: the daemon runs many copies at once, hashing threads per copy
            # only added CPU (0.2 s per GB, 8 x 256 MiB in flight)
            got = checksum_opened(fout, names, threads=False)
        # after the hash: write-back started during the copy, this waits for the rest
        with dest._errors("sync", rel_dst):
            os.fsync(fout.fileno())
    return got


class _GatedWriter:
    """A writer that stops and throttles a streamed copy between chunks."""

    def __init__(self, raw: Any, throttle: _Throttle) -> None:
        self.raw = raw
        self.throttle = throttle
        self.done = 0

    def write(self, data: bytes | memoryview) -> int:
        self.throttle.check(self.done)
        written = int(self.raw.write(data) or len(data))
        self.done += written
        return written


def _stream(
    source: StorageElement,
    src_path: str,
    rel_src: str,
    dest: StorageElement,
    temp: str,
    rel_dst: str,
    names: Sequence[str],
    stop: threading.Event | None,
    max_bytes_s: float,
) -> None:
    throttle = _Throttle(max_bytes_s, stop, rel_dst)
    with (
        source._errors("read", rel_src),
        source.fs.open(src_path, "rb") as reader,
        dest._errors("copy", rel_dst),
        dest.fs.open(temp, "wb") as writer,
    ):
        _stream_copy(reader, cast(BinaryIO, _GatedWriter(writer, throttle)), names)
