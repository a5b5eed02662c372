"""Transfers: the copies rules still need, queued, active, done or failed.

The transfer daemon owns their life cycle; from here a FAILED transfer can be queued again
(``transfer.retry``: operators, archive managers), e.g. after a site came back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from dpps.bdms.replication.api import transfer_state
from dpps.bdms.retrieve import did_label
from dpps.catalog.models import DIDRow, RSERow, TransferRow
from dpps.core.authz import Action, Principal
from dpps.core.errors import NotFound
from dpps.oms.api.deps import ArchiveView, Reader, allowed
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import Page, TransferOut

router = APIRouter(prefix="/api/v1/transfers", tags=["transfers"], responses=PROBLEM_RESPONSES)

_dest = aliased(RSERow)
_src = aliased(RSERow)


def _select() -> Any:
    return (
        select(TransferRow, DIDRow, _dest.name, _src.name)
        .join(DIDRow, DIDRow.id == TransferRow.did_id)
        .join(_dest, _dest.id == TransferRow.dest_rse_id)
        .outerjoin(_src, _src.id == TransferRow.source_rse_id)
    )


def _out(t: TransferRow, did: DIDRow, dest: str, src: str | None) -> TransferOut:
    return TransferOut(
        id=t.id,
        did=did_label(did),  # scope:name, with @vN for an earlier version (as the library)
        dest_rse=dest,
        source_rse=src,
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
    stmt = _select()
    if state is not None:
        stmt = stmt.where(TransferRow.state == transfer_state(state).value)
    if rse is not None:
        stmt = stmt.where(_dest.name == rse)
    if rule_id is not None:
        stmt = stmt.where(TransferRow.rule_id == rule_id)
    if errors:
        stmt = stmt.where(TransferRow.error.is_not(None))
    newest = (TransferRow.updated_at.desc(),) if order == "updated" else ()
    with archive.sessions() as session:
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = session.execute(
            stmt.order_by(*newest, TransferRow.id.desc()).limit(limit).offset(offset)
        ).all()
        items = [_out(r[0], r[1], r[2], r[3]) for r in rows]
    return Page[TransferOut](items=items, total=int(total), limit=limit, offset=offset)


TransferId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _one(archive: ArchiveView, transfer_id: int) -> TransferOut:
    with archive.sessions() as session:
        row = session.execute(_select().where(TransferRow.id == transfer_id)).one_or_none()
        if row is None:
            raise NotFound(f"no such transfer {transfer_id}")
        return _out(row[0], row[1], row[2], row[3])


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
