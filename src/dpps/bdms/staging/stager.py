"""Tape staging (UC-110-1.10): bring nearline replicas to a disk buffer, and expire them.

A tape replica cannot be read directly. A reader asks for it with a stage request (QUEUED);
the stager daemon takes the request once the tape RSE's ``staging_delay_s`` has passed (the
emulated mount and seek), copies the tape replica into the disk buffer with its checksums
verified, and marks the request READY until ``staging.buffer_lifetime_s`` later, when it removes
the buffer copy (EXPIRED). Requests are claimed with a lease, so any number of stagers can run
and any can be killed: an unfinished request is taken again once its lease ran out.

A request for a file that is already staged or queued joins the open request instead of making
another, and touching a READY copy extends its life, so a busy file stays in the buffer.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.records import StageInfo, StageState
from dpps.bdms.staging.records import (
    FAILED,
    READY,
    RETRY,
    Expiry,
    StageJob,
    StageLedger,
    StageOutcome,
)
from dpps.bdms.states import replicas as replica_states
from dpps.catalog import events, leases
from dpps.catalog.context import CatalogContext, served
from dpps.catalog.engine import transaction
from dpps.catalog.models import (
    DIDRow,
    HeartbeatRow,
    ReplicaRow,
    RSERow,
    StageRequestRow,
    utcnow,
)
from dpps.catalog.replicas import replicas_of
from dpps.core.config import Config
from dpps.core.daemon import Daemon, DaemonContext
from dpps.core.errors import Conflict, DppsError, IntegrityFailure, NotFound, Unavailable
from dpps.core.states import ReplicaState, RSEKind
from dpps.storage.rse import StorageElement

log = logging.getLogger("dpps.stager")

DAEMON = "stager"
BUFFER_NAME = "staging-buffer"


def buffer_storage(config: Config) -> StorageElement:
    """The disk buffer: a configured RSE by name, else a directory or URL of its own."""
    buffer = config.staging.buffer
    if buffer in config.rses:
        if config.rses[buffer].kind != RSEKind.DISK:
            raise NotFound(f"staging buffer {buffer!r} must be a disk RSE, not tape")
        return StorageElement.from_config(buffer, config)
    if "://" in buffer or Path(buffer).is_absolute():
        return StorageElement(BUFFER_NAME, buffer, owns_root=True)
    return StorageElement(BUFFER_NAME, str(config.workspace / buffer), owns_root=True)


def _delay(config: Config, rse_name: str) -> float:
    cfg = config.rses.get(rse_name)
    return cfg.staging_delay_s if cfg is not None else 0.0


def _tape_replicas(
    session: Session, config: Config, did_id: int
) -> list[tuple[ReplicaRow, RSERow]]:
    """AVAILABLE replicas on reachable tape RSEs, quickest staging first."""
    pairs = [
        (rep, rse)
        for rep, rse in replicas_of(session, did_id)
        if rep.state == ReplicaState.AVAILABLE
        and rse.kind == RSEKind.TAPE.value
        and rse.available
        and rse.name in config.rses
    ]
    return sorted(pairs, key=lambda p: (_delay(config, p[1].name), p[1].name))


def request_stage(
    session: Session, config: Config, did: DIDRow, *, account: str
) -> StageRequestRow:
    """The open request for ``did`` (a READY one is touched to live longer), else a new one.

    Unavailable when the file has no AVAILABLE tape replica to stage from.
    """
    now = utcnow()
    open_rows = session.scalars(
        select(StageRequestRow)
        .where(
            StageRequestRow.did_id == did.id,
            StageRequestRow.state.in_([StageState.QUEUED.value, StageState.READY.value]),
        )
        .order_by(StageRequestRow.state.desc(), StageRequestRow.id)  # READY first
    ).all()
    lifetime = dt.timedelta(seconds=config.staging.buffer_lifetime_s)
    for row in open_rows:
        if row.state == StageState.QUEUED:
            return row
        if row.expires_at is None or row.expires_at <= now:
            continue  # due for expiry: the stager removes it
        # A READY copy being expired right now (leased) is not reused; the conditional update
        # makes the touch and a stager's claim exclusive.
        touched = session.execute(
            update(StageRequestRow)
            .where(
                StageRequestRow.id == row.id,
                StageRequestRow.state == StageState.READY.value,
                or_(
                    StageRequestRow.lease_expires_at.is_(None),
                    StageRequestRow.lease_expires_at < now,
                ),
            )
            .values(expires_at=max(row.expires_at, now + lifetime))
        )
        if getattr(touched, "rowcount", 0):
            session.refresh(row)
            return row
    tapes = _tape_replicas(session, config, did.id)
    if not tapes:
        raise Unavailable(f"{did.scope}:{did.name} has no AVAILABLE tape replica to stage")
    rep, rse = tapes[0]
    row = StageRequestRow(
        did_id=did.id,
        rse_id=rse.id,
        state=StageState.QUEUED.value,
        account=account,
        requested_at=now,
    )
    session.add(row)
    session.flush()
    events.record(
        session,
        account=account,
        action="stage.request",
        did_id=did.id,
        rse_id=rse.id,
        details={"request_id": row.id, "path": rep.path},
    )
    return row


def stage_info(session: Session, config: Config, row: StageRequestRow) -> StageInfo:
    did = session.get(DIDRow, row.did_id)
    rse = session.get(RSERow, row.rse_id)
    rse_name = rse.name if rse is not None else "?"
    eta: float | None = None
    if row.state == StageState.READY:
        eta = 0.0
    elif row.state == StageState.QUEUED:
        due = row.requested_at + dt.timedelta(seconds=_delay(config, rse_name))
        eta = max(0.0, (due - utcnow()).total_seconds())
    return StageInfo(
        id=row.id,
        did=f"{did.scope}:{did.name}" if did is not None else str(row.did_id),
        rse=rse_name,
        state=row.state,
        requested_at=row.requested_at,
        ready_at=row.ready_at,
        expires_at=row.expires_at,
        buffer_path=row.buffer_path,
        error=row.error,
        eta_seconds=eta,
    )


def requests_by_id(session: Session, ids: Iterable[int]) -> dict[int, StageRequestRow]:
    wanted = list(ids)
    if not wanted:
        return {}
    rows = session.scalars(select(StageRequestRow).where(StageRequestRow.id.in_(wanted)))
    return {row.id: row for row in rows}


def stager_alive(session: Session, expire_s: float = 60.0) -> bool:
    """True when a stager daemon has beaten recently (else a waiting client stages itself)."""
    cutoff = utcnow() - dt.timedelta(seconds=expire_s)
    return (
        session.scalar(
            select(HeartbeatRow.id)
            .where(HeartbeatRow.daemon == DAEMON, HeartbeatRow.last_seen >= cutoff)
            .limit(1)
        )
        is not None
    )


# -- the catalog's side of a pass -------------------------------------------------------------


class CatalogStageLedger:
    """``StageLedger`` on the catalog's database: what a stager on the catalog's host uses,
    and what the server runs for a site's stager (``/api/v1/agents/stager``). ``only_ids``
    limits the work to those requests (a client waiting for its own files); ``account``
    signs the events (a site stager's account on the server)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        config: Config,
        only_ids: Sequence[int] | None = None,
        *,
        account: str = DAEMON,
    ) -> None:
        self.factory = factory
        self.config = config
        self.only_ids = None if only_ids is None else list(only_ids)
        self.account = account

    def claim(
        self, owner: str, tapes: Sequence[str], limit: int
    ) -> tuple[list[StageJob], list[Expiry]]:
        """Lease the due requests of each of ``tapes`` (``limit`` per RSE) and the expired
        buffer copies staged from them (ten times as many: removing one is cheap)."""
        with self.factory() as session:
            rse_ids = {row.name: row.id for row in session.scalars(select(RSERow))}
        jobs: list[StageJob] = []
        for name in sorted(set(tapes)):
            rse_cfg = self.config.rses.get(name)
            if rse_cfg is None or rse_cfg.kind != RSEKind.TAPE or name not in rse_ids:
                continue
            due = utcnow() - dt.timedelta(seconds=rse_cfg.staging_delay_s)
            where = [
                StageRequestRow.state == StageState.QUEUED.value,
                StageRequestRow.requested_at <= due,
                StageRequestRow.rse_id == rse_ids[name],
            ]
            for req_id in self._claim(owner, where, limit):
                job = self._job(owner, req_id, name)
                if job is not None:
                    jobs.append(job)
        served_ids = [rse_ids[n] for n in tapes if n in rse_ids]
        where = [
            StageRequestRow.state == StageState.READY.value,
            StageRequestRow.expires_at < utcnow(),
            StageRequestRow.rse_id.in_(served_ids),
        ]
        expiries = []
        for req_id in self._claim(owner, where, limit * 10):
            with self.factory() as session:
                req = session.get(StageRequestRow, req_id)
                if req is not None:
                    expiries.append(Expiry(req_id, req.buffer_path))
        return jobs, expiries

    def report(self, owner: str, outcomes: Sequence[StageOutcome], expired: Sequence[int]) -> None:
        """Record each outcome and expiry, each in its own transaction, and only for a request
        ``owner`` still holds (else its lease ran out and another stager took over)."""
        for outcome in outcomes:
            if outcome.state == RETRY:
                self._release(owner, outcome.request_id, outcome.error or "")
            else:
                self._finish(owner, outcome)
        for req_id in expired:
            self._expired(owner, req_id)

    def _claim(self, owner: str, where: list[ColumnElement[bool]], limit: int) -> list[int]:
        conditions = list(where)
        if self.only_ids is not None:
            conditions.append(StageRequestRow.id.in_(self.only_ids))
        with transaction(self.factory) as session:
            rows = leases.claim(
                session,
                StageRequestRow,
                owner=owner,
                lease_s=self.config.staging.lease_s,
                where=conditions,
                order_by=[StageRequestRow.requested_at, StageRequestRow.id],
                limit=limit,
            )
            return [row.id for row in rows]

    def _job(self, owner: str, req_id: int, tape: str) -> StageJob | None:
        with self.factory() as session:
            req = session.get(StageRequestRow, req_id)
            if req is None or req.state != StageState.QUEUED or req.lease_owner != owner:
                return None
            did = session.get(DIDRow, req.did_id)
            rep = session.scalars(
                select(ReplicaRow).where(
                    ReplicaRow.did_id == req.did_id, ReplicaRow.rse_id == req.rse_id
                )
            ).one_or_none()
            assert did is not None
            expected = {"adler32": did.adler32 or ""}
            if did.blake3:
                expected["blake3"] = did.blake3
        gone = rep is None or rep.state != ReplicaState.AVAILABLE
        return StageJob(req_id, tape, "" if gone or rep is None else rep.path, expected)

    def _release(self, owner: str, req_id: int, error: str) -> None:
        """Storage trouble is no verdict on the replica: leave the request QUEUED for later."""
        with transaction(self.factory) as session:
            session.execute(
                update(StageRequestRow)
                .where(StageRequestRow.id == req_id, StageRequestRow.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None, error=error)
            )

    def _finish(self, owner: str, outcome: StageOutcome) -> None:
        now = utcnow()
        with transaction(self.factory) as session:
            req = session.get(StageRequestRow, outcome.request_id)
            if req is None or req.lease_owner != owner or req.state != StageState.QUEUED:
                return
            ready = outcome.state == READY
            req.state = StageState.READY.value if ready else StageState.FAILED.value
            req.error = outcome.error
            req.lease_owner = None
            req.lease_expires_at = None
            details: dict[str, object] = {"request_id": req.id}
            if ready:
                req.buffer_path = outcome.buffer_path
                req.ready_at = now
                lifetime = dt.timedelta(seconds=self.config.staging.buffer_lifetime_s)
                req.expires_at = now + lifetime
                details["buffer_path"] = outcome.buffer_path
            elif outcome.bad_replica is not None:
                replica_states.declare_bad(
                    session,
                    [
                        replica_states.Damaged(
                            req.did_id,
                            req.rse_id,
                            f"staging found the tape replica {outcome.bad_replica}: "
                            f"{outcome.error}",
                        )
                    ],
                    account=self.account,
                    lost_reason="no AVAILABLE replica left after staging found the tape copy "
                    "damaged",
                    now=now,
                )
            events.record(
                session,
                account=self.account,
                action="stage.ready" if ready else "stage.fail",
                did_id=req.did_id,
                rse_id=req.rse_id,
                reason=outcome.error,
                details=details,
            )

    def _expired(self, owner: str, req_id: int) -> None:
        with transaction(self.factory) as session:
            req = session.get(StageRequestRow, req_id)
            if req is None or req.lease_owner != owner or req.state != StageState.READY:
                return
            if req.expires_at is not None and req.expires_at > utcnow():
                # Touched by a reader after we claimed it: the copy is wanted again. It is
                # gone now, so the request fails and the reader asks anew.
                req.error = "buffer copy expired while being touched; request staging again"
            req.state = StageState.EXPIRED.value
            req.lease_owner = None
            req.lease_expires_at = None
            events.record(
                session,
                account=self.account,
                action="stage.expire",
                did_id=req.did_id,
                rse_id=req.rse_id,
                details={"request_id": req_id, "buffer_path": req.buffer_path},
            )


# -- the stager's side: tape to buffer ---------------------------------------------------------

#: A pass reports its finished copies at the latest this often (and at its end), so a slow
#: tape does not keep the first READY copies of a batch from their readers.
REPORT_EVERY_S = 5.0


def one_pass(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    *,
    only_ids: Sequence[int] | None = None,
    batch: int = 20,
) -> int:
    """Complete due stage requests, then expire old buffer copies; returns requests handled.

    ``only_ids`` limits the work to those requests (a client waiting for its own files: it
    runs this pass itself when no stager daemon is alive); the ``Stager`` daemon runs it whole.
    """
    ledger = CatalogStageLedger(factory, config, only_ids)
    return run_pass(ctx, ledger, config, batch=batch)


def run_pass(ctx: DaemonContext, ledger: StageLedger, config: Config, *, batch: int = 20) -> int:
    """One pass over the tape RSEs of ``config`` (a site's own, for a site's stager): claim,
    copy each due file from tape into the buffer (checksums verified), remove the expired
    buffer copies, report. Over the API: one claim and one report per pass of quick copies."""
    tapes = sorted(n for n, r in config.rses.items() if r.kind == RSEKind.TAPE)
    if not tapes:
        return 0
    buffer = buffer_storage(config)
    jobs, expiries = ledger.claim(ctx.instance, tapes, batch)
    storages: dict[str, StorageElement] = {}
    outcomes: list[StageOutcome] = []
    last = time.monotonic()
    done = 0
    for job in jobs:
        if ctx.stopping:
            break
        if job.tape not in storages:
            storages[job.tape] = StorageElement.from_config(job.tape, config)
        outcomes.append(_stage_one(ctx, storages[job.tape], buffer, job))
        done += 1
        if time.monotonic() - last >= REPORT_EVERY_S:
            ledger.report(ctx.instance, outcomes, [])
            outcomes, last = [], time.monotonic()
    expired = []
    for expiry in expiries:
        if ctx.stopping:
            break
        done += 1
        if _remove(ctx, buffer, expiry):
            expired.append(expiry.request_id)
    if outcomes or expired:
        ledger.report(ctx.instance, outcomes, expired)
    return done


def _stage_one(
    ctx: DaemonContext, tape: StorageElement, buffer: StorageElement, job: StageJob
) -> StageOutcome:
    if not job.path:
        return StageOutcome(job.request_id, FAILED, error="the tape replica is gone")
    target = f"{tape.name}/{job.request_id}/{job.path}"
    expected = job.expected
    try:
        try:
            buffer.copy_from(tape, job.path, target, tuple(expected), expected=expected)
        except Conflict:
            # A stager died between publishing and committing: keep the copy if it is good.
            if buffer.checksum(target, tuple(expected))[1] != expected:
                buffer.remove(target)
                raise
    except Unavailable as exc:
        return _retry(ctx, job, str(exc))
    except (IntegrityFailure, NotFound) as exc:
        if isinstance(exc, NotFound) and not tape.root_exists():
            return _retry(ctx, job, f"RSE {tape.name} is not mounted")
        reason = "missing" if isinstance(exc, NotFound) else "checksum mismatch"
        return StageOutcome(job.request_id, FAILED, error=str(exc), bad_replica=reason)
    except DppsError as exc:
        return StageOutcome(job.request_id, FAILED, error=str(exc))
    return StageOutcome(job.request_id, READY, buffer_path=target)


def _retry(ctx: DaemonContext, job: StageJob, error: str) -> StageOutcome:
    ctx.errors["Unavailable"] += 1
    log.warning("stage request %s: %s (will retry)", job.request_id, error)
    return StageOutcome(job.request_id, RETRY, error=error)


def _remove(ctx: DaemonContext, buffer: StorageElement, expiry: Expiry) -> bool:
    """Remove an expired buffer copy; False (the lease runs out, the next pass tries again)
    when the buffer cannot be reached."""
    path = expiry.buffer_path
    if not path:
        return True
    try:
        buffer.remove(path)
        _prune_dirs(buffer, path)
    except Unavailable as exc:
        ctx.errors["Unavailable"] += 1
        log.warning("stage request %s: cannot remove buffer copy: %s", expiry.request_id, exc)
        return False
    return True


def _prune_dirs(buffer: StorageElement, rel: str) -> None:
    """Remove the empty directories a buffer copy leaves (local buffers only)."""
    if not buffer.is_local:
        return
    parts = rel.split("/")[:-1]
    while parts:
        path = buffer.resolve("/".join(parts))
        try:
            Path(path).rmdir()
        except OSError:
            return
        parts.pop()


class Stager(Daemon):
    """Stage requests on the archive's catalog (``dpps daemon stager``)."""

    def __init__(self, catalog: CatalogContext) -> None:
        # A site's process (--site/--rses) stages from only its own RSEs: the others are
        # not in the configuration it works from.
        self.config = served(catalog.config, catalog.rses)
        self.ledger = CatalogStageLedger(catalog.sessions, self.config)

    def run_once(self, ctx: DaemonContext) -> int:
        return run_pass(ctx, self.ledger, self.config)


class SiteStager(Daemon):
    """A site's stager reaching the catalog through ``ledger`` (the central API): it copies
    from its own tape RSEs into its own buffer."""

    def __init__(self, config: Config, ledger: StageLedger, rses: frozenset[str]) -> None:
        self.config = served(config, rses)
        self.ledger = ledger

    def run_once(self, ctx: DaemonContext) -> int:
        return run_pass(ctx, self.ledger, self.config)
