"""DIDs: query by metadata, details, metadata care, bulk registration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from dpps.bdms.records import Registration
from dpps.core.authz import ALL_SCOPES, Action, require
from dpps.core.errors import PermissionDenied
from dpps.core.states import DIDType
from dpps.oms import registration
from dpps.oms.api.deps import ArchiveView, CurrentPrincipal, Reader
from dpps.oms.api.fastjson import model_response
from dpps.oms.api.guards import require_did_write
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import (
    CountOut,
    FileDetailsOut,
    FileOut,
    MetaChangeOut,
    MetaPatch,
    Page,
    RefreshReportOut,
    RefreshRequest,
    RegisterOutcomeOut,
    RegisterReportOut,
    RegisterRequest,
)

router = APIRouter(prefix="/api/v1/dids", tags=["dids"], responses=PROBLEM_RESPONSES)

FilterQ = Annotated[
    str, Query(alias="filter", max_length=10_000, description="Filter (docs/query-language.md)")
]
DatasetQ = Annotated[
    str | None,
    Query(max_length=1100, description="Only DIDs below this dataset or container"),
]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10**9)]


@router.get("", response_model=Page[FileOut], summary="Query DIDs by metadata")
def list_dids(
    archive: ArchiveView,
    _who: Reader,
    filter_text: FilterQ = "",
    limit: Limit = 100,
    offset: Offset = 0,
    all_versions: bool = False,
    did_type: Annotated[DIDType, Query(alias="type")] = DIDType.FILE,
    dataset: DatasetQ = None,
) -> Response:
    items = archive.list_files(
        filter_text,
        limit=limit,
        offset=offset,
        all_versions=all_versions,
        did_type=did_type.value,
        dataset=dataset,
    )
    if len(items) < limit and (items or offset == 0):
        total = offset + len(items)  # the last page: the total is known without counting
    else:
        total = archive.count(
            filter_text, all_versions=all_versions, did_type=did_type.value, dataset=dataset
        )
    page = Page[FileOut](
        items=[FileOut.model_validate(f) for f in items], total=total, limit=limit, offset=offset
    )
    return model_response(page)


@router.get("/count", response_model=CountOut, summary="Count DIDs matching a filter")
def count_dids(
    archive: ArchiveView,
    _who: Reader,
    filter_text: FilterQ = "",
    all_versions: bool = False,
    did_type: Annotated[DIDType, Query(alias="type")] = DIDType.FILE,
    dataset: DatasetQ = None,
) -> CountOut:
    n = archive.count(
        filter_text, all_versions=all_versions, did_type=did_type.value, dataset=dataset
    )
    return CountOut(count=n)


@router.post(
    "/register",
    response_model=RegisterReportOut,
    summary="Register files already on an RSE (catalog only, in bulk)",
)
def register_files(
    body: RegisterRequest, archive: ArchiveView, who: CurrentPrincipal
) -> RegisterReportOut:
    items = [Registration(**f.model_dump()) for f in body.files]
    require(who, Action.DID_WRITE, scopes=registration.scopes_of(archive, items, body.dataset))
    outcomes = registration.register(archive, items, body.dataset)
    return RegisterReportOut(
        registered=sum(o.status == "registered" for o in outcomes),
        present=sum(o.status == "present" for o in outcomes),
        conflicts=sum(o.status == "conflict" for o in outcomes),
        outcomes=[RegisterOutcomeOut.model_validate(o) for o in outcomes],
    )


@router.post(
    "/refresh-meta",
    response_model=RefreshReportOut,
    summary="Re-extract metadata of the files matching a filter from their stored bytes",
)
def refresh_meta(
    body: RefreshRequest, archive: ArchiveView, who: CurrentPrincipal
) -> RefreshReportOut:
    require(who, Action.META_WRITE)
    if ALL_SCOPES not in who.scopes:
        allowed = sorted(who.scopes)
        outside = f"scope not in ({','.join(allowed)})" if allowed else "scope like %"
        base = f"({body.filter}) and " if body.filter.strip() else ""
        if archive.count(base + outside):
            raise PermissionDenied(
                f"the filter matches files outside the scopes of account {who.name!r} "
                f"({', '.join(allowed) or 'none'}): narrow it, e.g. with 'scope=...'"
            )
    report = archive.refresh_meta(body.filter, dry_run=body.dry_run)
    return RefreshReportOut.model_validate(report)


@router.get("/{did:path}", response_model=FileDetailsOut, summary="A DID with replicas and events")
def show_did(
    did: str,
    archive: ArchiveView,
    _who: Reader,
    events_limit: Annotated[int, Query(alias="events", ge=0, le=1000)] = 50,
) -> FileDetailsOut:
    return FileDetailsOut.model_validate(archive.show(did, events_limit=events_limit))


@router.patch(
    "/{did:path}",
    response_model=list[MetaChangeOut],
    summary="Set metadata; old values stay in the event history",
)
def set_meta(
    did: str, body: MetaPatch, archive: ArchiveView, who: CurrentPrincipal
) -> list[MetaChangeOut]:
    require_did_write(archive, who, did, Action.META_WRITE)
    pairs = {k: meta_text(v) for k, v in body.meta.items()}
    changes = archive.set_meta(did, pairs, reason=body.reason)
    return [MetaChangeOut.model_validate(c) for c in changes]


def meta_text(value: object) -> str:
    """Metadata values as text (also for new datasets): the library parses metadata from
    text as the CLI gives it; JSON booleans follow."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
