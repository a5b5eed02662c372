"""Site agents: a data center's transfer agent reaching the catalog through the API.

An off-site center's agent copies into its own storage and needs the catalog only to learn
what to copy and to say what happened. Over PostgreSQL across a long-haul link each statement
of a claim or of an outcome batch is a round trip (150 ms and more); here a claimed batch
costs one request and its outcomes one more, whatever their size: the server runs the same
``CatalogLedger`` transactions a local agent runs, next to the catalog. Rules whose copies
completed are settled in the same request, so the agent never asks for that separately.
Only ``site-agent`` (and ``admin``) accounts may call these.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dpps.bdms.transfer.ledger import CatalogLedger
from dpps.bdms.transfer.records import (
    job_to_wire,
    outcome_from_wire,
    recorded_to_wire,
)
from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.core.authz import Action, Principal
from dpps.core.errors import InvalidInput, NotFound
from dpps.oms.api.deps import ArchiveView, allowed
from dpps.oms.api.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], responses=PROBLEM_RESPONSES)
Agent = Annotated[Principal, allowed(Action.AGENT)]
Instance = Annotated[str, Field(min_length=1, max_length=200)]


class ClaimIn(BaseModel):
    instance: Instance
    limit: int = Field(ge=1, le=10_000)
    rses: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=200)


class ReportIn(BaseModel):
    instance: Instance
    outcomes: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    renew: list[int] = Field(default_factory=list, max_length=100_000)


class BeatIn(BaseModel):
    daemon: Annotated[str, Field(min_length=1, max_length=200)]
    instance: Instance
    details: dict[str, Any] = Field(default_factory=dict)
    forget: bool = False


def _ledger(archive: ArchiveView, rses: list[str] | None) -> CatalogLedger:
    if rses is not None:
        unknown = sorted(set(rses) - set(archive.config.rses))
        if unknown:
            raise NotFound(f"unknown RSE(s) {', '.join(unknown)}: not in the server's topology")
    return CatalogLedger(replace(archive.context, rses=None if rses is None else frozenset(rses)))


@router.post("/transfers/claim", summary="Lease due transfers into the agent's RSEs")
def claim(body: ClaimIn, archive: ArchiveView, _who: Agent) -> dict[str, Any]:
    jobs = _ledger(archive, body.rses).claim(body.instance, body.limit)
    return {"jobs": [job_to_wire(j) for j in jobs]}


@router.post(
    "/transfers/report",
    summary="Record copies' outcomes (settling their rules) and renew running leases",
)
def report(body: ReportIn, archive: ArchiveView, _who: Agent) -> dict[str, Any]:
    try:
        outcomes = [outcome_from_wire(o) for o in body.outcomes]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed transfer outcome: {exc}") from None
    ledger = _ledger(archive, None)
    if body.renew:
        ledger.renew(body.instance, body.renew)
    summary = ledger.record(body.instance, outcomes)
    if summary.rules:
        ledger.settle(summary.rules)
    return recorded_to_wire(replace(summary, rules=set()))


@router.post("/heartbeats", summary="A site process's heartbeat (or its goodbye)")
def heartbeat(body: BeatIn, archive: ArchiveView, _who: Agent) -> dict[str, int]:
    beats = DatabaseHeartbeats(archive.sessions)
    if body.forget:
        beats.forget(body.daemon, body.instance)
        return {"number": 0, "total": 0}
    host, _, rest = body.instance.partition(":")
    pid = rest.partition(":")[0]
    slot = beats.beat(
        body.daemon,
        body.instance,
        body.details,
        hostname=host or None,
        pid=int(pid) if pid.isdigit() else None,
    )
    return {"number": slot.number, "total": slot.total}
