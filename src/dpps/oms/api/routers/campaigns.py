"""Reprocessing campaigns over REST: plan (a dry run), submit, watch.

A campaign runs for hours, so a submission only queues it (202): the campaign daemon of
``dpps serve`` runs it, and the record (``WMS.campaigns``) says where it is; the remote CLI
polls ``GET /campaigns/{name}`` and prints the stored report exactly as a local run prints its
own. Submitting a campaign writes products (category C by default) and runs jobs, so it is the
``campaign`` right (data-processing managers); planning only reads, and so does watching.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from pydantic import Field

from dpps.core.authz import Action, Principal
from dpps.oms.api.deps import ArchiveView, Reader, producing
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.routers.wms import Workload
from dpps.oms.api.schemas import In, Page
from dpps.pipelines.campaign import CampaignSpec, run_campaign
from dpps.pipelines.campaign import record as campaign_record
from dpps.wms.types import CampaignInfo

router = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"], responses=PROBLEM_RESPONSES)
Runner = Annotated[Principal, producing(Action.CAMPAIGN)]
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")]
Text = Annotated[str, Field(min_length=1, max_length=4000)]
Did = Annotated[str, Field(min_length=1, max_length=1100)]


class CampaignIn(In):
    """``CampaignSpec`` as a request body (``dpps campaign reprocess`` sends it)."""

    query: Text
    software_version: Annotated[str, Field(min_length=1, max_length=128)]
    name: Annotated[str, Field(max_length=64)] = ""
    category: Literal["B", "C"] = "C"
    activity: Annotated[str, Field(min_length=1, max_length=64)] = "reprocessing"
    priority: Annotated[int, Field(ge=0, le=10)] = 3
    configs: Annotated[dict[str, dict[str, Any]], Field(default_factory=dict, max_length=16)]
    models: Did | None = None
    irf: Did | None = None
    timeout_s: Annotated[float, Field(gt=0, le=30 * 86_400)] = 3600.0
    max_attempts: Annotated[int | None, Field(ge=1, le=20)] = None

    def spec(self) -> CampaignSpec:
        return CampaignSpec.from_mapping(self.model_dump())


@router.get(
    "",
    response_model=Page[CampaignInfo],
    summary="Campaigns, newest first, a page at a time with how many match",
)
def list_campaigns(
    wms: Workload,
    _who: Reader,
    state: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[CampaignInfo]:
    """Without their reports (one campaign's ``GET`` has it)."""
    page = wms.campaigns.listing(state=state, limit=limit, offset=offset)
    return Page[CampaignInfo](items=page.items, total=page.total, limit=limit, offset=offset)


@router.get("/{name}", response_model=CampaignInfo, summary="One campaign and its report")
def get_campaign(name: Name, wms: Workload, _who: Reader) -> CampaignInfo:
    return wms.campaigns.get(name)


@router.post(
    "/plan",
    response_model=dict[str, Any],
    summary="What a campaign would process: selection, volume, models, IRF (a dry run)",
)
def plan_campaign(body: CampaignIn, archive: ArchiveView, _who: Reader) -> dict[str, Any]:
    """Reads only; the same report ``dpps campaign reprocess --dry-run`` prints."""
    return run_campaign(archive, body.spec(), dry_run=True).to_mapping()


@router.post(
    "",
    response_model=CampaignInfo,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Queue a campaign for the campaign daemon (or rerun / re-attach by name)",
)
def submit_campaign(body: CampaignIn, archive: ArchiveView, _who: Runner) -> CampaignInfo:
    """Checked now (tool options, query, DL0 found), run by the campaign daemon later; the
    same name and definition again attaches to it or reruns it, another definition is 409."""
    return campaign_record.submit(archive, body.spec())
