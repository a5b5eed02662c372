"""Transfers: the copies rules still need, queued, active, done or failed.

The transfer daemon owns their life cycle; from here a FAILED transfer can be queued again
(``transfer.retry``: operators, archive managers), e.g. after a site came back.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from dpps.bdms.listings import TransferFilter
from dpps.bdms.types import PageRequest, TransferRecord
from dpps.core.authz import Action, Principal
from dpps.core.identifiers import MAX_ACTIVITY_ID
from dpps.oms.api.deps import ArchiveView, Reader, allowed
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import Page, TransferOut

router = APIRouter(prefix="/api/v1/transfers", tags=["transfers"], responses=PROBLEM_RESPONSES)


def transfer_out(t: TransferRecord) -> TransferOut:
    return TransferOut(
        id=t.id,
        did=t.did,  # scope:name, with @vN for an earlier version (as the library)
        dest_rse=t.dest,
        source_rse=t.source,
        rule_id=t.rule_id,
        state=t.state,
        activity=t.activity,
        priority=t.priority,
        bytes=t.bytes,
        attempts=t.attempts,
        max_attempts=t.max_attempts,
        next_attempt_at=t.next_attempt_at,
        error=t.error,
        created_at=t.created_at,
        updated_at=t.updated_at,
        finished_at=t.finished_at,
    )


@router.get("", response_model=Page[TransferOut], summary="Transfers, newest first")
def list_transfers(
    archive: ArchiveView,
    _who: Reader,
    state: Annotated[str | None, Query(max_length=16)] = None,
    rse: Annotated[str | None, Query(max_length=64, description="Destination RSE")] = None,
    rule_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    errors: Annotated[bool, Query(description="Only transfers with an error")] = False,
    order: Annotated[
        Literal["id", "updated"],
        Query(description="newest id first, or newest change first (as dpps transfer list)"),
    ] = "id",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[TransferOut]:
    where = TransferFilter(state=state, rse=rse, rule_id=rule_id, errors_only=errors)
    page = archive.replication.transfers_page(where, PageRequest(offset, limit), order=order)
    return Page[TransferOut](
        items=[transfer_out(t) for t in page.items], total=page.total, limit=limit, offset=offset
    )


TransferId = Annotated[int, Path(ge=1, le=MAX_ACTIVITY_ID)]  # 64-bit (migration 0008)


def _one(archive: ArchiveView, transfer_id: int) -> TransferOut:
    return transfer_out(archive.replication.transfer(transfer_id))


@router.get("/{transfer_id}", response_model=TransferOut, summary="One transfer")
def get_transfer(transfer_id: TransferId, archive: ArchiveView, _who: Reader) -> TransferOut:
    return _one(archive, transfer_id)


@router.post("/{transfer_id}/retry", response_model=TransferOut, summary="Retry a FAILED one")
def retry(
    transfer_id: TransferId,
    archive: ArchiveView,
    _who: Annotated[Principal, allowed(Action.TRANSFER_RETRY)],
) -> TransferOut:
    archive.replication.retry_transfer(transfer_id)
    return _one(archive, transfer_id)
