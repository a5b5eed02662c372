"""Claiming transfers: lease due ones, pick each a source, respect the per-link limits.

Runs in the transfer daemon's main thread, in one short transaction per batch (the caller
commits). A claimed transfer becomes ACTIVE with a lease and a source, and its destination
replica COPYING; the worker threads then copy without touching the catalog, and
``dpps.bdms.transfer.outcomes.record_outcomes`` moves everything on afterwards.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from dpps.bdms.replication import rse_expression
from dpps.bdms.states import replicas as replica_states
from dpps.bdms.states import rules as rule_states
from dpps.bdms.transfer.outcomes import finish
from dpps.bdms.transfer.records import Job
from dpps.catalog import events
from dpps.catalog.leases import dead_owners, lock_free
from dpps.catalog.models import (
    DIDRow,
    ReplicaRow,
    RSERow,
    RuleLockRow,
    RuleRow,
    TransferRow,
    utcnow,
)
from dpps.catalog.sets import among
from dpps.core.config import Config
from dpps.core.errors import DppsError
from dpps.core.states import ReplicaState, RSEKind, TransferState
from dpps.storage.rse import StorageElement

log = logging.getLogger("dpps.transfer")


class SourceSelector:
    """Which replicas a transfer may read, best first: AVAILABLE, on a usable RSE matching the
    rule's source expression, disk before tape, then by the configured retrieval estimate."""

    def __init__(self, config: Config, rses: dict[int, RSERow]) -> None:
        self.config = config
        self.rses = rses
        self.facts = rse_expression.facts_from_config(
            config, {r.name: r.available for r in rses.values()}
        )
        self._matches: dict[str, set[str]] = {}

    def allowed(self, expression: str | None) -> set[str] | None:
        if not expression:
            return None
        if expression not in self._matches:
            self._matches[expression] = set(rse_expression.evaluate(expression, self.facts))
        return self._matches[expression]

    def candidates(
        self, replicas: Sequence[Any], dest_id: int, expression: str | None
    ) -> tuple[list[Any], list[Any]]:
        """(disk sources, tape sources), each best first; ``replicas`` are rows with the
        ReplicaRow columns rse_id, state, bytes and path."""
        allowed = self.allowed(expression)
        usable: list[tuple[float, str, Any, bool]] = []
        for rep in replicas:
            rse = self.rses.get(rep.rse_id)
            if (
                rep.state != ReplicaState.AVAILABLE.value
                or rep.rse_id == dest_id
                or rse is None
                or not rse.available
                or rse.name not in self.config.rses
                or (allowed is not None and rse.name not in allowed)
            ):
                continue
            cfg = self.config.rses[rse.name]
            estimate = cfg.latency_ms / 1000 + rep.bytes / (cfg.bandwidth_mb_s * 1e6)
            usable.append((estimate, rse.name, rep, cfg.kind == RSEKind.TAPE))
        usable.sort(key=lambda u: (u[0], u[1]))
        return [u[2] for u in usable if not u[3]], [u[2] for u in usable if u[3]]


#: What a claim reads of each transfer (plain rows: the ORM costs more than the copies).
_COLUMNS = (
    TransferRow.id,
    TransferRow.did_id,
    TransferRow.dest_rse_id,
    TransferRow.rule_id,
    TransferRow.priority,
    TransferRow.attempts,
    TransferRow.max_attempts,
)


def claim_jobs(
    session: Session,
    config: Config,
    owner: str,
    limit: int,
    account: str,
    *,
    dest_rses: frozenset[str] | None = None,
) -> list[Job]:
    """Lease up to ``limit`` due transfers and turn them into jobs; the caller commits.

    ``dest_rses`` (a site's transfer agent, ``--site``/``--rses``): only transfers into those
    RSEs, so each off-site center pulls what it receives and nothing else.

    Transfers with no usable source wait ``source_wait_s`` (no attempt is spent); transfers
    over their link's concurrency limit are left for later; a transfer whose destination
    already holds an AVAILABLE replica is finished on the spot. Each claimed transfer is
    written once: lease, state and source in one UPDATE.
    """
    cfg = config.transfers
    now = utcnow()
    # Copies whose daemon died (lease expired) first, then due transfers in the order of the
    # (state, next_attempt_at) index: a range scan that stops at ``limit``, where ordering by
    # priority would sort every queued row at every claim. Priority orders the claimed batch.
    # Not by id as well: the index does not hold it, and PostgreSQL then sorted all 200,000
    # rows a big rule queues (60 ms per claim); equal times come in index (insertion) order.
    # A dead daemon's copies are taken back at once, not when their lease runs out: they
    # count against their link's limit while ACTIVE (see dpps.catalog.leases).
    copying = [TransferRow.state == TransferState.ACTIVE.value]
    into = _into(session, dest_rses)
    copying += into
    dead = dead_owners(session, TransferRow, where=copying)
    if dead:
        log.warning("taking back the transfers of dead instance(s) %s", ", ".join(sorted(dead)))
    rows = lock_free(session, _COLUMNS, where=copying, reclaim=dead, limit=limit)
    rows += lock_free(
        session,
        _COLUMNS,
        where=[
            TransferRow.state == TransferState.QUEUED.value,
            TransferRow.next_attempt_at <= now,
            *into,
        ],
        order_by=[TransferRow.next_attempt_at],
        limit=limit - len(rows),
    )
    if not rows:
        return []
    rows.sort(key=lambda r: -r.priority)
    rses = {r.id: r for r in session.scalars(select(RSERow))}
    did_ids = sorted({r.did_id for r in rows})
    dids = {
        d.id: d
        for d in session.execute(
            select(
                DIDRow.id,
                DIDRow.scope,
                DIDRow.name,
                DIDRow.version,
                DIDRow.bytes,
                DIDRow.adler32,
                DIDRow.blake3,
                DIDRow.deleted_at,
            ).where(among(session, DIDRow.id, did_ids))
        )
    }
    replicas: dict[int, list[Any]] = defaultdict(list)
    for rep in session.execute(
        select(
            ReplicaRow.id,
            ReplicaRow.did_id,
            ReplicaRow.rse_id,
            ReplicaRow.state,
            ReplicaRow.path,
            ReplicaRow.bytes,
        ).where(among(session, ReplicaRow.did_id, did_ids))
    ):
        replicas[rep.did_id].append(rep)
    rule_ids = sorted({r.rule_id for r in rows if r.rule_id is not None})
    sources_of = dict(
        session.execute(
            select(RuleRow.id, RuleRow.source_expression).where(RuleRow.id.in_(rule_ids))
        ).all()
    )
    active = _active_links(session, rses, now)
    selector = SourceSelector(config, rses)
    lease_until = now + dt.timedelta(seconds=cfg.lease_s)

    jobs: list[dict[str, Any]] = []  # Job's fields
    leased: list[dict[str, Any]] = []
    postponed: list[dict[str, Any]] = []
    new_replicas: list[dict[str, Any]] = []
    recopied: list[tuple[int, str]] = []
    copying_events: list[dict[str, object]] = []
    finished: set[int] = set()
    unconfigured: list[tuple[int, int, str]] = []

    def end(row: Any, state: TransferState, reason: str | None) -> None:
        transfer = session.get_one(TransferRow, row.id)  # rare: the ORM row is worth it here
        finish(session, transfer, state, now, reason, account)

    def postpone(row: Any, reason: str) -> None:
        postponed.append(_postponed(row.id, now, cfg.source_wait_s, reason))

    for row in rows:
        did, dest = dids.get(row.did_id), rses[row.dest_rse_id]
        if did is None or did.deleted_at is not None:
            end(row, TransferState.CANCELLED, "the file was deleted")
            continue
        if dest.name not in config.rses:
            reason = f"destination RSE {dest.name} is not in this daemon's configuration"
            end(row, TransferState.FAILED, reason)
            unconfigured.append((did.id, dest.id, f"transfer of {did.name} failed: {reason}"))
            continue
        present = next((r for r in replicas[did.id] if r.rse_id == dest.id), None)
        if present is not None and present.state == ReplicaState.AVAILABLE.value:
            end(row, TransferState.DONE, None)
            rule_states.locks_ok(session, [(did.id, dest.id)], now)
            finished.add(did.id)
            continue
        if present is not None and present.state == ReplicaState.BEING_DELETED.value:
            postpone(row, "destination replica being deleted")
            continue
        expression = sources_of.get(row.rule_id) if row.rule_id is not None else None
        try:
            disks, tapes = selector.candidates(replicas[did.id], dest.id, expression)
        except DppsError as exc:
            postpone(row, f"source expression: {exc}")
            continue
        if not disks:
            reason = (
                f"source only on tape ({', '.join(rses[t.rse_id].name for t in tapes)}): "
                "waiting for staging"
                if tapes
                else "waiting for an AVAILABLE source replica"
                + (f" on {expression!r}" if expression else "")
            )
            postpone(row, reason)
            continue
        source = disks[row.attempts % len(disks)]
        link = (rses[source.rse_id].site, dest.site)
        if active[link] >= cfg.max_active_per_link:
            continue  # not leased: free for the next claim
        active[link] += 1
        leased.append(
            {
                "tid": row.id,
                "state": TransferState.ACTIVE.value,
                "source": source.rse_id,
                "owner": owner,
                "until": lease_until,
                "now": now,
            }
        )
        path = StorageElement.path_for(did.scope, did.name, did.version)
        if present is None:
            new_replicas.append(
                {
                    "did_id": did.id,
                    "rse_id": dest.id,
                    "state": ReplicaState.COPYING.value,
                    "path": path,
                    "bytes": int(did.bytes or 0),
                    "lock_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        else:
            recopied.append((present.id, path))
        copying_events.append(
            {
                "account": account,
                "action": "replica.copying",
                "did_id": did.id,
                "rse_id": dest.id,
                "details": {
                    "transfer_id": row.id,
                    "source": rses[source.rse_id].name,
                    "attempt": row.attempts + 1,
                    **({"previous_state": present.state} if present is not None else {}),
                },
            }
        )
        jobs.append(
            dict(
                transfer_id=row.id,
                did_id=did.id,
                label=f"{did.scope}:{did.name}" + (f"@v{did.version}" if did.version > 1 else ""),
                source_rse=rses[source.rse_id].name,
                source_rse_id=source.rse_id,
                source_path=source.path,
                dest_rse=dest.name,
                dest_rse_id=dest.id,
                dest_path=path,
                replica_id=present.id if present is not None else 0,
                expected={"adler32": did.adler32 or ""}
                | ({"blake3": did.blake3} if did.blake3 else {}),
                bytes=int(did.bytes or 0),
                attempts=row.attempts,
                max_attempts=row.max_attempts,
                redo=present is not None,
            )
        )
    _stuck_unconfigured(session, config, unconfigured, now, account)
    session.flush()
    transfers, replica_table = _table(TransferRow), _table(ReplicaRow)
    if leased:
        session.execute(
            update(transfers)
            .where(transfers.c.id == bindparam("tid"))
            .values(
                state=bindparam("state"),
                source_rse_id=bindparam("source"),
                lease_owner=bindparam("owner"),
                lease_expires_at=bindparam("until"),
                updated_at=bindparam("now"),
            ),
            leased,
        )
    if postponed:
        session.execute(
            update(transfers)
            .where(transfers.c.id == bindparam("tid"))
            .values(
                state=TransferState.QUEUED.value,
                next_attempt_at=bindparam("at"),
                lease_owner=None,
                lease_expires_at=None,
                source_rse_id=None,
                error=bindparam("reason"),
                updated_at=bindparam("now"),
            ),
            postponed,
        )
    replica_states.copying(session, recopied, now=now)
    if new_replicas:
        # Counted from rule_locks in this transaction, as refresh_lock_counts would, without
        # writing every new row a second time.
        locks = _lock_counts(session, [v["did_id"] for v in new_replicas])
        for v in new_replicas:
            v["lock_count"] = locks[(v["did_id"], v["rse_id"])]
        ids = session.scalars(
            insert(replica_table).returning(replica_table.c.id, sort_by_parameter_order=True),
            new_replicas,
        ).all()
        new_ids = iter(ids)
        for job in jobs:  # in claim order, as new_replicas
            if job["replica_id"] == 0:
                job["replica_id"] = next(new_ids)
    events.record_many(session, copying_events)
    if finished:
        rule_states.settle_files(session, finished, account=account, now=now)
    # Made once their replica ids are known (dataclasses.replace of each cost as much again)
    return [Job(**job) for job in jobs]


def _into(session: Session, dest_rses: frozenset[str] | None) -> list[ColumnElement[bool]]:
    """The claim's condition on the destination: ids, not a join, so the planner keeps to
    the (state, next_attempt_at) range scan and filters on the row it reads."""
    if dest_rses is None:
        return []
    ids = sorted(session.scalars(select(RSERow.id).where(RSERow.name.in_(sorted(dest_rses)))))
    return [TransferRow.dest_rse_id.in_(ids)]


def _stuck_unconfigured(
    session: Session,
    config: Config,
    failed: Sequence[tuple[int, int, str]],
    now: dt.datetime,
    account: str,
) -> None:
    """Rules wanting copies on an RSE this daemon's configuration lacks go STUCK with the
    reason, and are evaluated again as soon as a transfer waiting for a source would be: an
    empty or truncated dpps.yaml must show on the rules, and the rules must carry on shortly
    after the file is put right (not at the next hourly re-check)."""
    retry_at = now + dt.timedelta(seconds=config.transfers.source_wait_s)
    for did_id, rse_id, reason in failed:
        replica_states.copy_failed(session, did_id, rse_id)
        rule_ids = rule_states.locks_stuck(session, did_id, rse_id, now)
        rule_states.mark_stuck(
            session, rule_ids, reason, account=account, retry_at=retry_at, now=now
        )


def _lock_counts(session: Session, did_ids: Sequence[int]) -> Counter[tuple[int, int]]:
    """Rule locks per (file, RSE): the ``lock_count`` a new replica starts with."""
    stmt = (
        select(RuleLockRow.did_id, RuleLockRow.rse_id, func.count())
        .where(among(session, RuleLockRow.did_id, set(did_ids)))
        .group_by(RuleLockRow.did_id, RuleLockRow.rse_id)
    )
    return Counter({(d, r): int(n) for d, r, n in session.execute(stmt)})


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def _active_links(
    session: Session, rses: dict[int, RSERow], now: dt.datetime
) -> Counter[tuple[str, str]]:
    """Copies running now per (source site, destination site), by live leases (the rows
    being claimed have none)."""
    stmt = select(TransferRow.source_rse_id, TransferRow.dest_rse_id).where(
        TransferRow.state == TransferState.ACTIVE.value,
        TransferRow.lease_expires_at > now,
    )
    counts: Counter[tuple[str, str]] = Counter()
    for src, dst in session.execute(stmt):
        if src is not None and src in rses and dst in rses:
            counts[(rses[src].site, rses[dst].site)] += 1
    return counts


def _postponed(transfer_id: int, now: dt.datetime, wait_s: float, reason: str) -> dict[str, Any]:
    """No attempt spent: look again later. (An ACTIVE row whose owner died goes back to
    QUEUED; its COPYING replica stays, and the next claim redoes it.)"""
    return {
        "tid": transfer_id,
        "at": now + dt.timedelta(seconds=wait_s),
        "reason": reason,
        "now": now,
    }
