"""Catalog side of replication: what a rule covers, when it is due, how many locks hold a copy.

Shared by the rule evaluator, the transfer daemon and whoever changes what a rule sees (attaching
files to a dataset, declaring a replica BAD): they call ``bump_rules`` so that the rules
covering those files are evaluated again soon. Rule and replica *states* change only in
``dpps.bdms.states`` (this package cannot import it: ``catalog`` sits below ``bdms``).
Functions take the session and never commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from dpps.catalog.models import AttachmentRow, DIDRow, ReplicaRow, RuleLockRow, RuleRow
from dpps.catalog.sets import among
from dpps.core.clock import utcnow
from dpps.core.states import DIDType, RuleState

#: Ids per IN (...) list: far below SQLite's variable limit, large enough to amortise a query.
IN_CHUNK = 5000


def chunks[T](items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def covering_dids(session: Session, did_ids: Iterable[int]) -> set[int]:
    """The DIDs themselves and every dataset and container they are attached to, recursively."""
    seen = set(did_ids)
    frontier = sorted(seen)
    while frontier:
        parents: set[int] = set()
        for part in chunks(frontier):
            parents.update(
                session.scalars(
                    select(AttachmentRow.parent_id).where(
                        among(session, AttachmentRow.child_id, part)
                    )
                )
            )
        frontier = sorted(parents - seen)
        seen |= parents
    return seen


def bump_rules(
    session: Session,
    did_ids: Iterable[int],
    *,
    now: dt.datetime | None = None,
    states: Sequence[str] | None = None,
    within_s: float | None = None,
    covered: bool = False,
) -> int:
    """Make every rule covering ``did_ids`` due for evaluation now (SUSPENDED ones excepted).

    Called whenever what a rule sees changes: files attached to a dataset it covers, a replica
    it counted on declared BAD or lost. Returns how many rules were made due. Each call also
    adds one to the rule's ``generation``, the request counter whose protocol the rule state
    module explains (``dpps.bdms.states.rules``). ``states`` limits it to rules in those states
    (e.g. STUCK rules waiting for a source replica); ``within_s`` only brings the due time
    forward to ``now + within_s``, never back, so that frequent calls cost a large rule at most
    one evaluation per ``within_s``. ``covered``: ``did_ids`` already hold every collection
    above them (``covering_dids``' answer), sparing the caller who has it a second walk.
    """
    dids = sorted(did_ids) if covered else sorted(covering_dids(session, did_ids))
    if not dids:
        return 0
    now = now or utcnow()
    total = 0
    wanted = [RuleRow.state.in_(states) if states else RuleRow.state != RuleState.SUSPENDED.value]
    target = now
    if within_s is not None:
        target = now + dt.timedelta(seconds=within_s)
        wanted.append(
            or_(RuleRow.next_evaluation_at.is_(None), RuleRow.next_evaluation_at > target)
        )
    for part in chunks(dids):
        result = session.execute(
            update(RuleRow)
            .where(among(session, RuleRow.did_id, part), *wanted)
            .values(next_evaluation_at=target, generation=RuleRow.generation + 1)
            .execution_options(synchronize_session=False)
        )
        total += int(getattr(result, "rowcount", 0) or 0)
    return total


def expand_files(session: Session, did: DIDRow) -> list[tuple[int, int]]:
    """(file id, bytes) of every file a DID stands for: itself, or its members recursively.

    Deleted files (``deleted_at`` set) are left out: nothing has to be kept of them.
    """
    if did.did_type == DIDType.FILE.value:
        return [] if did.deleted_at is not None else [(did.id, int(did.bytes or 0))]
    files: dict[int, int] = {}
    seen = {did.id}
    frontier = [did.id]
    while frontier:
        next_level: list[int] = []
        for part in chunks(frontier):
            rows = session.execute(
                select(DIDRow.id, DIDRow.did_type, DIDRow.bytes)
                .join(AttachmentRow, AttachmentRow.child_id == DIDRow.id)
                .where(AttachmentRow.parent_id.in_(part), DIDRow.deleted_at.is_(None))
            )
            for did_id, did_type, size in rows:
                if did_type == DIDType.FILE.value:
                    files[did_id] = int(size or 0)
                elif did_id not in seen:
                    seen.add(did_id)
                    next_level.append(did_id)
        frontier = next_level
    return sorted(files.items())


def refresh_lock_counts(session: Session, did_ids: Collection[int]) -> None:
    """Set ``replicas.lock_count`` of these files' replicas to the number of rule locks on them.

    Recomputed from ``rule_locks`` rather than incremented, so it cannot drift: the reaper
    trusts it to decide what may be deleted.
    """
    locks = (
        select(func.count(RuleLockRow.id))
        .where(
            and_(
                RuleLockRow.did_id == ReplicaRow.did_id,
                RuleLockRow.rse_id == ReplicaRow.rse_id,
            )
        )
        .scalar_subquery()
    )
    for part in chunks(sorted(set(did_ids))):
        session.execute(
            update(ReplicaRow)
            .where(among(session, ReplicaRow.did_id, part), ReplicaRow.lock_count != locks)
            .values(lock_count=locks)
            .execution_options(synchronize_session=False)
        )


def lock_rules(session: Session, rule_ids: Iterable[int]) -> list[RuleRow]:
    """Row-lock rules in id order (PostgreSQL), so that evaluators and transfer daemons that
    change the same rule's locks take turns instead of deadlocking or overwriting each other's
    state. SQLite writers are already serialised by BEGIN IMMEDIATE."""
    ids = sorted(set(rule_ids))
    if not ids:
        return []
    stmt: Any = select(RuleRow).where(RuleRow.id.in_(ids)).order_by(RuleRow.id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return list(session.scalars(stmt.execution_options(populate_existing=True)))
