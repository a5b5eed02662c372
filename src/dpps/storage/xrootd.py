"""RSEs reached over XRootD (``root://``): server-side checksums and third-party copy.

Reading, writing, listing and deleting go through fsspec's XRootD implementation
(``fsspec-xrootd``, over the ``xrootd`` Python bindings) like any other fsspec RSE. Two things
are XRootD's own and worth having:

* **server-side adler32** (``kXR_query checksum``): the server reads its own disk, so verifying
  a copy at the destination costs no transfer of the bytes back to the client;
* **third-party copy**: the destination server pulls from the source server, the bytes going
  straight from one data center to the other and never through the process that asked. The
  copy lands under a hidden temporary name, its adler32 is asked of the destination server and
  compared with the expected one, and only then is it renamed to its final name.

:class:`XRootDStorageElement` is a :class:`~dpps.storage.rse.StorageElement` with those two;
:func:`storage_element` picks it for ``root://`` URLs.
"""

from __future__ import annotations

import errno
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from dpps.core.errors import Conflict, DppsError, IntegrityFailure, NotFound, Unavailable
from dpps.core.states import RSEKind
from dpps.storage.checksums import compare
from dpps.storage.rse import VERIFY_ALGORITHM, CopyInterrupted, StorageElement

#: URL schemes served by XRootD.
SCHEMES = ("root", "xroot")
#: Seconds a third-party copy may take before it is abandoned.
TPC_TIMEOUT_S = 3600
#: XrdCl's client settings for an agent on a long-haul link (name: value, see ``man xrdcp``'s
#: environment section). XrdCl's own defaults suit an interactive client on a LAN: after a
#: failed connection it waits out the rest of a 120 s window before trying again, and a
#: broken stream keeps its requests for 30 minutes. The testbed showed what that costs: a WAN
#: link down for 20 s held every copy that tried to connect during the outage for two more
#: minutes after the link was back. Here a connection is tried every 10 s for a minute, and a
#: request on a broken stream fails after a minute: the transfer daemon retries the copy
#: itself, and sees the outage in its failures. ``XRD_*`` variables set in the environment
#: win over these values.
CLIENT_SETTINGS: dict[str, int] = {
    "ConnectionWindow": 10,
    "ConnectionRetry": 6,
    "StreamErrorWindow": 60,
    "TimeoutResolution": 5,
}


def is_xrootd_url(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


def endpoint_of(url: str) -> str:
    """``root://host:port`` of a ``root://host:port//path`` URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def storage_element(
    name: str,
    root: str,
    kind: RSEKind | str = RSEKind.DISK,
    storage_options: Mapping[str, Any] | None = None,
) -> StorageElement:
    """The right StorageElement for ``root``: XRootD-aware for ``root://`` URLs."""
    if is_xrootd_url(root):
        return XRootDStorageElement(name, root, kind, storage_options)
    return StorageElement(name, root, kind, storage_options)


class XRootDStorageElement(StorageElement):
    """A StorageElement on an XRootD server."""

    def __init__(
        self,
        name: str,
        root: str,
        kind: RSEKind | str = RSEKind.DISK,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        options = dict(storage_options or {})
        fs = _filesystem_class()(hostid=urlsplit(root).netloc, skip_instance_cache=True, **options)
        super().__init__(name, root, kind, options, filesystem=fs)
        self.endpoint = endpoint_of(root)

    @contextmanager
    def _errors(self, action: str, rel: str) -> Iterator[None]:
        """fsspec-xrootd raises bare OSErrors carrying the server's code in the text: give
        the codes that mean "no such file" and "exists" their errno first."""
        with super()._errors(action, rel):
            try:
                yield
            except OSError as exc:
                if exc.errno is None:
                    text = str(exc)
                    if "[3011]" in text or "no such file" in text.lower():
                        raise FileNotFoundError(errno.ENOENT, text) from exc
                    if "[3018]" in text:
                        raise FileExistsError(errno.EEXIST, text) from exc
                raise

    def _client(self) -> Any:
        return _bindings().FileSystem(self.endpoint)

    def server_checksum(self, rel: str, algorithm: str = VERIFY_ALGORITHM) -> str:
        """The server's own checksum of ``rel`` (hex), computed where the bytes are."""
        QueryCode = _bindings().flags.QueryCode  # noqa: N806 - the bindings' own name
        path = self.resolve(rel)
        status, answer = self._client().query(QueryCode.CHECKSUM, f"{path}?cks.type={algorithm}")
        if not status.ok:
            _raise(self, "checksum", rel, status)
        text = bytes(answer or b"").rstrip(b"\x00").decode().strip()
        name, _, value = text.partition(" ")
        if name != algorithm or not value:
            raise Unavailable(f"RSE {self.name}: unexpected checksum answer {text!r} for {rel}")
        return value.lower().zfill(8) if algorithm == "adler32" else value.lower()

    def checksum(self, rel: str, algorithms: Sequence[str]) -> tuple[int, dict[str, str]]:
        """adler32 alone is asked of the server; any other algorithm needs the bytes."""
        if list(algorithms) == [VERIFY_ALGORITHM]:
            return self.size(rel), {VERIFY_ALGORITHM: self.server_checksum(rel)}
        return super().checksum(rel, algorithms)

    def copy_from(
        self,
        source: StorageElement,
        rel_src: str,
        rel_dst: str,
        algorithms: Sequence[str] = (VERIFY_ALGORITHM,),
        expected: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str]]:
        """Third-party copy from another XRootD RSE when only adler32 is needed (the bytes
        never reach this process, so other digests cannot be computed on the way); otherwise
        the streamed copy of the base class."""
        wanted = set(algorithms) | set(expected or {})
        if not isinstance(source, XRootDStorageElement) or wanted - {VERIFY_ALGORITHM}:
            return super().copy_from(source, rel_src, rel_dst, algorithms, expected)
        return self.third_party_copy(source, rel_src, rel_dst, expected)

    def third_party_copy(
        self,
        source: XRootDStorageElement,
        rel_src: str,
        rel_dst: str,
        expected: Mapping[str, str] | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[int, dict[str, str]]:
        """Have this server pull ``rel_src`` from ``source``, verify it by the destination
        server's adler32 and publish it under ``rel_dst``; returns size and adler32.

        XrdCl checks on a running third-party copy every 2.5 s (a fixed wait in its copy
        job, however small the file), so each copy takes at least that long: throughput on
        small files comes from many copies in flight. ``stop`` set cancels the copy at the
        next check (:class:`CopyInterrupted`); the partial file is removed."""
        client = _bindings()
        src = source.resolve(rel_src)
        final = self.resolve(rel_dst)
        what = f"third-party copy of {source.name}:{rel_src} to {self.name}:{rel_dst}"
        if self.exists(rel_dst):
            raise Conflict(f"RSE {self.name}: {rel_dst} already exists; files are immutable")
        reference = dict(expected or {})
        if VERIFY_ALGORITHM not in reference:
            reference[VERIFY_ALGORITHM] = source.server_checksum(rel_src)
        parent, _, base = final.rpartition("/")
        temp = f"{parent}/.{base}.part-{uuid.uuid4().hex}"
        process = client.CopyProcess()
        process.add_job(
            f"{source.endpoint}/{src}",
            f"{self.endpoint}/{temp}",
            thirdparty="only",
            mkdir=True,
            force=False,
            tpctimeout=TPC_TIMEOUT_S,
        )
        try:
            status = process.prepare()
            if status.ok:
                status, results = process.run(_Cancel(stop))
                if status.ok and results and not results[0]["status"].ok:
                    status = results[0]["status"]
            if stop is not None and stop.is_set():
                raise CopyInterrupted(f"{what}: stopped")
            if not status.ok:
                _raise(self, "copy", rel_dst, status, source_missing=not source.exists(rel_src))
            # the server wrote the file behind fsspec's back: a listing of its directory
            # cached by an earlier exists() would not hold it
            self.fs.invalidate_cache(parent)
            with self._errors("stat", rel_dst):
                size = int(self.fs.size(temp))
            digests = {VERIFY_ALGORITHM: self._checksum_path(temp, rel_dst)}
            bad = compare(reference, digests)
            if bad:
                raise IntegrityFailure(
                    f"checksum mismatch in {what}: adler32 expected "
                    f"{reference[VERIFY_ALGORITHM]} got {digests[VERIFY_ALGORITHM]}"
                )
            if self.exists(rel_dst):  # XRootD's rename replaces: the no-replace check is ours
                raise Conflict(f"RSE {self.name}: {rel_dst} already exists; files are immutable")
            status, _ = self._client().mv(temp, final)
            if not status.ok:
                _raise(self, "publish", rel_dst, status)
        except BaseException:
            self._client().rm(temp)
            raise
        return size, digests

    def _checksum_path(self, path: str, rel: str) -> str:
        QueryCode = _bindings().flags.QueryCode  # noqa: N806 - the bindings' own name
        status, answer = self._client().query(
            QueryCode.CHECKSUM, f"{path}?cks.type={VERIFY_ALGORITHM}"
        )
        if not status.ok:
            _raise(self, "checksum", rel, status)
        value = bytes(answer or b"").rstrip(b"\x00").decode().strip().partition(" ")[2]
        return value.lower().zfill(8)


class _Cancel:
    """XrdCl's copy progress handler: asked every 2.5 s whether to cancel the copy."""

    def __init__(self, stop: threading.Event | None) -> None:
        self.stop = stop

    def begin(self, jobId: int, total: int, source: Any, target: Any) -> None:  # noqa: N803
        return None

    def end(self, jobId: int, results: Any) -> None:  # noqa: N803
        return None

    def update(self, jobId: int, processed: int, total: int) -> None:  # noqa: N803
        return None

    def should_cancel(self, jobId: int) -> bool:  # noqa: N803
        return self.stop is not None and self.stop.is_set()


_FS_CLASS: type[Any] | None = None


_CONFIGURED = False


def _bindings() -> Any:
    """``XRootD.client`` of the xrootd Python bindings (untyped; loaded on first use), with
    :data:`CLIENT_SETTINGS` applied once per process."""
    import importlib

    global _CONFIGURED
    client = importlib.import_module("XRootD.client")
    importlib.import_module("XRootD.client.flags")
    if not _CONFIGURED:
        for name, value in CLIENT_SETTINGS.items():
            if f"XRD_{name.upper()}" not in os.environ:
                client.EnvPutInt(name, value)
        _CONFIGURED = True
    return client


def _filesystem_class() -> type[Any]:
    """fsspec-xrootd's filesystem whose files accept any bytes-like object.

    Its ``write`` hands the buffer straight to the bindings, which take ``bytes`` only, while
    the checksumming copy writes memoryviews (no copy of each chunk): this converts there.
    Built on first use so that importing dpps does not load the XRootD bindings.
    """
    global _FS_CLASS
    if _FS_CLASS is None:
        _bindings()  # the client settings, before fsspec-xrootd opens its first channel
        from fsspec_xrootd.xrootd import XRootDFile, XRootDFileSystem

        class _File(XRootDFile):
            def write(self, data: Any) -> int:
                return int(super().write(data if isinstance(data, bytes) else bytes(data)))

        class _FileSystem(XRootDFileSystem):
            def _open(
                self,
                path: str,
                mode: str = "rb",
                block_size: int | str | None = None,
                autocommit: bool = True,
                cache_options: dict[Any, Any] | None = None,
                **kwargs: Any,
            ) -> Any:
                return _File(
                    self, path, mode, block_size, autocommit, cache_options=cache_options, **kwargs
                )

        _FS_CLASS = _FileSystem
    return _FS_CLASS


def _raise(
    rse: StorageElement, action: str, rel: str, status: Any, *, source_missing: bool = False
) -> None:
    """Map an XRootD status to the dpps error a caller can act on."""
    message = str(getattr(status, "message", status)).strip()
    errno_ = int(getattr(status, "errno", 0) or 0)
    error: type[DppsError]
    if source_missing or errno_ == 3011 or "no such file" in message.lower():
        error = NotFound
    elif errno_ == 3018 or "exists" in message.lower():
        error = Conflict
    else:
        error = Unavailable
    raise error(f"RSE {rse.name}: {action} {rel} failed over XRootD: {message}")
