"""Datasets and containers: create, attach, detach, close or reopen, list content.

Thin routes over ``archive.datasets`` (``dpps.bdms.datasets_api``). Writes need the role
ingest needs (``did.write``) and the right to write in the scope of the collection changed
(for attach and detach, the parent's: what changes is the parent's content, as in Rucio).
Refusals come back as problem details with the library's classes: a closed dataset or a
duplicate is 409, an unknown DID 404, a wrong kind or a cycle 400.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dpps.core.authz import Action
from dpps.oms.api.deps import ArchiveView, CurrentPrincipal, Reader
from dpps.oms.api.guards import require_did_write
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.routers.dids import meta_text
from dpps.oms.api.schemas import (
    AttachOut,
    AttachRequest,
    CollectionCreate,
    CollectionStatus,
    ContentOut,
    DetachRequest,
    FileOut,
)

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"], responses=PROBLEM_RESPONSES)


@router.post("", response_model=FileOut, status_code=201, summary="Create a dataset or container")
def add(body: CollectionCreate, archive: ArchiveView, who: CurrentPrincipal) -> FileOut:
    require_did_write(archive, who, body.did, Action.DID_WRITE)
    meta = {k: meta_text(v) for k, v in body.meta.items()}
    if body.type == "CONTAINER":
        made = archive.datasets.add_container(body.did, meta=meta)
    else:
        made = archive.datasets.add_dataset(body.did, meta=meta)
    return FileOut.model_validate(made)


@router.post("/attach", response_model=AttachOut, summary="Attach DIDs to a collection")
def attach(body: AttachRequest, archive: ArchiveView, who: CurrentPrincipal) -> AttachOut:
    require_did_write(archive, who, body.parent, Action.DID_WRITE)
    done = archive.datasets.attach(
        body.parent, body.dids, ignore_duplicates=body.ignore_duplicates
    )
    return AttachOut(dids=done)


@router.post("/detach", response_model=AttachOut, summary="Detach DIDs from a collection")
def detach(body: DetachRequest, archive: ArchiveView, who: CurrentPrincipal) -> AttachOut:
    require_did_write(archive, who, body.parent, Action.DID_WRITE)
    return AttachOut(dids=archive.datasets.detach(body.parent, body.dids))


@router.post("/status", response_model=FileOut, summary="Close or reopen a collection")
def status(body: CollectionStatus, archive: ArchiveView, who: CurrentPrincipal) -> FileOut:
    require_did_write(archive, who, body.did, Action.DID_WRITE)
    changed = archive.datasets.reopen(body.did) if body.open else archive.datasets.close(body.did)
    return FileOut.model_validate(changed)


@router.get(
    "/content/{did:path}",
    response_model=ContentOut,
    summary="A collection's members, or every file below it (recursive; a file: itself)",
)
def content(
    did: str,
    archive: ArchiveView,
    _who: Reader,
    recursive: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    count: bool = False,
) -> ContentOut:
    total: int | None = None
    if count:
        page = archive.datasets.content_listing(
            did, recursive=recursive, limit=limit, offset=offset
        )
        items, total = page.items, page.total
    else:
        items = archive.datasets.list_content(did, recursive=recursive, limit=limit, offset=offset)
    return ContentOut(
        items=[FileOut.model_validate(i) for i in items], limit=limit, offset=offset, total=total
    )
