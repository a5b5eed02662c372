"""Datasets and containers: creating them, attaching and detaching members, and walking the
tree of attachments (membership at any depth, the rules above a collection).

Split from ``catalog.dids`` (registration attaches each chunk's new files here) so that each
module does one job; callers own the transaction, nothing here commits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, exists, or_, select, text
from sqlalchemy.orm import Session

from dpps.catalog import bulk, events
from dpps.catalog.models import AttachmentRow, DIDRow, RuleRow
from dpps.catalog.replication import bump_rules
from dpps.catalog.sets import among
from dpps.core.clock import utcnow
from dpps.core.errors import Conflict
from dpps.core.states import DIDType

ATTACHMENTS: Table = AttachmentRow.__table__  # type: ignore[assignment]


def get_or_create_collection(
    session: Session, scope: str, name: str, did_type: DIDType, *, account: str
) -> DIDRow:
    """A dataset or container, created on first use (ingest --dataset)."""
    return collection(session, scope, name, did_type, account=account)[0]


def collection(
    session: Session, scope: str, name: str, did_type: DIDType, *, account: str
) -> tuple[DIDRow, bool]:
    """A dataset or container and whether it was created now (with its event); a name taken
    by another kind of DID is a Conflict."""
    row = session.scalars(
        select(DIDRow).where(DIDRow.scope == scope, DIDRow.name == name, DIDRow.version == 1)
    ).one_or_none()
    if row is not None:
        if row.did_type != did_type.value:
            raise Conflict(f"{scope}:{name} exists as a {row.did_type}, not a {did_type.value}")
        return row, False
    row = DIDRow(
        scope=scope,
        name=name,
        version=1,
        is_latest=True,
        did_type=did_type.value,
        checksums={},
        meta={},
    )
    session.add(row)
    session.flush()
    events.record(
        session, account=account, action=f"{did_type.value.lower()}.create", did_id=row.id
    )
    return row, True


def attach(
    session: Session,
    parent_id: int,
    child_ids: Sequence[int],
    *,
    bump: bool = True,
    fresh: Collection[int] = (),
) -> bool:
    """Attach children to a collection; attaching twice is harmless. Returns whether any
    child was new.

    Rules on the collection (or on containers holding it) cover the new members too, so they
    are made due for evaluation in the same transaction - unless ``bump`` is False because the
    caller makes them due once for several collections (``bdms.registration.register``).
    ``fresh`` are children created in this transaction, attached nowhere yet: registration
    names its new files so, sparing the look-up of a chunk's worth of ids.
    """
    if not child_ids:
        return False
    known = set(fresh)
    unknown = [c for c in child_ids if c not in known]
    present: set[int] = set()
    if unknown:
        present = set(
            session.scalars(
                select(AttachmentRow.child_id).where(
                    AttachmentRow.parent_id == parent_id,
                    among(session, AttachmentRow.child_id, unknown),
                )
            )
        )
    new = [c for c in dict.fromkeys(child_ids) if c not in present]
    if new:
        now = utcnow()
        columns = ("parent_id", "child_id", "created_at")
        bulk.insert_values(session, ATTACHMENTS, columns, [(parent_id, c, now) for c in new])
        if bump:
            bump_rules(session, [parent_id], now=now)
    return bool(new)


@dataclass(frozen=True, slots=True)
class Target:
    """A collection that files are to be attached to, as registration checks it."""

    id: int
    scope: str
    name: str
    is_open: bool


def attach_targets(session: Session, collection_ids: Sequence[int]) -> tuple[list[Target], bool]:
    """The collections (those that exist) and whether any rule covers one of them - on it, or
    on a container above it at any depth - in one query: registration refuses closed ones and,
    when no rule covers them, attaching files makes no rule due, so it can skip the walk up
    the container tree (a round trip per level) and the ``UPDATE rules`` of
    ``bump_rules``. On PostgreSQL the walk probes the index on ``child_id`` per step (a
    ``LATERAL`` subquery the planner cannot turn into a hash join, which read every
    attachment of the catalog per chunk); SQLite probes it as it is."""
    if not collection_ids:
        return [], False
    ids = sorted(set(collection_ids))
    if session.get_bind().dialect.name == "postgresql":
        rows: Any = session.execute(
            text(
                "WITH RECURSIVE up(id) AS (SELECT unnest(CAST(:ids AS bigint[])) UNION "
                "SELECT a.parent_id FROM up CROSS JOIN LATERAL (SELECT parent_id FROM "
                f"{ATTACHMENTS.name} WHERE child_id = up.id OFFSET 0) AS a) "
                "SELECT d.id, d.scope, d.name, d.is_open, EXISTS (SELECT FROM "
                f"{RuleRow.__tablename__} WHERE did_id IN (SELECT id FROM up)) "
                f"FROM {DIDRow.__tablename__} AS d WHERE d.id = ANY(CAST(:ids AS bigint[]))"
            ),
            {"ids": ids},
        )
    else:
        up = select(DIDRow.id.label("id")).where(DIDRow.id.in_(ids)).cte("up", recursive=True)
        up = up.union(select(AttachmentRow.parent_id).join(up, AttachmentRow.child_id == up.c.id))
        ruled = exists().where(RuleRow.did_id.in_(select(up.c.id)))
        rows = session.execute(
            select(DIDRow.id, DIDRow.scope, DIDRow.name, DIDRow.is_open, ruled).where(
                DIDRow.id.in_(ids)
            )
        )
    targets: list[Target] = []
    covered = False
    for did_id, scope, name, is_open, is_ruled in rows:
        targets.append(Target(did_id, scope, name, bool(is_open)))
        covered = covered or bool(is_ruled)
    return targets, covered


def detach(session: Session, parent_id: int, child_ids: Sequence[int]) -> int:
    """Remove children from a collection; returns how many were members. The caller checks
    membership first and releases what rules held for them (``bdms.datasets``); the event of
    the detachment, with the children's names, is what keeps its history."""
    if not child_ids:
        return 0
    result = session.execute(
        delete(AttachmentRow)
        .where(AttachmentRow.parent_id == parent_id, AttachmentRow.child_id.in_(child_ids))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def members_among(session: Session, parent_id: int, child_ids: Sequence[int]) -> set[int]:
    """Which of ``child_ids`` are attached to ``parent_id`` directly."""
    if not child_ids:
        return set()
    return set(
        session.scalars(
            select(AttachmentRow.child_id).where(
                AttachmentRow.parent_id == parent_id, AttachmentRow.child_id.in_(child_ids)
            )
        )
    )


def _below(did_id: int) -> Any:
    """A recursive CTE of the ids of every DID attached below ``did_id``, at any depth.

    UNION (not UNION ALL) stops at DIDs already seen, so even a cycle in the table (which
    attaching refuses) could not make the query run for ever."""
    tree = (
        select(AttachmentRow.child_id.label("id"))
        .where(AttachmentRow.parent_id == did_id)
        .cte("below", recursive=True)
    )
    return tree.union(
        select(AttachmentRow.child_id).join(tree, AttachmentRow.parent_id == tree.c.id)
    )


def descendant_ids(session: Session, did_id: int) -> set[int]:
    """Every DID attached below ``did_id``, at any depth (the cycle check of attach)."""
    tree = _below(did_id)
    return set(session.scalars(select(tree.c.id)))


def member_of(collection_id: int) -> ColumnElement[bool]:
    """A condition on ``DIDRow``: the DID is attached below this collection, at any depth.

    ``dpps ls --dataset`` adds it to the filter language's own condition, so selection by
    membership composes with every other term in one statement."""
    return DIDRow.id.in_(select(_below(collection_id).c.id))


def parents_of(session: Session, did_id: int) -> Sequence[DIDRow]:
    stmt = (
        select(DIDRow)
        .join(AttachmentRow, AttachmentRow.parent_id == DIDRow.id)
        .where(AttachmentRow.child_id == did_id)
        .order_by(DIDRow.name)
    )
    return session.scalars(stmt).all()


def children_of(session: Session, did_id: int) -> Sequence[DIDRow]:
    stmt = (
        select(DIDRow)
        .join(AttachmentRow, AttachmentRow.child_id == DIDRow.id)
        .where(AttachmentRow.parent_id == did_id)
        .order_by(DIDRow.name, DIDRow.version)
    )
    return session.scalars(stmt).all()


def holds_level(session: Session, did_id: int, level: str) -> bool:
    """True if the DID is a file of data level ``level`` or a collection with one anywhere below.

    Authorisation asks it: a rule on a dataset is a rule on raw data if any file below it is
    DL0, and only archive managers may change rules on raw data.
    """
    tree = (
        select(AttachmentRow.child_id.label("id"))
        .where(AttachmentRow.parent_id == did_id)
        .cte("tree", recursive=True)
    )
    tree = tree.union(
        select(AttachmentRow.child_id).join(tree, AttachmentRow.parent_id == tree.c.id)
    )
    stmt = (
        select(DIDRow.id)
        .where(
            or_(DIDRow.id == did_id, DIDRow.id.in_(select(tree.c.id))),
            DIDRow.data_level == level,
        )
        .limit(1)
    )
    return session.scalar(stmt) is not None
