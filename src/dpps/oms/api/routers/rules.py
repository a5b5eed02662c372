"""Replication rules: list and inspect them, add rules and apply named policies.

Rules on raw data (a DL0 file, or a collection holding one) need the ``rule.write.dl0``
action (archive managers); other rules ``rule.write``; both only in the account's scopes.
``PATCH /rules/{id}`` changes priority, lifetime, comment or suspends/resumes a rule, with
the same rights as adding it (``dpps.bdms.replication.interventions.update_rule``); ``DELETE
/rules/{id}?reason=`` removes it, with the same rights, the way ``dpps rule delete`` does.
``GET /rules/{id}/details`` answers ``archive.replication.get_rule`` itself (what ``dpps rule
show`` prints), and rules carry their lock counts, so the remote CLI shows what the local one does.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status

from dpps.bdms.listings import RuleFilter
from dpps.bdms.records import RuleChange
from dpps.bdms.types import PageRequest, RuleDetails, RuleInfo
from dpps.core.states import RuleState
from dpps.oms.api.deps import ArchiveView, CurrentPrincipal, Reader
from dpps.oms.api.guards import require_rule_write
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import Page, PolicyIn, RuleIdsOut, RuleIn, RuleOut, RuleUpdateIn

router = APIRouter(prefix="/api/v1/rules", tags=["rules"], responses=PROBLEM_RESPONSES)


def rule_out(rule: RuleInfo) -> RuleOut:
    """The library's rule as the REST schema names it (``rse_expression``, ...)."""
    return RuleOut(
        id=rule.id,
        did=rule.did,  # scope:name, with @vN for an earlier version (as the library)
        account=rule.account,
        rse_expression=rule.rses,
        source_expression=rule.source,
        copies=rule.copies,
        state=rule.state,
        error=rule.error,
        priority=rule.priority,
        activity=rule.activity,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        expires_at=rule.expires_at,
        policy=rule.policy,
        comment=rule.comment,
        locked=rule.locked,
        did_type=rule.did_type,
        next_evaluation_at=rule.next_evaluation_at,
        locks=dict(rule.locks),
    )


@router.get("", response_model=Page[RuleOut], summary="Rules, newest first")
def list_rules(
    archive: ArchiveView,
    _who: Reader,
    state: RuleState | None = None,
    account: Annotated[str | None, Query(max_length=64)] = None,
    did: Annotated[str | None, Query(max_length=1100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    order: Annotated[
        Literal["newest", "oldest"], Query(description="oldest: by id, as 'dpps rule list'")
    ] = "newest",
) -> Page[RuleOut]:
    where = RuleFilter(
        state=state.value if state is not None else None,
        account=account,
        did=archive.did(did) if did is not None else None,
    )
    page = archive.replication.rules_page(where, PageRequest(offset, limit), order=order)
    return Page[RuleOut](
        items=[rule_out(r) for r in page.items], total=page.total, limit=limit, offset=offset
    )


RuleId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _one(archive: ArchiveView, rule_id: int) -> RuleOut:
    return rule_out(archive.replication.rule(rule_id))


@router.get("/{rule_id}", response_model=RuleOut, summary="One rule")
def get_rule(rule_id: RuleId, archive: ArchiveView, _who: Reader) -> RuleOut:
    return _one(archive, rule_id)


@router.get(
    "/{rule_id}/details",
    response_model=RuleDetails,
    summary="One rule as 'dpps rule show' shows it: selected RSEs, files, transfers, problems",
)
def get_rule_details(
    rule_id: RuleId,
    archive: ArchiveView,
    _who: Reader,
    problems: Annotated[int, Query(ge=0, le=1000, description="Failed transfers listed")] = 10,
) -> RuleDetails:
    """The library's own answer, so the remote CLI prints exactly what the local one does."""
    return archive.replication.get_rule(rule_id, problems=problems)


@router.patch("/{rule_id}", response_model=RuleOut, summary="Change or suspend/resume a rule")
def patch_rule(
    rule_id: RuleId, body: RuleUpdateIn, archive: ArchiveView, who: CurrentPrincipal
) -> RuleOut:
    require_rule_write(archive, who, _one(archive, rule_id).did)
    change = RuleChange(
        priority=body.priority,
        lifetime=dt.timedelta(days=body.lifetime_days) if body.lifetime_days else None,
        clear_lifetime=body.clear_lifetime,
        suspended=body.suspended,
        comment=body.comment,
        locked=body.locked,
    )
    archive.replication.update_rule(rule_id, change)
    return _one(archive, rule_id)


@router.delete("/{rule_id}", response_model=RuleOut, summary="Delete a rule (dpps rule delete)")
def delete_rule(
    rule_id: RuleId,
    archive: ArchiveView,
    who: CurrentPrincipal,
    reason: Annotated[str, Query(min_length=1, max_length=2000, description="Why (recorded)")],
) -> RuleOut:
    """The rights of adding it; the removal is ``deletion.remove_rule``, as for the CLI."""
    before = _one(archive, rule_id)
    require_rule_write(archive, who, before.did)
    archive.replication.delete_rule(rule_id, reason=reason)
    return before


@router.post(
    "",
    response_model=RuleIdsOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a replication rule",
)
def add_rule(body: RuleIn, archive: ArchiveView, who: CurrentPrincipal) -> RuleIdsOut:
    """One rule per DID, all or none; a duplicate of the account's rule is a 409 unless
    ``skip_duplicate`` (then its id is among the answer's)."""
    dids = body.all_dids()
    for did in dids:
        require_rule_write(archive, who, did)
    lifetime = dt.timedelta(days=body.lifetime_days) if body.lifetime_days else None
    ids = archive.add_rules(
        dids,
        copies=body.copies,
        rses=body.rses,
        source=body.source,
        lifetime=lifetime,
        priority=body.priority,
        activity=body.activity,
        comment=body.comment,
        locked=body.locked,
        skip_duplicate=body.skip_duplicate,
    )
    return RuleIdsOut(ids=ids)


@router.post(
    "/policy",
    response_model=RuleIdsOut,
    status_code=status.HTTP_201_CREATED,
    summary="Give a DID the rules of a named replication policy",
)
def apply_policy(body: PolicyIn, archive: ArchiveView, who: CurrentPrincipal) -> RuleIdsOut:
    require_rule_write(archive, who, body.did)
    return RuleIdsOut(ids=archive.apply_policy(body.did, body.policy))
