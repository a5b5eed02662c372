"""Site agents: a data center's processes reaching the catalog through the API.

An off-site center's transfer agent copies into its own storage and needs the catalog only to
learn what to copy and to say what happened; a telescope site's ingestion queue inspects its
landing area and needs the catalog only to register what it found. Over PostgreSQL across a
long-haul link each statement is a round trip (150 ms and more); here a claimed batch costs
one request and its outcomes one more, and a batch of new files one, whatever their size: the
server runs the same transactions (``CatalogLedger``, ``register_batch``) a local process
runs, next to the catalog. Rules whose copies completed are settled in the same request.
Only ``site-agent`` (and ``admin``) accounts may call these; a queue registers files only in
the scopes its account may write, under the account's name.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dpps.bdms.ingestion.ledger import register_batch
from dpps.bdms.ingestion.records import batch_from_wire, result_to_wire
from dpps.bdms.preservation import auditor, deletion, reaper
from dpps.bdms.preservation.records import doomed_from_wire, doomed_to_wire, target_to_wire
from dpps.bdms.staging import records as staging
from dpps.bdms.staging.stager import CatalogStageLedger
from dpps.bdms.transfer.ledger import CatalogLedger
from dpps.bdms.transfer.records import (
    job_to_wire,
    outcome_from_wire,
    recorded_to_wire,
)
from dpps.catalog.dids import latest_by_name
from dpps.catalog.engine import write
from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.core.authz import Action, Principal, require
from dpps.core.daemon import DaemonContext, WorkerSlot
from dpps.core.errors import InvalidInput, NotFound
from dpps.core.identifiers import MAX_ACTIVITY_ID, validate_lfn, validate_scope
from dpps.oms.api.deps import ArchiveView, allowed
from dpps.oms.api.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], responses=PROBLEM_RESPONSES)
Agent = Annotated[Principal, allowed(Action.AGENT)]
#: Ids and counts as the catalog stores them (INTEGER / BIGINT): anything larger is refused
#: here, not by the database in the middle of a transaction.
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
#: Ids of transfers and stage requests, 64-bit (migration 0008).
ActivityId = Annotated[int, Field(ge=1, le=MAX_ACTIVITY_ID)]
#: The integer fields of records that hold such an id, or a byte count.
WIDE_FIELDS = frozenset({"bytes", "transfer_id", "request_id"})
Instance = Annotated[str, Field(min_length=1, max_length=128)]


class ClaimIn(BaseModel):
    instance: Instance
    limit: int = Field(ge=1, le=10_000)
    rses: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=200)


class ReportIn(BaseModel):
    instance: Instance
    outcomes: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    renew: list[ActivityId] = Field(default_factory=list, max_length=100_000)


class PresentIn(BaseModel):
    scope: Annotated[str, Field(min_length=1, max_length=64)]
    names: list[Annotated[str, Field(max_length=1024)]] = Field(max_length=10_000)


class RegisterIn(BaseModel):
    batch: dict[str, Any]


class SitePassIn(BaseModel):
    instance: Instance
    rses: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=200)
    slot: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=1)]] = (0, 1)


class PurgedIn(BaseModel):
    removed: list[dict[str, Any]] = Field(max_length=100_000)


class AuditReportIn(BaseModel):
    rses: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=200)
    verified: list[Id] = Field(default_factory=list, max_length=100_000)
    damaged: list[tuple[Id, Annotated[str, Field(max_length=4000)]]] = Field(
        default_factory=list, max_length=100_000
    )


class StageClaimIn(SitePassIn):
    limit: int = Field(default=20, ge=1, le=1_000)


class StageReportIn(BaseModel):
    instance: Instance
    rses: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=200)
    outcomes: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    expired: list[ActivityId] = Field(default_factory=list, max_length=100_000)


class BeatIn(BaseModel):
    daemon: Annotated[str, Field(min_length=1, max_length=64)]
    instance: Instance
    details: dict[str, Any] = Field(default_factory=dict)
    forget: bool = False


def _printable(value: object, where: str) -> None:
    """Refuse a NUL anywhere in a request's strings (keys included): PostgreSQL stores no NUL
    in text, and would fail the whole transaction on it."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"{where}: a string holds a NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            _printable(key, where)
            _printable(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _printable(item, where)


def _in_range(record: object) -> None:
    """Every integer field of a record (a job, a doomed replica) as the catalog can hold it."""
    for name in getattr(record, "__slots__", ()):
        value = getattr(record, name)
        limit = MAX_ACTIVITY_ID if name in WIDE_FIELDS else 2**31 - 1
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= limit:
            raise ValueError(f"{name} {value} is out of range")


def _ledger(archive: ArchiveView, rses: list[str] | None) -> CatalogLedger:
    if rses is not None:
        unknown = sorted(set(rses) - set(archive.config.rses))
        if unknown:
            raise NotFound(f"unknown RSE(s) {', '.join(unknown)}: not in the server's topology")
    return CatalogLedger(replace(archive.context, rses=None if rses is None else frozenset(rses)))


def _site_pass(body: SitePassIn, archive: ArchiveView) -> WorkerSlot:
    """The checks of a site pass's claim (reaper, auditor): a printable instance, known
    RSEs, and this instance's share among its site's (``slot``)."""
    _printable(body.instance, "instance")
    _ledger(archive, body.rses)  # unknown RSEs refused
    number, total = body.slot
    if number >= total:
        raise InvalidInput(f"slot {number} of {total}: the number must be below the total")
    return WorkerSlot(number, total)


@router.post("/transfers/claim", summary="Lease due transfers into the agent's RSEs")
def claim(body: ClaimIn, archive: ArchiveView, _who: Agent) -> dict[str, Any]:
    _printable(body.instance, "instance")
    jobs = _ledger(archive, body.rses).claim(body.instance, body.limit)
    return {"jobs": [job_to_wire(j) for j in jobs]}


@router.post(
    "/transfers/report",
    summary="Record copies' outcomes (settling their rules) and renew running leases",
)
def report(body: ReportIn, archive: ArchiveView, _who: Agent) -> dict[str, Any]:
    _printable(body.model_dump(), "report")
    try:
        outcomes = [outcome_from_wire(o) for o in body.outcomes]
        for o in outcomes:
            _in_range(o.job)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed transfer outcome: {exc}") from None
    ledger = _ledger(archive, None)
    if body.renew:
        ledger.renew(body.instance, body.renew)
    summary = ledger.record(body.instance, outcomes)
    if summary.rules:
        ledger.settle(summary.rules)
    return recorded_to_wire(replace(summary, rules=set()))


@router.post("/ingest/present", summary="Which of these names are registered already")
def present(body: PresentIn, archive: ArchiveView, _who: Agent) -> dict[str, list[str]]:
    scope, names = validate_scope(body.scope), [validate_lfn(n) for n in body.names]
    with archive.sessions() as session:
        return {"names": sorted(latest_by_name(session, scope, names))}


@router.post(
    "/ingest/register",
    summary="Register a batch of files in place on the site's RSE (datasets, rules, events)",
)
def register(body: RegisterIn, archive: ArchiveView, who: Agent) -> dict[str, Any]:
    _printable(body.batch, "batch")
    try:
        batch = batch_from_wire(body.batch)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed ingestion batch: {exc}") from None
    if len(batch.files) > 10_000:
        raise InvalidInput("an ingestion batch holds at most 10,000 files")
    require(who, Action.AGENT, scopes=[batch.scope])
    if batch.rse not in archive.config.rses:
        raise NotFound(f"unknown RSE {batch.rse}: not in the server's topology")
    try:
        results = write(
            archive.sessions,
            lambda s: register_batch(s, archive.config, batch, account=who.name),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed file in the ingestion batch: {exc}") from None
    return {"results": [result_to_wire(r) for r in results]}


@router.post(
    "/reaper/claim",
    summary="The catalog's side of a site reaper's pass: what its RSEs may delete now",
)
def reaper_claim(body: SitePassIn, archive: ArchiveView, who: Agent) -> dict[str, Any]:
    slot = _site_pass(body, archive)
    ctx = DaemonContext(name=who.name, instance=body.instance, slot=slot)
    doomed = reaper.claim(ctx, archive.sessions, archive.config, rses=frozenset(body.rses))
    return {"doomed": [doomed_to_wire(d) for d in doomed]}


@router.post("/reaper/purged", summary="Replicas whose bytes a site's reaper removed")
def reaper_purged(body: PurgedIn, archive: ArchiveView, who: Agent) -> dict[str, int]:
    _printable(body.removed, "removed")
    try:
        removed = [doomed_from_wire(d) for d in body.removed]
        for d in removed:
            _in_range(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed deletion report: {exc}") from None
    return {"forgotten": deletion.forget(archive.sessions, removed, account=who.name)}


@router.post("/auditor/claim", summary="The replicas of a site auditor's RSEs due for re-reading")
def auditor_claim(body: SitePassIn, archive: ArchiveView, _who: Agent) -> dict[str, Any]:
    slot = _site_pass(body, archive)
    with archive.sessions() as session:
        due = auditor.claim(session, archive.config, frozenset(body.rses), slot)
    return {"targets": [target_to_wire(t) for t in due]}


@router.post(
    "/auditor/report",
    summary="A site auditor's outcomes: intact replicas stamped, damaged ones declared BAD",
)
def auditor_report(body: AuditReportIn, archive: ArchiveView, who: Agent) -> dict[str, Any]:
    _printable(body.model_dump(), "report")
    _ledger(archive, body.rses)
    lost = write(
        archive.sessions,
        lambda s: auditor.record_reported(
            s, who.name, frozenset(body.rses), body.verified, body.damaged
        ),
    )
    return {"lost": lost}


def _stage_ledger(archive: ArchiveView, rses: list[str], account: str) -> CatalogStageLedger:
    """The catalog's side of a site stager's pass, on its own tape RSEs only."""
    _ledger(archive, rses)  # unknown RSEs refused
    config = archive.config.model_copy(
        update={"rses": {n: r for n, r in archive.config.rses.items() if n in rses}}
    )
    return CatalogStageLedger(archive.sessions, config, account=account)


@router.post(
    "/stager/claim",
    summary="A site stager's due stage requests and expired buffer copies, on its tape RSEs",
)
def stager_claim(body: StageClaimIn, archive: ArchiveView, who: Agent) -> dict[str, Any]:
    _site_pass(body, archive)
    ledger = _stage_ledger(archive, body.rses, who.name)
    jobs, expiries = ledger.claim(body.instance, body.rses, body.limit)
    return {
        "jobs": [staging.job_to_wire(j) for j in jobs],
        "expiries": [staging.expiry_to_wire(e) for e in expiries],
    }


@router.post(
    "/stager/report",
    summary="A site stager's copies into its buffer and the buffer copies it removed",
)
def stager_report(body: StageReportIn, archive: ArchiveView, who: Agent) -> dict[str, int]:
    _printable(body.model_dump(), "report")
    try:
        outcomes = [staging.outcome_from_wire(o) for o in body.outcomes]
        for o in outcomes:
            _in_range(o)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed staging outcome: {exc}") from None
    # only requests this instance holds are touched (the ledger checks each lease's owner)
    _stage_ledger(archive, body.rses, who.name).report(body.instance, outcomes, body.expired)
    return {"outcomes": len(outcomes), "expired": len(body.expired)}


@router.post("/heartbeats", summary="A site process's heartbeat (or its goodbye)")
def heartbeat(body: BeatIn, archive: ArchiveView, _who: Agent) -> dict[str, int]:
    _printable(body.model_dump(), "heartbeat")
    beats = DatabaseHeartbeats(archive.sessions)
    if body.forget:
        beats.forget(body.daemon, body.instance)
        return {"number": 0, "total": 0}
    host, _, rest = body.instance.partition(":")
    pid = rest.partition(":")[0][:9]
    slot = beats.beat(
        body.daemon,
        body.instance,
        body.details,
        hostname=host or None,
        pid=int(pid) if pid.isdigit() else None,
    )
    return {"number": slot.number, "total": slot.total}
