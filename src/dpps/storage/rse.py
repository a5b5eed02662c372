"""A storage element (RSE): one root directory on any fsspec filesystem.

The archive's promises about bytes live here. A file appears under its final name only whole
and verified (written to a hidden temporary name beside it, hashed in the same pass, renamed
last), is never overwritten (files are immutable: new content is a new version, a new path),
and no path handed to an RSE can reach outside its root. The same code serves local POSIX
directories, memory:// in tests and object stores such as s3:// later, so only the checks that
make sense on a local disk (symlinks, fsync, hard-link publication) touch ``os``, and only when
the filesystem is a LocalFileSystem.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, cast

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from dpps.core.config import Config
from dpps.core.errors import (
    Conflict,
    DppsError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from dpps.core.identifiers import validate_lfn, validate_scope
from dpps.core.states import RSEKind
from dpps.storage.checksums import (
    MultiHasher,
    checksum_file,
    checksum_stream,
    compare,
    copy_with_checksums,
)
from dpps.storage.posix import fsync_dir, identity, is_within, link_no_replace, mkdirs_below

PathArg = str | os.PathLike[str]

#: The checksum re-computed from the written bytes before a file is published.
VERIFY_ALGORITHM = "adler32"


class CopyInterrupted(Unavailable):
    """The copy was stopped before it finished; nothing was published."""


class StorageElement:
    """Files of one RSE, addressed by paths relative to its root."""

    def __init__(
        self,
        name: str,
        root: str,
        kind: RSEKind | str = RSEKind.DISK,
        storage_options: Mapping[str, Any] | None = None,
        *,
        filesystem: AbstractFileSystem | None = None,
        owns_root: bool = False,
    ) -> None:
        """``root`` is an fsspec URL or a local path; ``filesystem`` (rarely needed) supplies
        an already built filesystem, ``root`` then being a path inside it. ``owns_root`` marks
        a scratch area of dpps's own (the staging buffer's private directory), whose root a
        write may create; an RSE's root is never created by a write (``require_root``)."""
        try:
            self.kind = RSEKind(kind)
        except ValueError:
            raise InvalidInput(
                f"RSE {name!r}: kind must be 'disk' or 'tape', not {kind!r}"
            ) from None
        self.name = name
        self.url = root
        if filesystem is None:
            fs, path = fsspec.core.url_to_fs(root, **dict(storage_options or {}))
        else:
            fs, path = filesystem, filesystem._strip_protocol(root)
        self.fs: AbstractFileSystem = fs
        self.is_local = isinstance(fs, LocalFileSystem)
        self.root: str = path.rstrip("/") if path != "/" else path
        self._real_root: str | None = None
        self._root_id: tuple[int, int] | None = None  # (st_dev, st_ino) of _real_root
        self.owns_root = owns_root
        if not self.root:
            raise InvalidInput(f"RSE {name!r}: empty root {root!r}")

    @classmethod
    def from_config(cls, name: str, config: Config) -> StorageElement:
        rse = config.rses.get(name)
        if rse is None:
            raise NotFound(f"no RSE named {name!r} in the configuration")
        url = config.rse_url(name)
        if cls is StorageElement:
            # root:// gets XRootD's server-side checksums and third-party copy; imported
            # here because dpps.storage.xrootd builds on this module
            from dpps.storage.xrootd import storage_element

            return storage_element(name, url, rse.kind, rse.storage_options)
        return cls(name, url, rse.kind, rse.storage_options)

    def __repr__(self) -> str:
        return f"StorageElement({self.name!r}, {self.url!r}, kind={self.kind.value!r})"

    # -- paths ---------------------------------------------------------------------------

    @staticmethod
    def path_for(scope: str, lfn: str, version: int = 1) -> str:
        """The deterministic relative path of a file ('@' never occurs in an LFN)."""
        validate_scope(scope)
        validate_lfn(lfn)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInput(f"invalid version {version!r}: must be an integer >= 1")
        return f"{scope}{lfn}" if version == 1 else f"{scope}{lfn}@v{version}"

    def resolve(self, relpath: str) -> str:
        """The filesystem path of ``relpath`` under the root; PermissionDenied if it escapes."""
        if not isinstance(relpath, str):
            raise InvalidInput(f"RSE path must be a string, not {type(relpath).__name__}")
        if "\x00" in relpath:
            raise PermissionDenied(f"RSE {self.name}: path {relpath!r} contains a NUL byte")
        if relpath.startswith(("/", "\\")) or "://" in relpath:
            raise PermissionDenied(
                f"RSE {self.name}: path {relpath!r} is absolute; only paths relative to the "
                "RSE root are accepted"
            )
        parts = relpath.split("/")
        if any(p == "" for p in parts):
            raise PermissionDenied(f"RSE {self.name}: path {relpath!r} has an empty component")
        if any(p in (".", "..") for p in parts):
            raise PermissionDenied(
                f"RSE {self.name}: path {relpath!r} has a '.' or '..' component"
            )
        full = f"{self.root}/{relpath}" if self.root != "/" else f"/{relpath}"
        if self.is_local:
            self._check_inside(full, parts)
        return full

    def _check_inside(self, full: str, parts: Sequence[str]) -> None:
        """PermissionDenied unless ``full`` (the root, then ``parts``) stays inside the root
        once its symbolic links are followed.

        ``realpath`` of the whole path, the plain way, walks every component of it in
        Python (about 17 ``lstat`` calls per copy between two RSEs, the root's own
        components included). The cheap way gives the same answer: one ``stat`` shows the
        root's path still leads to the directory resolved before (same device and inode,
        however its own path is spelt), then one ``lstat`` per component below it, up to
        the first that is not there (the rest has no '..', ``resolve`` refused those, so it
        cannot climb out). Any symbolic link among them, dangling or not, and any doubt
        about the root send the path through ``realpath``, which follows every link."""
        real_root = self._resolved_root()
        if self._root_id is not None and identity(self.root) == self._root_id:
            path = self.root.rstrip("/")
            for part in parts:
                path = f"{path}/{part}"
                try:
                    mode = os.lstat(path).st_mode
                except OSError:  # missing (or unreachable): nothing below it to follow
                    return
                if stat.S_ISLNK(mode):
                    break
            else:
                return
        real = os.path.realpath(full)
        if not is_within(real, real_root):
            raise PermissionDenied(
                f"RSE {self.name}: path {'/'.join(parts)!r} resolves to {real}, outside the "
                f"RSE root {real_root} (symbolic link?)"
            )

    def _resolved_root(self) -> str:
        """The root with its symbolic links resolved, remembered with the directory's
        identity once the root exists (every copy resolves two paths)."""
        if self._real_root is not None:
            return self._real_root
        real = os.path.realpath(self.root)
        found = identity(real)
        if found is not None and os.path.isdir(real):
            self._real_root, self._root_id = real, found
        return real

    def relative_path_of(self, local_path: PathArg) -> str | None:
        """The RSE-relative path of a local file inside this root, else None (register in
        place)."""
        if not self.is_local:
            return None
        real_root = self._resolved_root()
        real = os.path.realpath(os.fspath(local_path))
        if real == real_root or not is_within(real, real_root):
            return None
        rel = Path(os.path.relpath(real, real_root)).as_posix()
        try:
            self.resolve(rel)
        except PermissionDenied:
            return None
        return rel

    # -- reading -------------------------------------------------------------------------

    def root_exists(self) -> bool:
        """True when the root itself is there: a missing root is unmounted storage (or a
        vanished bucket), which says nothing about the files that should be under it."""
        with self._errors("check", "."):
            return bool(self.fs.exists(self.root))

    def require_root(self, action: str = "write") -> None:
        """Unavailable unless the root of a local RSE is a directory that is there.

        Only workspace creation (``dpps init``) makes RSE roots. A root that is missing at any
        other time is a data center's disk that is not mounted: creating it would put the
        archive's copies on the host's own filesystem, where they vanish from sight when the
        disk returns. Object stores are not checked here: their prefixes are no directories,
        and a stopped server or a missing bucket already fails the write itself.
        """
        if self.is_local and not os.path.isdir(self.root):
            raise Unavailable(
                f"RSE {self.name} unavailable: {action}: its root {self.root} is missing or "
                "not a directory (storage not mounted?); RSE roots are created only by "
                "'dpps init'"
            )

    def make_parent(self, rel: str) -> None:
        """Create the directories above ``rel`` for a write, never the root itself; the one
        place writes make directories in an RSE."""
        final = self.resolve(rel)
        parent = final.rpartition("/")[0]
        if not self.is_local:
            with self._errors("mkdir", rel):
                self.fs.makedirs(parent, exist_ok=True)
            return
        if os.path.isdir(parent):  # the common case: the root is there too
            return
        if self.owns_root:
            with self._errors("mkdir", "."):
                os.makedirs(self.root, exist_ok=True)
        self.require_root(f"write {rel}")
        with self._errors("mkdir", rel):
            try:
                # One level at a time below the root (never makedirs from the top): a root
                # unmounted meanwhile makes this fail instead of being created again.
                mkdirs_below(self.root, parent)
            except FileNotFoundError:
                self.require_root(f"write {rel}")  # Unavailable when the root went away
                raise
        self.resolve(rel)  # the parent chain now exists: re-check it stayed inside

    def exists(self, rel: str) -> bool:
        path = self.resolve(rel)
        with self._errors("check", rel):
            return bool(self.fs.exists(path))

    def size(self, rel: str) -> int:
        path = self.resolve(rel)
        with self._errors("stat", rel):
            return int(self.fs.size(path))

    def open_read(self, rel: str) -> BinaryIO:
        """An open binary file (also a context manager); the caller closes it."""
        path = self.resolve(rel)
        with self._errors("open", rel):
            return cast(BinaryIO, self.fs.open(path, "rb"))

    def checksum(self, rel: str, algorithms: Sequence[str]) -> tuple[int, dict[str, str]]:
        path = self.resolve(rel)
        MultiHasher(algorithms)
        with self._errors("checksum", rel):
            if self.is_local:
                return checksum_file(path, algorithms)
            with self.fs.open(path, "rb") as stream:
                return checksum_stream(stream, algorithms)

    def usage(self) -> int:
        """Bytes stored under the root (temporary files included: they occupy space too)."""
        with self._errors("walk", "."):
            if not self.fs.exists(self.root):
                return 0
            found = self.fs.find(self.root, detail=True)
        return sum(int(info.get("size") or 0) for info in found.values())

    # -- writing -------------------------------------------------------------------------

    def upload(
        self,
        local_src: PathArg,
        rel: str,
        algorithms: Sequence[str],
        expected: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str]]:
        """Copy a local file to ``rel`` atomically, hashing it in the same pass.

        Returns the size and the digests of ``algorithms`` plus any algorithm named in
        ``expected`` (all of which are checked). The bytes written are re-read and their
        adler32 compared before the file is published under its final name.
        """
        final = self.resolve(rel)
        names = _algorithms(algorithms, expected, VERIFY_ALGORITHM)
        with self._errors("check", rel):
            if self.fs.exists(final):
                raise Conflict(f"RSE {self.name}: {rel} already exists; files are immutable")
        parent, _, base = final.rpartition("/")
        temp = f"{parent}/.{base}.part-{uuid.uuid4().hex}"
        try:
            self.make_parent(rel)
            with (
                self._errors("upload", rel),
                _open_local_source(local_src) as src,
                self.fs.open(temp, "wb") as dst,
            ):
                size, digests = copy_with_checksums(src, dst, names)
                if self.is_local:
                    dst.flush()
                    os.fsync(dst.fileno())
            _check_expected(expected, digests, f"upload of {os.fspath(local_src)} to {rel}")
            with self._errors("verify", rel), self.fs.open(temp, "rb") as written:
                wsize, wdigests = checksum_stream(written, [VERIFY_ALGORITHM])
            if wsize != size or compare(digests, wdigests):
                raise IntegrityFailure(
                    f"RSE {self.name}: {rel} reads back differently from what was written "
                    f"({wsize} bytes, adler32 {wdigests[VERIFY_ALGORITHM]}; expected {size} "
                    f"bytes, adler32 {digests[VERIFY_ALGORITHM]})"
                )
            with self._errors("publish", rel):
                self._publish(temp, final, rel, size)
        except BaseException:
            self._discard(temp)
            raise
        return size, digests

    def remove(self, rel: str) -> None:
        """Delete a file; a file that is already gone is not an error."""
        path = self.resolve(rel)
        with suppress(NotFound), self._errors("remove", rel):
            self.fs.rm(path)

    def shares_store_with(self, other: StorageElement) -> bool:
        """True when both RSEs live on one filesystem (one object store, one local disk), so
        the store itself can copy between them."""
        if self.fs is other.fs:
            return True
        return type(self.fs) is type(other.fs) and dict(self.fs.storage_options) == dict(
            other.fs.storage_options
        )

    def copy_from(
        self,
        source: StorageElement,
        rel_src: str,
        rel_dst: str,
        algorithms: Sequence[str] = (VERIFY_ALGORITHM,),
        expected: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str]]:
        """Copy ``rel_src`` of ``source`` to ``rel_dst`` here: atomic, verified, never over
        an existing file. Returns the size and digests of what was published.

        On a shared store the bytes never pass through this process (S3 CopyObject, a kernel
        copy on a local disk) into a temporary name, which is then read back and hashed; a
        transfer between two RSEs of one object store costs no client bandwidth. Otherwise
        the bytes are streamed and hashed in the same pass and the written copy re-read by
        adler32, as for an upload. Either way every algorithm named in ``expected`` is checked
        before the file is published; without ``expected`` the source's adler32 is compared.
        """
        src = source.resolve(rel_src)
        final = self.resolve(rel_dst)
        names = _algorithms(algorithms, expected, VERIFY_ALGORITHM)
        with self._errors("check", rel_dst):
            if self.fs.exists(final):
                raise Conflict(f"RSE {self.name}: {rel_dst} already exists; files are immutable")
        parent, _, base = final.rpartition("/")
        temp = f"{parent}/.{base}.part-{uuid.uuid4().hex}"
        what = f"copy of {source.name}:{rel_src} to {self.name}:{rel_dst}"
        try:
            self.make_parent(rel_dst)
            if self.shares_store_with(source):
                reference = dict(expected or {})
                if not reference:
                    reference = source.checksum(rel_src, [VERIFY_ALGORITHM])[1]
                with source._errors("copy", rel_src):
                    self.fs.copy(src, temp)
                with self._errors("verify", rel_dst), self.fs.open(temp, "rb") as written:
                    size, digests = checksum_stream(written, names)
                _check_expected(reference, digests, what)
            else:
                with (
                    source._errors("read", rel_src),
                    source.fs.open(src, "rb") as reader,
                    self._errors("copy", rel_dst),
                    self.fs.open(temp, "wb") as writer,
                ):
                    size, digests = copy_with_checksums(reader, writer, names)
                    if self.is_local:
                        writer.flush()
                        os.fsync(writer.fileno())
                _check_expected(expected, digests, what)
                with self._errors("verify", rel_dst), self.fs.open(temp, "rb") as written:
                    wsize, wdigests = checksum_stream(written, [VERIFY_ALGORITHM])
                if wsize != size or compare(digests, wdigests):
                    raise IntegrityFailure(
                        f"RSE {self.name}: {rel_dst} reads back differently from what was "
                        f"written in the {what}"
                    )
            with self._errors("publish", rel_dst):
                self._publish(temp, final, rel_dst, size)
        except BaseException:
            self._discard(temp)
            raise
        return size, digests

    def download(
        self,
        rel: str,
        local_dest: PathArg,
        algorithms: Sequence[str],
        expected: Mapping[str, str] | None = None,
        overwrite: bool = False,
    ) -> tuple[int, dict[str, str]]:
        """Copy ``rel`` to a local file atomically, hashing it in the same pass."""
        source = self.resolve(rel)
        names = _algorithms(algorithms, expected, None)
        dest = Path(local_dest)
        if dest.is_dir():
            raise Conflict(f"{dest} is a directory")
        if not overwrite and os.path.lexists(dest):
            raise Conflict(f"{dest} already exists (pass overwrite=True to replace it)")
        temp = dest.parent / f".{dest.name}.part-{uuid.uuid4().hex}"
        try:
            with self._errors("download", rel):
                dest.parent.mkdir(parents=True, exist_ok=True)
                with self.fs.open(source, "rb") as src, open(temp, "xb") as dst:
                    size, digests = copy_with_checksums(src, dst, names)
                    dst.flush()
                    os.fsync(dst.fileno())
            _check_expected(expected, digests, f"download of {rel} from RSE {self.name}")
            with self._errors("publish", str(dest)):
                if overwrite:
                    os.replace(temp, dest)
                    fsync_dir(str(dest.parent))
                else:
                    link_no_replace(str(temp), str(dest))
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return size, digests

    # -- internals -----------------------------------------------------------------------

    def _publish(self, temp: str, final: str, rel: str, size: int, sync_dir: bool = True) -> None:
        """``sync_dir=False``: the caller fsyncs the directory itself (once for many files)."""
        if self.is_local:
            # same inode: what was verified is what is published
            link_no_replace(temp, final, sync_dir=sync_dir)
            return
        if self.fs.exists(final):  # object stores have no atomic no-replace rename
            raise Conflict(f"RSE {self.name}: {rel} already exists; files are immutable")
        self.fs.mv(temp, final)  # a server-side copy on object stores: check what arrived
        published = int(self.fs.size(final))
        if published != size:
            self._discard(final)
            raise IntegrityFailure(
                f"RSE {self.name}: {rel} has {published} bytes after publication, not {size}"
            )

    def _discard(self, temp: str) -> None:
        with suppress(Exception):
            self.fs.rm(temp)

    @contextmanager
    def _errors(self, action: str, rel: str) -> Iterator[None]:
        """Translate filesystem errors into the dpps hierarchy, naming the RSE and path."""
        try:
            yield
        except DppsError:
            raise
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(f"RSE {self.name}: {action} {rel}: {_reason(exc)}") from exc
        except PermissionError as exc:
            raise PermissionDenied(f"RSE {self.name}: {action} {rel}: {_reason(exc)}") from exc
        except FileExistsError as exc:
            raise Conflict(f"RSE {self.name}: {action} {rel}: {_reason(exc)}") from exc
        except IsADirectoryError as exc:
            raise InvalidInput(
                f"RSE {self.name}: {action} {rel}: is a directory, not a file"
            ) from exc
        except OSError as exc:  # ENOSPC, EIO, connection refused, timeouts ...
            raise Unavailable(
                f"RSE {self.name} unavailable: {action} {rel}: {_reason(exc)}"
            ) from exc
        except Exception as exc:
            # Object-store clients raise their own transport errors (botocore's
            # EndpointConnectionError is no OSError): the store is unreachable, not a bug.
            if type(exc).__module__.split(".")[0] not in _TRANSPORT_MODULES:
                raise
            raise Unavailable(f"RSE {self.name} unavailable: {action} {rel}: {exc}") from exc


#: Libraries whose exceptions mean "the storage service could not be reached or answered".
_TRANSPORT_MODULES = frozenset({"botocore", "aiobotocore", "aiohttp", "urllib3", "requests"})


def _reason(exc: OSError) -> str:
    if exc.strerror:
        return f"{exc.strerror} ({errno.errorcode.get(exc.errno or 0, exc.errno)})"
    return str(exc) or type(exc).__name__


def _algorithms(
    algorithms: Sequence[str], expected: Mapping[str, str] | None, required: str | None
) -> list[str]:
    if isinstance(algorithms, str):
        raise InvalidInput(f"algorithms must be a sequence of names, not {algorithms!r}")
    names = list(
        dict.fromkeys([*algorithms, *(expected or {}), *([required] if required else [])])
    )
    MultiHasher(names)  # unknown names -> InvalidInput before any byte moves
    return names


def _check_expected(
    expected: Mapping[str, str] | None, actual: Mapping[str, str], what: str
) -> None:
    if not expected:
        return
    bad = compare(expected, actual)
    if bad:
        detail = ", ".join(f"{n} expected {expected[n]} got {actual[n]}" for n in bad)
        raise IntegrityFailure(f"checksum mismatch in {what}: {detail}")


@contextmanager
def _open_local_source(path: PathArg) -> Iterator[BinaryIO]:
    try:
        stream = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise NotFound(f"local file {os.fspath(path)} does not exist") from None
    except IsADirectoryError:
        raise InvalidInput(f"{os.fspath(path)} is a directory, not a file") from None
    except PermissionError:
        raise PermissionDenied(f"cannot read local file {os.fspath(path)}") from None
    with stream:
        yield cast(BinaryIO, stream)
