"""``RemoteArchive.get``: download files, and the files of datasets and containers, verified.

Each DID is first asked for its files (``GET /datasets/content/{did}?recursive=true``: a file
answers with itself, a collection with every file below it and their checksums). A file
already at its target with the catalog's size and checksums is reported ``present`` and not
downloaded again, so rerunning an interrupted ``dpps get DATASET DEST`` fetches only what is
missing; one with other content is a Conflict unless ``overwrite``. Each download streams to a
temporary name, is verified, and only then renamed into place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from dpps.bdms.types import BulkReport, FileInfo, FileResult
from dpps.client.views import load
from dpps.core.errors import Conflict, DppsError, IntegrityFailure, InvalidInput, Unavailable
from dpps.core.identifiers import DID, parse_did
from dpps.core.wire import CONTENT_PATH
from dpps.storage.checksums import MultiHasher, checksum_file, compare

if TYPE_CHECKING:
    from dpps.client.archive import RemoteArchive

Progress = Callable[[int], None]


def _expand(remote: RemoteArchive, dids: Sequence[str | DID]) -> tuple[list[Any], bool]:
    """Per DID its files (``FileInfo``), or the DID's text when asking failed (the download
    then fails with the server's own error); and whether any DID was a collection."""
    out: list[Any] = []
    collections = False
    for did in dids:
        try:
            files = remote.datasets.list_content(did, recursive=True)
        except DppsError:
            out.append(str(did))
            continue
        name = parse_did(str(did), "remote").name
        if len(files) == 1 and files[0].did_type == "FILE" and files[0].name == name:
            out.append(files[0])
            continue
        collections = True
        out.extend(files)
    return out, collections


def get(
    remote: RemoteArchive,
    dids: Sequence[str | DID],
    dest: Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    wait: bool = True,
    timeout_s: float | None = None,
    status: Callable[[str], None] | None = None,
) -> BulkReport:
    if not dids:
        raise InvalidInput("nothing to retrieve: give at least one DID")
    started = dt.datetime.now()
    params: dict[str, Any] = {"wait": wait}
    if timeout_s is not None:
        params["timeout_s"] = timeout_s
    items, collections = _expand(remote, dids)
    many = len(items) > 1 or collections
    if many:
        dest.mkdir(parents=True, exist_ok=True)
    targets: dict[Path, str] = {}
    results: list[FileResult] = []
    for item in items:
        label = item.did if isinstance(item, FileInfo) else str(item)
        try:
            if status is not None:
                status(f"retrieving {label} from {remote.url}")
            known = item if isinstance(item, FileInfo) else None
            results.append(_get_one(remote, label, known, dest, many, targets, overwrite, params))
        except DppsError as exc:
            results.append(
                FileResult(
                    source=label,
                    did=label,
                    status="failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    exit_code=exc.exit_code,
                )
            )
        if progress is not None:
            progress(1)
    return BulkReport(results, (dt.datetime.now() - started).total_seconds())


def identical(path: Path, info: FileInfo) -> bool:
    """Whether ``path`` already holds the catalog's bytes of ``info`` (size and checksums)."""
    wanted = {"adler32": info.adler32 or "", "blake3": info.blake3 or ""}
    wanted = {k: v for k, v in wanted.items() if v}
    if not wanted or not path.is_file() or path.stat().st_size != info.bytes:
        return False
    return not compare(wanted, checksum_file(path, tuple(wanted))[1])


def _get_one(
    remote: RemoteArchive,
    did: str,
    known: FileInfo | None,
    dest: Path,
    many: bool,
    targets: dict[Path, str],
    overwrite: bool,
    params: Mapping[str, Any],
) -> FileResult:
    from dpps.client.archive import _error, _path_did  # the archive imports this module

    name = parse_did(did, "remote").name
    target = dest / Path(name).name if many or dest.is_dir() or str(dest).endswith("/") else dest
    if target in targets:
        raise InvalidInput(f"{did} and {targets[target]} would both be written to {target}")
    targets[target] = did
    if target.exists() and not overwrite:
        if known is not None and identical(target, known):
            return FileResult(
                source=str(target), did=did, status="present", bytes=known.bytes, path=str(target)
            )
        raise Conflict(f"{target} exists with other content (use --overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.part-{uuid.uuid4().hex[:8]}")
    try:
        url = CONTENT_PATH + _path_did(did)
        with remote.http.stream("GET", url, params=params) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            if response.status_code == 202:  # staging requested, not waited for
                return load(FileResult, json.loads(response.read()))
            expected = {"adler32": response.headers.get("Dpps-Adler32", "")}
            if response.headers.get("Dpps-Blake3"):
                expected["blake3"] = response.headers["Dpps-Blake3"]
            hasher = MultiHasher(tuple(expected))
            size = 0
            with temp.open("wb") as out:
                for chunk in response.iter_bytes(2 * 1024 * 1024):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            bad = compare(expected, hasher.hexdigests())
            if bad:
                raise IntegrityFailure(
                    f"{did}: received bytes do not match the catalog's {', '.join(bad)}"
                )
            if target.exists() and not overwrite:
                raise Conflict(f"{target} exists (use --overwrite to replace it)")
            os.replace(temp, target)
            return FileResult(
                source=response.headers.get("Dpps-Source", ""),
                did=response.headers.get("Dpps-Did", did),
                status="retrieved",
                bytes=size,
                rse=response.headers.get("Dpps-Rse") or None,
                path=str(target),
            )
    except httpx.TransportError as exc:
        raise Unavailable(f"cannot reach the dpps server at {remote.url}: {exc}") from None
    finally:
        temp.unlink(missing_ok=True)
