"""``RemoteArchive``: the archive's methods the CLI uses, spoken over REST with httpx.

With ``DPPS_URL`` (and ``DPPS_TOKEN``) set, ``dpps`` commands get one of these instead of an
``Archive`` and print exactly what they print locally: answers are turned back into the same
records (``dpps.bdms.types``), problems into the same exceptions (so the same exit codes).
Ingest uploads each file after planning names exactly like a local ingest; ``get`` streams
each file to a temporary name, verifies its checksums and only then renames it into place.
This module imports no server code, so the remote CLI starts as fast as the local one.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from dpps.bdms.api_types import AcadaIngestAPI
from dpps.bdms.metadata_values import parse_user_meta
from dpps.bdms.planning import count_files, plan
from dpps.bdms.records import IngestOptions, RegisterOutcome, Registration
from dpps.bdms.types import (
    BulkReport,
    FileDetails,
    FileInfo,
    FileResult,
    Location,
    MetaChange,
    RefreshReport,
    RSEInfo,
)
from dpps.client.datasets import RemoteDatasets
from dpps.client.replication import RemoteReplication
from dpps.client.views import (
    ENV_URL,
    RemoteAccounts,
    RemotePreservation,
    load,
    unsupported,
)
from dpps.core.errors import (
    ConfigError,
    Conflict,
    DppsError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
    error_for,
)
from dpps.core.identifiers import DID, parse_did, validate_scope
from dpps.core.version import __version__
from dpps.core.wire import (
    PLACEHOLDER,
    PROBLEM_TYPE_PREFIX,
    SIDECAR_HEADER,
    UPLOAD_PATH,
)

ENV_TOKEN = "DPPS_TOKEN"
PAGE = 1000
MAX_SIDECAR = 12_000

Progress = Callable[[int], None]


def _path_did(did: str | DID) -> str:
    return quote(str(did), safe="/:@+=,")


def _error(response: httpx.Response) -> DppsError:
    """The exception a problem+json answer stands for (by type, else by HTTP status)."""
    detail = response.text[:500] or response.reason_phrase
    name = None
    code = 0
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("title") or detail)
            kind = str(body.get("type", ""))
            if kind.startswith(PROBLEM_TYPE_PREFIX):
                name = kind[len(PROBLEM_TYPE_PREFIX) :]
                code = int(body.get("exit_code") or 0)
    except ValueError:
        pass
    if name is not None:
        return error_for(name, code, detail)
    status = response.status_code
    if status in (401, 403):
        return PermissionDenied(detail)
    if status == 404:
        return NotFound(detail)
    if status == 409:
        return Conflict(detail)
    if status in (400, 413, 414, 422):
        return InvalidInput(detail)
    return Unavailable(f"server answered {status}: {detail}")


class _NoStorage:
    """Stands in for the RSE when planning a remote ingest: nothing is registered in place."""

    def relative_path_of(self, _path: Path, /) -> None:
        return None


class RemoteArchive:
    """``ArchiveAPI`` (``dpps.bdms.api_types``) over the REST API of a dpps server."""

    def __init__(self, url: str, token: str, *, timeout: float = 300.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{ENV_URL} must be an http(s) URL, not {url!r}")
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"dpps/{__version__}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
        )
        self._default_scope: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        url, token = env.get(ENV_URL, ""), env.get(ENV_TOKEN, "")
        if not token:
            raise ConfigError(
                f"{ENV_URL} is set but {ENV_TOKEN} is not: create a token with "
                "'dpps token create ACCOUNT' on the server"
            )
        return cls(url, token)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the dpps server at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @property
    def default_scope(self) -> str:
        if self._default_scope is None:
            self._default_scope = str(self.whoami()["default_scope"])
        return self._default_scope

    def whoami(self) -> dict[str, Any]:
        data: dict[str, Any] = self._json("GET", "/api/v1/whoami")
        return data

    # -- query -------------------------------------------------------------------------------
    def list_files(
        self,
        filter_text: str = "",
        *,
        limit: int | None = 100,
        offset: int = 0,
        all_versions: bool = False,
        did_type: str | None = "FILE",
        dataset: str | DID | None = None,
    ) -> list[FileInfo]:
        out: list[FileInfo] = []
        while limit is None or len(out) < limit:
            want = PAGE if limit is None else min(PAGE, limit - len(out))
            params = {
                "filter": filter_text,
                "limit": want,
                "offset": offset + len(out),
                "all_versions": all_versions,
                "type": did_type or "FILE",
                **({"dataset": str(dataset)} if dataset is not None else {}),
            }
            items = self._json("GET", "/api/v1/dids", params=params)["items"]
            out.extend(load(list[FileInfo], items))
            if len(items) < want:
                break
        return out

    def count(
        self,
        filter_text: str = "",
        *,
        all_versions: bool = False,
        did_type: str | None = "FILE",
        dataset: str | DID | None = None,
    ) -> int:
        params: dict[str, Any] = {
            "filter": filter_text,
            "all_versions": all_versions,
            "type": did_type or "FILE",
        }
        if dataset is not None:
            params["dataset"] = str(dataset)
        return int(self._json("GET", "/api/v1/dids/count", params=params)["count"])

    def show(self, did: str | DID, *, events_limit: int = 50) -> FileDetails:
        data = self._json("GET", f"/api/v1/dids/{_path_did(did)}", params={"events": events_limit})
        return load(FileDetails, data)

    def locate(self, did: str | DID) -> Location:
        return load(Location, self._json("GET", f"/api/v1/replicas/{_path_did(did)}"))

    def rses(self) -> list[RSEInfo]:
        return load(list[RSEInfo], self._json("GET", "/api/v1/rses")["items"])

    def rse_select(self, expression: str) -> list[str]:
        """RSE expressions are evaluated by the local library only, for now."""
        return unsupported("rse_select")

    # -- metadata ----------------------------------------------------------------------------
    def set_meta(
        self, did: str | DID, pairs: Mapping[str, str], *, reason: str | None = None
    ) -> list[MetaChange]:
        if not pairs:
            raise InvalidInput("nothing to set: give key=value pairs")
        body = {"meta": dict(pairs), "reason": reason}
        return load(
            list[MetaChange], self._json("PATCH", f"/api/v1/dids/{_path_did(did)}", json=body)
        )

    def refresh_meta(
        self, filter_text: str, *, progress: Progress | None = None, dry_run: bool = False
    ) -> RefreshReport:
        data = self._json(
            "POST", "/api/v1/dids/refresh-meta", json={"filter": filter_text, "dry_run": dry_run}
        )
        report = load(RefreshReport, data)
        if progress is not None:
            progress(report.examined)
        return report

    # -- rules -------------------------------------------------------------------------------
    def add_rule(
        self,
        did: str | DID,
        *,
        copies: int,
        rses: str,
        source: str | None = None,
        lifetime: dt.timedelta | None = None,
        priority: int = 3,
        activity: str = "default",
        comment: str | None = None,
        locked: bool = False,
        skip_duplicate: bool = False,
    ) -> int:
        return self.add_rules(
            [did],
            copies=copies,
            rses=rses,
            source=source,
            lifetime=lifetime,
            priority=priority,
            activity=activity,
            comment=comment,
            locked=locked,
            skip_duplicate=skip_duplicate,
        )[0]

    def add_rules(
        self,
        dids: Sequence[str | DID],
        *,
        copies: int,
        rses: str,
        source: str | None = None,
        lifetime: dt.timedelta | None = None,
        priority: int = 3,
        activity: str = "default",
        comment: str | None = None,
        locked: bool = False,
        skip_duplicate: bool = False,
    ) -> list[int]:
        body = {
            "dids": [str(d) for d in dids],
            "copies": copies,
            "rses": rses,
            "source": source,
            "lifetime_days": lifetime.total_seconds() / 86400 if lifetime else None,
            "priority": priority,
            "activity": activity,
            "comment": comment,
            "locked": locked,
            "skip_duplicate": skip_duplicate,
        }
        return [int(i) for i in self._json("POST", "/api/v1/rules", json=body)["ids"]]

    def apply_policy(self, did: str | DID, policy: str) -> list[int]:
        data = self._json("POST", "/api/v1/rules/policy", json={"did": str(did), "policy": policy})
        return [int(i) for i in data["ids"]]

    # -- bulk registration -------------------------------------------------------------------
    def register_files(
        self, items: Sequence[Registration], dataset: str | None = None
    ) -> list[RegisterOutcome]:
        files = [{k: v for k, v in _registration(i).items() if v is not None} for i in items]
        data = self._json(
            "POST", "/api/v1/dids/register", json={"files": files, "dataset": dataset}
        )
        return load(list[RegisterOutcome], data["outcomes"])

    # -- ingest (upload) ---------------------------------------------------------------------
    def plan_size(self, paths: Sequence[Path], recursive: bool = False) -> int:
        return count_files(paths, recursive)

    def ingest(
        self,
        paths: Sequence[Path],
        rse: str,
        *,
        scope: str | None = None,
        lfn: str | None = None,
        lfn_prefix: str | None = None,
        dataset: str | None = None,
        meta: Mapping[str, str] | None = None,
        recursive: bool = False,
        new_version: bool = False,
        progress: Progress | None = None,
    ) -> BulkReport:
        started = dt.datetime.now()
        label_scope = scope or self.default_scope
        opts = IngestOptions(
            rse=rse,
            scope=label_scope,
            lfn=lfn,
            lfn_prefix=lfn_prefix,
            dataset=dataset,
            meta=meta,
            recursive=recursive,
            new_version=new_version,
        )
        # The checks a local ingest makes before touching any file, with the same messages.
        validate_scope(label_scope)
        parse_user_meta(meta or {})
        if dataset:
            parse_did(dataset, label_scope)
        known = sorted(r.name for r in self.rses())
        if rse not in known:
            raise NotFound(f"unknown RSE {rse!r} (known: {', '.join(known)})")
        items = plan(paths, opts, _NoStorage())
        params: dict[str, Any] = {"rse": rse, "new_version": new_version}
        if scope:
            params["scope"] = scope
        if dataset:
            params["dataset"] = dataset
        if meta:
            params["meta"] = [f"{k}={v}" for k, v in meta.items()]
        results: list[FileResult] = []
        for item in items:
            shown = str(item.source)
            try:
                if item.error is not None:
                    raise item.error
                assert item.lfn is not None
                results.extend(self._upload(item.source, item.lfn, params, shown))
            except DppsError as exc:
                if not _per_file(exc):
                    raise
                results.append(_failed(shown, label_scope, item.lfn, exc))
            if progress is not None:
                progress(1)
        seconds = (dt.datetime.now() - started).total_seconds()
        return BulkReport(results, seconds)

    def _upload(
        self, path: Path, lfn: str, params: Mapping[str, Any], shown: str
    ) -> list[FileResult]:
        if not path.exists():
            raise NotFound(f"{shown}: no such file")
        if not path.is_file():
            raise InvalidInput(f"{shown} is not a regular file")
        if path.stat().st_size == 0:
            raise InvalidInput(f"{shown} is empty: refusing to archive a 0-byte file")
        headers = {"Content-Type": "application/octet-stream"}
        sidecar = path.with_name(path.name + ".json")
        if sidecar.is_file():
            raw = sidecar.read_bytes()
            if len(raw) > MAX_SIDECAR:
                raise InvalidInput(f"{sidecar}: sidecars over {MAX_SIDECAR} bytes cannot be sent")
            headers[SIDECAR_HEADER] = base64.b64encode(raw, altchars=b"-_").decode()
        with path.open("rb") as body:
            data = self._json(
                "POST",
                UPLOAD_PATH,
                params={**params, "lfn": lfn, "filename": path.name},
                content=_chunks(body),
                headers=headers,
            )
        report = load(BulkReport, data)
        return [
            FileResult(
                **{
                    **_fields(r),
                    "source": shown,
                    "error": r.error.replace(PLACEHOLDER, shown) if r.error else None,
                }
            )
            for r in report.results
        ]

    # -- retrieval ---------------------------------------------------------------------------
    def get(
        self,
        dids: Sequence[str | DID],
        dest: Path,
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
        wait: bool = True,
        timeout_s: float | None = None,
        status: Callable[[str], None] | None = None,
    ) -> BulkReport:
        """Download verified copies; the server stages tape-only files first (``wait``);
        datasets and containers stand for their files (``dpps.client.download``)."""
        from dpps.client import download

        return download.get(
            self,
            dids,
            dest,
            overwrite=overwrite,
            progress=progress,
            wait=wait,
            timeout_s=timeout_s,
            status=status,
        )

    # -- accounts and operations -------------------------------------------------------------
    @property
    def accounts(self) -> RemoteAccounts:
        return RemoteAccounts(self)

    @property
    def preservation(self) -> RemotePreservation:
        return RemotePreservation(self)

    @property
    def replication(self) -> RemoteReplication:
        return RemoteReplication(self)

    @property
    def datasets(self) -> RemoteDatasets:
        return RemoteDatasets(self)

    @property
    def acada(self) -> AcadaIngestAPI:
        """Registering in place in an on-site landing area is the server's own business."""
        return unsupported("acada")

    def report(self, since: str, until: str | None, fmt: str, min_copies: int = 2) -> str:
        params: dict[str, Any] = {"since": since, "format": fmt, "min_copies": min_copies}
        if until:
            params["until"] = until
        return self.request("GET", "/api/v1/report", params=params).text


def _per_file(exc: DppsError) -> bool:
    """Errors of one file are reported per file; a refused request stops the whole command."""
    return not isinstance(exc, PermissionDenied | Unavailable | ConfigError)


def _failed(shown: str, scope: str, lfn: str | None, exc: DppsError) -> FileResult:
    return FileResult(
        source=shown,
        did=f"{scope}:{lfn}" if lfn else None,
        status="failed",
        error=str(exc),
        error_type=type(exc).__name__,
        exit_code=exc.exit_code,
    )


def _fields(result: FileResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in FileResult.__slots__}


def _chunks(stream: Any, size: int = 1024 * 1024) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def _registration(item: Registration) -> dict[str, Any]:
    return {name: getattr(item, name) for name in Registration.__slots__}
