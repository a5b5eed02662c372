"""Deliberate removal of a product and archival information packages over REST.

``POST /api/v1/deletions`` is ``dpps delete``: only archive managers and admins
(``did.delete``), checked here and again where the deletion happens
(``deletion.check_may_delete``), in the DID's scope. ``POST /api/v1/exports`` writes a BagIt
bag under the workspace's ``exports/`` directory (``export``), in a child process: the bagit
library changes the process's working directory, which a threaded server must not do.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from dpps.bdms.export.worker import run_export
from dpps.core.authz import Action, require
from dpps.core.errors import NotFound
from dpps.oms.api.deps import ArchiveView, CurrentPrincipal
from dpps.oms.api.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/api/v1", tags=["preservation"], responses=PROBLEM_RESPONSES)

DidText = Annotated[str, Field(min_length=1, max_length=1024)]


class DeletionIn(BaseModel):
    did: DidText
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class DeletionOut(BaseModel):
    did: str
    reason: str
    files: int
    rules_removed: int
    replicas_deleted: int
    replicas_pending: int
    kept: list[str]
    errors: list[str]


EXPORT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class ExportIn(BaseModel):
    did: DidText
    name: Annotated[
        str,
        Field(
            pattern=EXPORT_NAME,
            description="Directory created under the workspace's exports/ (must not exist)",
        ),
    ]
    wait: bool = True


class ExportOut(BaseModel):
    did: str
    dest: str
    files: int
    bytes: int
    seconds: float


@router.post("/deletions", response_model=DeletionOut, summary="Delete a product (dpps delete)")
def delete_product(body: DeletionIn, archive: ArchiveView, who: CurrentPrincipal) -> DeletionOut:
    require(who, Action.DID_DELETE, scopes=[archive.did(body.did).scope])
    report = archive.preservation.delete(body.did, reason=body.reason)
    return DeletionOut(
        did=report.did,
        reason=report.reason,
        files=report.files,
        rules_removed=report.rules_removed,
        replicas_deleted=report.replicas_deleted,
        replicas_pending=report.replicas_pending,
        kept=list(report.kept),
        errors=list(report.errors),
    )


@router.post(
    "/exports",
    response_model=ExportOut,
    status_code=status.HTTP_201_CREATED,
    summary="Export a product as a BagIt bag on the server (dpps export)",
)
def export_product(body: ExportIn, archive: ArchiveView, who: CurrentPrincipal) -> ExportOut:
    require(who, Action.EXPORT)
    archive.did(body.did)  # a malformed DID is a 400 here, not a child process later
    exports = archive.config.workspace / "exports"
    exports.mkdir(exist_ok=True)
    report = run_export(
        archive.config.workspace,
        account=archive.account,
        did=body.did,
        dest=exports / body.name,
        wait=body.wait,
    )
    return ExportOut(
        did=report.did,
        dest=report.dest,
        files=report.files,
        bytes=report.bytes,
        seconds=report.seconds,
    )


def _drop_download(tar_path: str) -> None:
    os.unlink(tar_path)


@router.get(
    "/exports/{name}",
    response_class=FileResponse,
    summary="Download an export as one tar stream (remote dpps export)",
    responses={200: {"content": {"application/x-tar": {}}}},
)
def download_export(
    name: Annotated[str, PathParam(pattern=EXPORT_NAME)],
    archive: ArchiveView,
    who: CurrentPrincipal,
    remove: Annotated[bool, Query(description="Remove the server's copy once sent")] = False,
) -> FileResponse:
    """The bag ``name`` under exports/ as an uncompressed tar (its checksums are inside)."""
    require(who, Action.EXPORT)
    bag = archive.config.workspace / "exports" / name
    if not bag.is_dir() or bag.is_symlink():
        raise NotFound(f"no export named {name!r}")
    fd, tar_path = tempfile.mkstemp(prefix="dpps-export-", suffix=".tar")
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w:") as tar:
            tar.add(bag, arcname=name)
    except BaseException:
        os.unlink(tar_path)
        raise
    if remove:
        # Dropped now, not in the response's background task: a client that has read the
        # whole body must find the server's copy gone (the tar holds everything it had).
        shutil.rmtree(bag, ignore_errors=True)
    return FileResponse(
        tar_path,
        media_type="application/x-tar",
        filename=f"{name}.tar",
        background=BackgroundTask(_drop_download, tar_path),
    )
