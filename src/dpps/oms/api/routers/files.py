"""Bytes in and out: ingest an uploaded product, download a product's content.

Upload: the body is streamed to a spool directory under the file's own name (its suffix
drives metadata extraction), with its JSON sidecar if the client sent one, and then ingested
exactly as a local ``dpps ingest`` would - same checks, same copy-and-verify into the RSE,
same report. Paths of the spool never reach the client: they read ``<upload>``.

Download: the server retrieves the best replica with the library's verified ``get`` (which
marks a mismatching replica BAD and tries the next) and streams the verified copy; the client
checks the checksums again on what it received.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from dpps.bdms.types import BulkReport
from dpps.core.authz import Action, require
from dpps.core.errors import InvalidInput, error_for
from dpps.core.wire import CONTENT_PATH, PLACEHOLDER, SIDECAR_HEADER, UPLOAD_PATH
from dpps.oms.api.deps import ArchiveView, Context, CurrentPrincipal, Reader
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import BulkReportOut, FileResultOut

router = APIRouter(tags=["files"], responses=PROBLEM_RESPONSES)

_NAME_RE = re.compile(r"^[A-Za-z0-9_+=,\-][A-Za-z0-9._+=,\-]{0,254}$")
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
        },
    }
}


def _scrub(text: str | None, target: Path) -> str | None:
    if text is None:
        return None
    return text.replace(str(target), PLACEHOLDER).replace(str(target.parent) + "/", "")


def _scrubbed(report: BulkReport, target: Path) -> BulkReport:
    results = [
        dataclasses.replace(
            r, source=_scrub(r.source, target) or PLACEHOLDER, error=_scrub(r.error, target)
        )
        for r in report.results
    ]
    return BulkReport(results, report.seconds)


def _pairs(raw: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in raw:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"expected key=value, got {pair!r}")
        out[key.strip()] = value
    return out


def _sidecar(encoded: str | None) -> bytes | None:
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{SIDECAR_HEADER}: not base64url") from None


Text = Annotated[str | None, Query(max_length=1100)]


@router.post(
    UPLOAD_PATH,
    response_model=BulkReportOut,
    openapi_extra=_UPLOAD_BODY,
    summary="Ingest one uploaded file (body: its bytes) into an RSE",
)
async def ingest_upload(
    request: Request,
    archive: ArchiveView,
    who: CurrentPrincipal,
    ctx: Context,
    rse: Annotated[str, Query(min_length=1, max_length=64)],
    filename: Annotated[str, Query(min_length=1, max_length=255)],
    lfn: Annotated[str, Query(min_length=1, max_length=1100)],
    scope: Annotated[str | None, Query(max_length=30)] = None,
    dataset: Text = None,
    meta: Annotated[list[str] | None, Query(max_length=200)] = None,
    new_version: bool = False,
    sidecar: Annotated[str | None, Header(alias=SIDECAR_HEADER, max_length=16_000)] = None,
) -> BulkReportOut:
    if not _NAME_RE.match(filename) or filename in (".", ".."):
        raise InvalidInput(f"invalid file name {filename!r}: use A-Z a-z 0-9 . _ + = , -")
    pairs = _pairs(meta or [])
    side = _sidecar(sidecar)
    scopes = [scope or archive.config.default_scope]
    if dataset:
        scopes.append(archive.did(dataset).scope)
    require(who, Action.DID_WRITE, scopes=scopes)
    spool = Path(tempfile.mkdtemp(dir=ctx.spool, prefix="up-"))
    target = spool / filename
    try:
        with target.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        if side is not None:
            target.with_name(filename + ".json").write_bytes(side)
        report = await run_in_threadpool(
            archive.ingest,
            [target],
            rse,
            scope=scope,
            lfn=lfn,
            dataset=dataset,
            meta=pairs,
            new_version=new_version,
        )
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return BulkReportOut.model_validate(_scrubbed(report, target))


@router.get(
    CONTENT_PATH + "{did:path}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The bytes"},
        202: {"model": FileResultOut, "description": "Staging from tape requested (wait=false)"},
    },
    summary="Download a file's content (checksums in Dpps-Adler32 / Dpps-Blake3 headers)",
)
def download(
    did: str,
    archive: ArchiveView,
    ctx: Context,
    _who: Reader,
    wait: bool = True,
    timeout_s: Annotated[float | None, Query(gt=0, le=86_400)] = None,
) -> Response:
    spool = Path(tempfile.mkdtemp(dir=ctx.spool, prefix="down-"))
    try:
        info = archive.show(did, events_limit=0).file
        if info.is_open is not None:  # a dataset or container has no bytes of its own
            raise InvalidInput(
                f"{info.did} is a {info.did_type.lower()}: download its files one by one "
                f"(GET /api/v1/datasets/content/{info.did}?recursive=true lists them)"
            )
        report = archive.get([did], spool, wait=wait, timeout_s=timeout_s)
        result = report.results[0]
        if result.status == "staging":
            shutil.rmtree(spool, ignore_errors=True)
            body = FileResultOut.model_validate(result).model_dump(mode="json")
            return JSONResponse(body, status_code=202)
        if result.status == "failed":
            raise error_for(result.error_type, result.exit_code, result.error or "")
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise
    headers = {
        "Dpps-Did": info.did,
        "Dpps-Rse": result.rse or "",
        "Dpps-Source": result.source,
        "Dpps-Adler32": info.adler32 or "",
    }
    if info.blake3:
        headers["Dpps-Blake3"] = info.blake3
    return FileResponse(
        result.path or "",
        media_type="application/octet-stream",
        headers=headers,
        background=BackgroundTask(shutil.rmtree, spool, True),
    )
