"""Replica states: every change of a replica's state goes through a function here.

::

    (new) --register--> AVAILABLE --declare_bad--> BAD
    (new) --claim-----> COPYING --copied--> AVAILABLE
    BAD, UNAVAILABLE, COPYING (a copy redone) --copying--> COPYING
    COPYING --copy_failed--> (row removed: nothing was ever readable there)
    anything but BEING_DELETED --being_deleted--> BEING_DELETED --> (row removed)

Registration creates replicas AVAILABLE (``catalog.dids.register_files``: the bytes were
checksummed before); the transfer daemon creates them COPYING and makes them AVAILABLE only
after the destination's checksums matched. Deletion (``bdms.preservation.deletion``, the
reaper) marks replicas through ``being_deleted`` and then removes bytes and rows itself.
Nothing writes UNAVAILABLE today: an RSE that cannot be reached is marked on the RSE
(``rses.available``), not on each of its replicas.

Each function is one guarded, set-based statement (``WHERE state IN (sources)``), so the
transfer daemon's thousands of outcomes per second stay a handful of statements, and a
replica whose state changed meanwhile (another reader declared it BAD, the reaper took it) is
left alone: the caller's view was stale, the newer state wins. With ``strict=True`` such a
replica is refused with ``Conflict`` instead - for a request about one named replica.

A replica that becomes BAD changes what its rules count, so ``declare_bad`` makes the rules
covering the file due (``catalog.replication.bump_rules``; the protocol is explained in
``dpps.bdms.states.rules``): the evaluator then copies the file again from a good replica.
A file left with no AVAILABLE replica is lost: ``declare_bad`` records ``file.lost`` for it,
whoever found the damage.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from dpps.catalog import events
from dpps.catalog.models import ReplicaRow
from dpps.catalog.replication import bump_rules, chunks
from dpps.catalog.sets import among
from dpps.core.clock import utcnow
from dpps.core.errors import Conflict
from dpps.core.states import ReplicaState

log = logging.getLogger("dpps.replicas")
_REPLICAS = cast(Table, ReplicaRow.__table__)

#: The source states of each transition (the target is in the function's name).
SOURCES: Mapping[str, frozenset[str]] = {
    "declare_bad": frozenset({ReplicaState.AVAILABLE.value}),
    "copied": frozenset({ReplicaState.COPYING.value}),
    "copying": frozenset(
        {
            ReplicaState.BAD.value,
            ReplicaState.UNAVAILABLE.value,
            ReplicaState.COPYING.value,
        }
    ),
    "copy_failed": frozenset({ReplicaState.COPYING.value}),
}


@dataclass(frozen=True, slots=True)
class Damaged:
    """A replica found not to hold its file's bytes, and how that was found."""

    did_id: int
    rse_id: int
    #: why it is BAD (the ``replica.bad`` event's reason)
    reason: str
    #: the RSE's name, for the ``file.lost`` event and logs
    rse: str | None = None
    #: the file's label (scope:name), for logs
    did: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Declared:
    """What ``declare_bad`` did: the replicas it marked, the files now without a good copy."""

    marked: list[Damaged]
    lost: list[Damaged]


def declare_bad(
    session: Session,
    damaged: Sequence[Damaged],
    *,
    account: str,
    lost_reason: str,
    now: dt.datetime | None = None,
    verified: bool = False,
    strict: bool = False,
) -> Declared:
    """AVAILABLE -> BAD for each damaged replica, with its ``replica.bad`` event; the rules
    covering those files are made due so the evaluator repairs them from a good copy, and a
    file left without any AVAILABLE replica gets a ``file.lost`` event (``lost_reason``).

    ``verified``: the bytes were just read (an audit), so ``last_verified_at`` is stamped too.
    Replicas no longer AVAILABLE are skipped (``strict``: refused with ``Conflict``).
    """
    if not damaged:
        return Declared([], [])
    now = now or utcnow()
    wanted = {(d.did_id, d.rse_id): d for d in damaged}
    values: dict[str, Any] = {"state": ReplicaState.BAD.value, "updated_at": now}
    if verified:
        values["last_verified_at"] = now
    moved: set[tuple[int, int]] = set()
    for part in chunks(sorted(wanted)):
        rows = session.execute(
            update(_REPLICAS)
            .where(
                tuple_(_REPLICAS.c.did_id, _REPLICAS.c.rse_id).in_(part),
                _REPLICAS.c.state.in_(SOURCES["declare_bad"]),
            )
            .values(**values)
            .returning(_REPLICAS.c.did_id, _REPLICAS.c.rse_id)
        )
        moved.update((int(d), int(r)) for d, r in rows)
    if strict and len(moved) < len(wanted):
        _refuse(session, "declare BAD", [k for k in wanted if k not in moved], "AVAILABLE")
    marked = [wanted[k] for k in sorted(moved)]
    if not marked:
        return Declared([], [])
    events.record_many(
        session,
        (
            {
                "account": account,
                "action": "replica.bad",
                "did_id": d.did_id,
                "rse_id": d.rse_id,
                "reason": d.reason,
                "details": dict(d.details),
            }
            for d in marked
        ),
    )
    files = sorted({d.did_id for d in marked})
    bump_rules(session, files, now=now)  # the evaluator repairs from a good copy
    good = dict(
        session.execute(
            select(ReplicaRow.did_id, func.count())
            .where(
                ReplicaRow.did_id.in_(files),
                ReplicaRow.state == ReplicaState.AVAILABLE.value,
            )
            .group_by(ReplicaRow.did_id)
        ).all()
    )
    last = {d.did_id: d for d in marked}
    lost = [last[f] for f in files if not good.get(f, 0)]
    for d in lost:
        log.error("file lost: %s has no good replica left", d.did or d.did_id)
    events.record_many(
        session,
        (
            {
                "account": account,
                "action": "file.lost",
                "did_id": d.did_id,
                "reason": lost_reason,
                "details": {"last_bad": d.rse} if d.rse is not None else {},
            }
            for d in lost
        ),
    )
    return Declared(marked, lost)


def copied(
    session: Session, copies: Sequence[tuple[int, int]], *, now: dt.datetime | None = None
) -> None:
    """COPYING -> AVAILABLE for (replica id, bytes) pairs whose copy was verified at the
    destination: one executemany statement for the whole batch (the transfer daemon's hot
    path). The event is the caller's ``transfer.done``, written in the same transaction: one
    event per copy, as the preservation record needs, not two."""
    if not copies:
        return
    now = now or utcnow()
    session.execute(
        update(_REPLICAS)
        .where(
            _REPLICAS.c.id == bindparam("rid"),
            _in_states(SOURCES["copied"]),
        )
        .values(
            state=ReplicaState.AVAILABLE.value,
            bytes=bindparam("size"),
            last_verified_at=now,
            updated_at=now,
        ),
        [{"rid": rid, "size": size} for rid, size in copies],
    )


def copying(session: Session, redo: Sequence[tuple[int, str]], *, now: dt.datetime) -> None:
    """BAD, UNAVAILABLE or COPYING -> COPYING for (replica id, path) pairs: an existing
    replica a claimed transfer writes again (the new ones are inserted COPYING by the claim).
    The event is the caller's ``replica.copying``, one per claimed transfer."""
    if not redo:
        return
    session.execute(
        update(_REPLICAS)
        .where(
            _REPLICAS.c.id == bindparam("rid"),
            _in_states(SOURCES["copying"]),
        )
        .values(state=ReplicaState.COPYING.value, path=bindparam("path"), updated_at=now),
        [{"rid": rid, "path": path} for rid, path in redo],
    )


def copy_failed(session: Session, did_id: int, rse_id: int) -> None:
    """COPYING -> gone: a copy that failed for good leaves no replica row (nothing readable
    was ever there). The event is the caller's ``transfer.failed``."""
    session.execute(
        delete(ReplicaRow).where(
            ReplicaRow.did_id == did_id,
            ReplicaRow.rse_id == rse_id,
            ReplicaRow.state.in_(SOURCES["copy_failed"]),
        )
    )


def being_deleted(
    session: Session,
    replica_ids: Sequence[int],
    *,
    account: str,
    reason: str,
    ignore_locks: bool = False,
) -> list[int]:
    """Any state but BEING_DELETED -> BEING_DELETED, with a tombstone and a
    ``replica.deleting`` event each, unless locked by a rule (``ignore_locks``: a deletion a
    person asked for); returns the ids marked. The reaper and ``bdms.preservation.deletion``
    then remove the bytes and the row."""
    now = utcnow()
    marked: list[int] = []
    for chunk in chunks(list(replica_ids)):
        stmt = select(ReplicaRow.id, ReplicaRow.did_id, ReplicaRow.rse_id, ReplicaRow.state).where(
            ReplicaRow.id.in_(chunk), ReplicaRow.state != ReplicaState.BEING_DELETED.value
        )
        if not ignore_locks:
            stmt = stmt.where(ReplicaRow.lock_count == 0)
        rows = session.execute(stmt).all()
        if not rows:
            continue
        cond: list[ColumnElement[bool]] = [ReplicaRow.id.in_([r.id for r in rows])]
        cond.append(ReplicaRow.state != ReplicaState.BEING_DELETED.value)
        if not ignore_locks:
            cond.append(ReplicaRow.lock_count == 0)
        session.execute(
            update(ReplicaRow)
            .where(*cond)
            .values(state=ReplicaState.BEING_DELETED.value, tombstone_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        events.record_many(
            session,
            (
                {
                    "account": account,
                    "action": "replica.deleting",
                    "did_id": r.did_id,
                    "rse_id": r.rse_id,
                    "reason": reason,
                    "details": {"previous_state": r.state},
                }
                for r in rows
            ),
        )
        marked += [r.id for r in rows]
    return marked


def _in_states(states: Collection[str]) -> ColumnElement[bool]:
    """``state IN (...)`` as plain comparisons: an executemany cannot take an expanding IN."""
    return or_(*(_REPLICAS.c.state == s for s in sorted(states)))


def _refuse(
    session: Session, transition: str, keys: Collection[tuple[int, int]], expected: str
) -> None:
    """Raise the domain error for replicas not in a transition's source state."""
    states = {
        (int(d), int(r)): s
        for d, r, s in session.execute(
            select(ReplicaRow.did_id, ReplicaRow.rse_id, ReplicaRow.state).where(
                among(session, ReplicaRow.did_id, {d for d, _ in keys})
            )
        )
    }
    found = ", ".join(
        f"file {d} on RSE {r} is {states.get((d, r), 'missing')}" for d, r in sorted(keys)
    )
    raise Conflict(f"cannot {transition}: {found}, not {expected}")
