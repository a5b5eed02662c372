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
from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.records import StageInfo, StageState
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


# -- the daemon ------------------------------------------------------------------------------


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
    buffer = buffer_storage(config)
    with factory() as session:
        rse_ids = {row.name: row.id for row in session.scalars(select(RSERow))}
    done = 0
    for rse_name, rse_cfg in sorted(config.rses.items()):
        if rse_cfg.kind != RSEKind.TAPE or rse_name not in rse_ids or ctx.stopping:
            continue
        due = utcnow() - dt.timedelta(seconds=rse_cfg.staging_delay_s)
        where = [
            StageRequestRow.state == StageState.QUEUED.value,
            StageRequestRow.requested_at <= due,
            StageRequestRow.rse_id == rse_ids[rse_name],
        ]
        claimed = _claim(ctx, factory, config, where, only_ids, batch)
        tape = StorageElement.from_config(rse_name, config)
        for req_id in claimed:
            if ctx.stopping:
                break
            _stage_one(ctx, factory, tape, buffer, req_id, config)
            done += 1
    if not ctx.stopping:
        where = [
            StageRequestRow.state == StageState.READY.value,
            StageRequestRow.expires_at < utcnow(),
        ]
        for req_id in _claim(ctx, factory, config, where, only_ids, batch * 10):
            _expire_one(ctx, factory, buffer, req_id)
            done += 1
    return done


def _claim(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    where: list[ColumnElement[bool]],
    only_ids: Sequence[int] | None,
    limit: int,
) -> list[int]:
    conditions = list(where)
    if only_ids is not None:
        conditions.append(StageRequestRow.id.in_(list(only_ids)))
    with transaction(factory) as session:
        rows = leases.claim(
            session,
            StageRequestRow,
            owner=ctx.instance,
            lease_s=config.staging.lease_s,
            where=conditions,
            order_by=[StageRequestRow.requested_at, StageRequestRow.id],
            limit=limit,
        )
        return [row.id for row in rows]


def _stage_one(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    tape: StorageElement,
    buffer: StorageElement,
    req_id: int,
    config: Config,
) -> None:
    with factory() as session:
        req = session.get(StageRequestRow, req_id)
        if req is None or req.state != StageState.QUEUED or req.lease_owner != ctx.instance:
            return
        did = session.get(DIDRow, req.did_id)
        rep = session.scalars(
            select(ReplicaRow).where(
                ReplicaRow.did_id == req.did_id, ReplicaRow.rse_id == req.rse_id
            )
        ).one_or_none()
        assert did is not None
        expected = {"adler32": did.adler32 or ""} | ({"blake3": did.blake3} if did.blake3 else {})
    if rep is None or rep.state != ReplicaState.AVAILABLE:
        _finish(factory, ctx, req_id, StageState.FAILED, error="the tape replica is gone")
        return
    target = f"{tape.name}/{req_id}/{rep.path}"
    try:
        try:
            buffer.copy_from(tape, rep.path, target, tuple(expected), expected=expected)
        except Conflict:
            # A stager died between publishing and committing: keep the copy if it is good.
            if buffer.checksum(target, tuple(expected))[1] != expected:
                buffer.remove(target)
                raise
    except Unavailable as exc:
        _release_for_retry(ctx, factory, req_id, str(exc))
        return
    except (IntegrityFailure, NotFound) as exc:
        if isinstance(exc, NotFound) and not tape.root_exists():
            _release_for_retry(ctx, factory, req_id, f"RSE {tape.name} is not mounted")
            return
        reason = "missing" if isinstance(exc, NotFound) else "checksum mismatch"
        _finish(factory, ctx, req_id, StageState.FAILED, error=str(exc), bad_replica=reason)
        return
    except DppsError as exc:
        _finish(factory, ctx, req_id, StageState.FAILED, error=str(exc))
        return
    _finish(factory, ctx, req_id, StageState.READY, buffer_path=target, config=config)


def _release_for_retry(
    ctx: DaemonContext, factory: sessionmaker[Session], req_id: int, error: str
) -> None:
    """Storage trouble is no verdict on the replica: leave the request QUEUED for later."""
    ctx.errors["Unavailable"] += 1
    log.warning("stage request %s: %s (will retry)", req_id, error)
    with transaction(factory) as session:
        session.execute(
            update(StageRequestRow)
            .where(StageRequestRow.id == req_id, StageRequestRow.lease_owner == ctx.instance)
            .values(lease_owner=None, lease_expires_at=None, error=error)
        )


def _finish(
    factory: sessionmaker[Session],
    ctx: DaemonContext,
    req_id: int,
    state: StageState,
    *,
    error: str | None = None,
    buffer_path: str | None = None,
    config: Config | None = None,
    bad_replica: str | None = None,
) -> None:
    now = utcnow()
    with transaction(factory) as session:
        req = session.get(StageRequestRow, req_id)
        if req is None or req.lease_owner != ctx.instance:
            return  # our lease ran out and another stager took over
        req.state = state.value
        req.error = error
        req.lease_owner = None
        req.lease_expires_at = None
        details: dict[str, object] = {"request_id": req_id}
        if state == StageState.READY:
            assert config is not None
            req.buffer_path = buffer_path
            req.ready_at = now
            req.expires_at = now + dt.timedelta(seconds=config.staging.buffer_lifetime_s)
            details["buffer_path"] = buffer_path
        if bad_replica is not None:
            replica_states.declare_bad(
                session,
                [
                    replica_states.Damaged(
                        req.did_id,
                        req.rse_id,
                        f"staging found the tape replica {bad_replica}: {error}",
                    )
                ],
                account=ctx.name,
                lost_reason="no AVAILABLE replica left after staging found the tape copy damaged",
                now=now,
            )
        events.record(
            session,
            account=ctx.name,
            action="stage.ready" if state == StageState.READY else "stage.fail",
            did_id=req.did_id,
            rse_id=req.rse_id,
            reason=error,
            details=details,
        )


def _expire_one(
    ctx: DaemonContext, factory: sessionmaker[Session], buffer: StorageElement, req_id: int
) -> None:
    with factory() as session:
        req = session.get(StageRequestRow, req_id)
        if req is None or req.state != StageState.READY or req.lease_owner != ctx.instance:
            return
        path = req.buffer_path
    if path:
        try:
            buffer.remove(path)
            _prune_dirs(buffer, path)
        except Unavailable as exc:
            ctx.errors["Unavailable"] += 1
            log.warning("stage request %s: cannot remove buffer copy: %s", req_id, exc)
            return  # the lease runs out and the next pass tries again
    with transaction(factory) as session:
        req = session.get(StageRequestRow, req_id)
        if req is None or req.lease_owner != ctx.instance or req.state != StageState.READY:
            return
        if req.expires_at is not None and req.expires_at > utcnow():
            # Touched by a reader after we claimed it: the copy is wanted again. It is gone
            # now, so the request fails and the reader asks anew.
            req.error = "buffer copy expired while being touched; request staging again"
        req.state = StageState.EXPIRED.value
        req.lease_owner = None
        req.lease_expires_at = None
        events.record(
            session,
            account=ctx.name,
            action="stage.expire",
            did_id=req.did_id,
            rse_id=req.rse_id,
            details={"request_id": req_id, "buffer_path": path},
        )


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
        self.catalog = catalog
        # A site's process (--site/--rses) stages from only its own RSEs: the others are
        # not in the configuration it works from.
        self.config = served(catalog.config, catalog.rses)

    def run_once(self, ctx: DaemonContext) -> int:
        return one_pass(ctx, self.catalog.sessions, self.config)
