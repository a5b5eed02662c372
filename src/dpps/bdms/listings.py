"""The archive's listings: rules, transfers, replicas, events and files, filtered, ordered, paged.

One query per listing, whoever asks: ``archive.replication`` (the CLI), the REST routers and
the dashboard all call these, so a list and its total are the same rows everywhere (the REST
API once re-implemented rules and transfers and ordered them differently). Each function takes
the caller's session and only reads; ``bdms.views.ArchiveViews`` is the facade's door to them
(each call its own session). Files, the listing of the largest table, are read as columns,
not ORM rows, in one statement with their total, through a connection outside any
transaction (``Archive.reads``). Filter values a person typed (states, orders) are checked
here, with an error naming the known values, never turned into an empty list that looks like
"nothing".
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal, get_args

from sqlalchemy import Connection, ScalarSelect, Select, func, or_, select
from sqlalchemy.orm import Session, aliased

from dpps.bdms.retrieve import did_label, label_of
from dpps.bdms.types import (
    EventRecord,
    FileInfo,
    Page,
    PageRequest,
    ReplicaRecord,
    RuleInfo,
    TransferRecord,
)
from dpps.catalog.models import (
    DIDRow,
    EventRow,
    ReplicaRow,
    RSERow,
    RuleLockRow,
    RuleRow,
    TransferRow,
)
from dpps.catalog.query import describe_fields, select_dids
from dpps.core.errors import InvalidInput, NotFound
from dpps.core.identifiers import DID
from dpps.core.states import DIDType, ReplicaState, RuleState, TransferState

#: A SELECT of any columns (the listings' statements before their window).
Rows = Select[*tuple[Any, ...]]
#: What a files listing reads through: a session, or a connection outside any transaction
#: (``Archive.reads``: one statement needs none).
Reader = Session | Connection

RuleOrder = Literal["newest", "oldest"]
TransferOrder = Literal["id", "updated"]


def rule_state(text: str) -> RuleState:
    """A rule state given by a user (any case), or a clear error naming the known ones."""
    try:
        return RuleState(text.upper())
    except ValueError:
        known = ", ".join(s.value for s in RuleState)
        raise InvalidInput(f"unknown rule state {text!r} (use {known})") from None


def transfer_state(text: str) -> TransferState:
    """A transfer state given by a user (any case), or a clear error naming the known ones."""
    try:
        return TransferState(text.upper())
    except ValueError:
        known = ", ".join(s.value for s in TransferState)
        raise InvalidInput(f"unknown transfer state {text!r} (use {known})") from None


def replica_state(text: str) -> ReplicaState:
    """A replica state given by a user (any case), or a clear error naming the known ones."""
    try:
        return ReplicaState(text.upper())
    except ValueError:
        known = ", ".join(s.value for s in ReplicaState)
        raise InvalidInput(f"unknown replica state {text!r} (use {known})") from None


def _order(value: str, allowed: Any, what: str) -> str:
    """``value`` if it is one of the ``Literal`` ``allowed``'s values, else a clear error."""
    known: tuple[str, ...] = get_args(allowed)
    if value not in known:
        raise InvalidInput(f"unknown {what} order {value!r} (use {', '.join(known)})")
    return value


def _page[T](session: Session, stmt: Rows, page: PageRequest, rows: Any) -> Page[T]:
    """The total of ``stmt`` without its order, and ``rows`` (the page's items)."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    return Page(items=list(rows), total=int(total or 0), offset=page.offset, limit=page.limit)


def _window(stmt: Rows, page: PageRequest) -> Rows:
    return stmt.limit(page.limit).offset(page.offset)


# -- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleFilter:
    """Rules in ``state``, of ``account``, of ``policy``, on ``did`` (a DID without a version
    means any version of that name), with a file lock on the RSE ``rse`` or at ``site`` (where
    the rule puts its copies: its expression is not a name to compare), created at or after
    ``since`` (the dashboard's age filter; aware times are taken in UTC)."""

    state: str | None = None
    account: str | None = None
    did: DID | None = None
    policy: str | None = None
    rse: str | None = None
    site: str | None = None
    since: dt.datetime | None = None


def lock_counts(session: Session, rule_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """File locks of each rule counted by state."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    if rule_ids:
        for rule_id, state, n in session.execute(
            select(RuleLockRow.rule_id, RuleLockRow.state, func.count())
            .where(RuleLockRow.rule_id.in_(list(rule_ids)))
            .group_by(RuleLockRow.rule_id, RuleLockRow.state)
        ):
            counts[rule_id][state] = int(n)
    return counts


def rule_info(rule: RuleRow, did: DIDRow, locks: dict[str, int]) -> RuleInfo:
    return RuleInfo(
        id=rule.id,
        did=did_label(did),
        did_type=did.did_type,
        copies=rule.copies,
        rses=rule.rse_expression,
        source=rule.source_expression,
        state=rule.state,
        error=rule.error,
        priority=rule.priority,
        activity=rule.activity,
        account=rule.account,
        policy=rule.policy,
        comment=rule.comment,
        locked=rule.locked,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        expires_at=rule.expires_at,
        next_evaluation_at=rule.next_evaluation_at,
        locks=dict(locks),
    )


def _rule_infos(session: Session, pairs: Sequence[Any]) -> list[RuleInfo]:
    counts = lock_counts(session, [r.id for r, _ in pairs])
    return [rule_info(r, d, counts.get(r.id, {})) for r, d in pairs]


def _rules(where: RuleFilter) -> Rows:
    stmt: Rows = select(RuleRow, DIDRow).join(DIDRow, DIDRow.id == RuleRow.did_id)
    if where.state is not None:
        stmt = stmt.where(RuleRow.state == rule_state(where.state).value)
    if where.account is not None:
        stmt = stmt.where(RuleRow.account == where.account)
    if where.policy is not None:
        stmt = stmt.where(RuleRow.policy == where.policy)
    if where.did is not None:
        stmt = stmt.where(DIDRow.scope == where.did.scope, DIDRow.name == where.did.name)
        if where.did.version is not None:
            stmt = stmt.where(DIDRow.version == where.did.version)
    if where.rse is not None or where.site is not None:
        locks = select(RuleLockRow.id).join(RSERow, RSERow.id == RuleLockRow.rse_id)
        locks = locks.where(RuleLockRow.rule_id == RuleRow.id)
        if where.rse is not None:
            locks = locks.where(RSERow.name == where.rse)
        if where.site is not None:
            locks = locks.where(RSERow.site == where.site)
        stmt = stmt.where(locks.exists())
    if where.since is not None:
        stmt = stmt.where(RuleRow.created_at >= _naive_utc(where.since))
    return stmt


def list_rules(
    session: Session,
    where: RuleFilter = RuleFilter(),
    page: PageRequest = PageRequest(),
    *,
    order: RuleOrder = "newest",
) -> Page[RuleInfo]:
    """Rules with their lock counts; ``newest`` first or ``oldest`` first (by id)."""
    stmt = _rules(where)
    by = RuleRow.id.asc() if _order(order, RuleOrder, "rule") == "oldest" else RuleRow.id.desc()
    pairs = session.execute(_window(stmt.order_by(by), page)).all()
    return _page(session, stmt, page, _rule_infos(session, pairs))


def get_rule(session: Session, rule_id: int) -> RuleInfo:
    pair = session.execute(
        select(RuleRow, DIDRow)
        .join(DIDRow, DIDRow.id == RuleRow.did_id)
        .where(RuleRow.id == rule_id)
    ).one_or_none()
    if pair is None:
        raise NotFound(f"no rule {rule_id}")
    return _rule_infos(session, [pair])[0]


# -- transfers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransferFilter:
    """Transfers in ``state``, to the destination RSE ``rse``, of ``rule_id``, among ``ids``;
    ``errors_only`` keeps those with an error; ``involving`` an RSE and ``site`` match either
    end (a data center's page shows what it sends and receives); ``since``: created at or
    after (aware times are taken in UTC)."""

    state: str | None = None
    rse: str | None = None
    rule_id: int | None = None
    ids: Sequence[int] | None = None
    errors_only: bool = False
    involving: str | None = None
    site: str | None = None
    since: dt.datetime | None = None


_src = aliased(RSERow)
_dst = aliased(RSERow)


def _transfers(where: TransferFilter) -> Rows:
    stmt: Rows = (
        select(TransferRow, DIDRow, _src.name, _dst.name)
        .join(DIDRow, DIDRow.id == TransferRow.did_id)
        .join(_dst, _dst.id == TransferRow.dest_rse_id)
        .outerjoin(_src, _src.id == TransferRow.source_rse_id)
    )
    if where.state is not None:
        stmt = stmt.where(TransferRow.state == transfer_state(where.state).value)
    if where.rse is not None:
        stmt = stmt.where(_dst.name == where.rse)
    if where.rule_id is not None:
        stmt = stmt.where(TransferRow.rule_id == where.rule_id)
    if where.ids is not None:
        stmt = stmt.where(TransferRow.id.in_(list(where.ids)))
    if where.errors_only:
        stmt = stmt.where(TransferRow.error.is_not(None))
    if where.involving is not None:
        stmt = stmt.where(or_(_dst.name == where.involving, _src.name == where.involving))
    if where.site is not None:
        stmt = stmt.where(or_(_dst.site == where.site, _src.site == where.site))
    if where.since is not None:
        stmt = stmt.where(TransferRow.created_at >= _naive_utc(where.since))
    return stmt


def _transfer(t: TransferRow, did: DIDRow, src: str | None, dest: str) -> TransferRecord:
    return TransferRecord(
        id=t.id,
        did=did_label(did),
        source=src,
        dest=dest,
        rule_id=t.rule_id,
        state=t.state,
        activity=t.activity,
        priority=t.priority,
        attempts=t.attempts,
        max_attempts=t.max_attempts,
        bytes=t.bytes,
        error=t.error,
        next_attempt_at=t.next_attempt_at,
        created_at=t.created_at,
        updated_at=t.updated_at,
        finished_at=t.finished_at,
    )


def list_transfers(
    session: Session,
    where: TransferFilter = TransferFilter(),
    page: PageRequest = PageRequest(),
    *,
    order: TransferOrder = "id",
) -> Page[TransferRecord]:
    """Transfers, newest id first, or newest change first (``updated``, then newest id)."""
    stmt = _transfers(where)
    newest = (
        (TransferRow.updated_at.desc(),)
        if _order(order, TransferOrder, "transfer") == "updated"
        else ()
    )
    rows = session.execute(_window(stmt.order_by(*newest, TransferRow.id.desc()), page))
    return _page(session, stmt, page, [_transfer(t, d, s, r) for t, d, s, r in rows])


def get_transfer(session: Session, transfer_id: int) -> TransferRecord:
    row = session.execute(_transfers(TransferFilter(ids=[transfer_id]))).one_or_none()
    if row is None:
        raise NotFound(f"no such transfer {transfer_id}")
    return _transfer(row[0], row[1], row[2], row[3])


# -- replicas and events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaFilter:
    rse: str | None = None
    state: str | None = None


def list_replicas(
    session: Session,
    where: ReplicaFilter = ReplicaFilter(),
    page: PageRequest = PageRequest(),
) -> Page[ReplicaRecord]:
    """Replicas by RSE and state, oldest first (by id)."""
    stmt: Rows = (
        select(ReplicaRow, RSERow.name, DIDRow.scope, DIDRow.name, DIDRow.version)
        .join(RSERow, RSERow.id == ReplicaRow.rse_id)
        .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
    )
    if where.rse is not None:
        stmt = stmt.where(RSERow.name == where.rse)
    if where.state is not None:
        stmt = stmt.where(ReplicaRow.state == replica_state(where.state).value)
    rows = session.execute(_window(stmt.order_by(ReplicaRow.id), page))
    items = [
        ReplicaRecord(
            did=f"{scope}:{name}@v{version}",
            rse=rse,
            state=rep.state,
            path=rep.path,
            bytes=rep.bytes,
            lock_count=rep.lock_count,
            last_verified_at=rep.last_verified_at,
        )
        for rep, rse, scope, name, version in rows
    ]
    return _page(session, stmt, page, items)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Events about ``did`` (every version unless it names one), by ``account``, of
    ``action``, in [``since``, ``until``) (aware times are taken in UTC)."""

    did: DID | None = None
    account: str | None = None
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def list_events(
    session: Session,
    where: EventFilter = EventFilter(),
    page: PageRequest = PageRequest(),
) -> Page[EventRecord]:
    """Events, newest first."""
    stmt: Rows = (
        select(EventRow, DIDRow.scope, DIDRow.name, DIDRow.version, RSERow.name)
        .outerjoin(DIDRow, DIDRow.id == EventRow.did_id)
        .outerjoin(RSERow, RSERow.id == EventRow.rse_id)
    )
    if where.did is not None:
        stmt = stmt.where(DIDRow.scope == where.did.scope, DIDRow.name == where.did.name)
        if where.did.version is not None:
            stmt = stmt.where(DIDRow.version == where.did.version)
    if where.account is not None:
        stmt = stmt.where(EventRow.account == where.account)
    if where.action is not None:
        stmt = stmt.where(EventRow.action == where.action)
    if where.since is not None:
        stmt = stmt.where(EventRow.ts >= _naive_utc(where.since))
    if where.until is not None:
        stmt = stmt.where(EventRow.ts < _naive_utc(where.until))
    rows = session.execute(_window(stmt.order_by(EventRow.id.desc()), page))
    items = [
        EventRecord(
            id=e.id,
            ts=e.ts,
            account=e.account,
            action=e.action,
            did=f"{scope}:{name}@v{version}" if scope else None,
            rse=rse,
            reason=e.reason,
            details=dict(e.details or {}),
        )
        for e, scope, name, version, rse in rows
    ]
    return _page(session, stmt, page, items)


# -- files ---------------------------------------------------------------------------------


#: The columns a ``FileInfo`` is made of, in ``file_from``'s order. Listings read these, not
#: ORM rows: for a page of 100 files, building the ORM rows and then a ``FileInfo`` from each
#: cost 2-4x the SQL itself (issue 13).
FILE_COLUMNS = (
    DIDRow.scope,
    DIDRow.name,
    DIDRow.version,
    DIDRow.is_latest,
    DIDRow.bytes,
    DIDRow.adler32,
    DIDRow.blake3,
    DIDRow.data_level,
    DIDRow.category,
    DIDRow.obs_id,
    DIDRow.tel_id,
    DIDRow.observing_night,
    DIDRow.time_start,
    DIDRow.time_end,
    DIDRow.product_type,
    DIDRow.created_at,
    DIDRow.meta,
    DIDRow.checksums,
    DIDRow.did_type,
    DIDRow.is_open,
)
_WIDTH = len(FILE_COLUMNS)
#: Reads ``FILE_COLUMNS`` off an ORM row, in their order.
file_values: Callable[[DIDRow], tuple[Any, ...]] = attrgetter(*(c.key for c in FILE_COLUMNS))


def file_from(values: Sequence[Any]) -> FileInfo:
    """The ``FileInfo`` of a row of ``FILE_COLUMNS`` (of an ORM row: ``archive.file_info``).
    Its ``meta`` and ``checksums`` are its own: an ORM row's dicts are not shared."""
    (
        scope,
        name,
        version,
        is_latest,
        size,
        adler32,
        blake3,
        data_level,
        category,
        obs_id,
        tel_id,
        night,
        time_start,
        time_end,
        product_type,
        created_at,
        meta,
        checksums,
        did_type,
        is_open,
    ) = values[:_WIDTH]
    return FileInfo(
        did=label_of(scope, name, version, is_latest),
        scope=scope,
        name=name,
        version=version,
        bytes=size,
        adler32=adler32,
        blake3=blake3,
        data_level=data_level,
        category=category,
        obs_id=obs_id,
        tel_id=tel_id,
        observing_night=night,
        time_start=time_start,
        time_end=time_end,
        product_type=product_type,
        created_at=created_at,
        meta=dict(meta) if meta else {},
        checksums=dict(checksums) if checksums else {},
        did_type=did_type,
        is_latest=is_latest,
        is_open=None if did_type == DIDType.FILE.value else is_open,
    )


def read_files(reader: Reader, stmt: Select[DIDRow]) -> list[FileInfo]:
    """The files a DID query (``catalog.query.select_dids``) selects, as ``FileInfo``s built
    straight from its rows: one statement, no ORM objects."""
    rows = reader.execute(stmt.with_only_columns(*FILE_COLUMNS)).all()  # fetchall: one call
    return [file_from(row) for row in rows]


def _counted(stmt: Select[DIDRow]) -> ScalarSelect[int]:
    """How many rows ``stmt`` (without its window) selects, as a value of another query."""
    inner = stmt.order_by(None).limit(None).offset(None).with_only_columns(DIDRow.id)
    return select(func.count()).select_from(inner.subquery()).scalar_subquery().correlate(None)


def list_files(
    reader: Reader,
    filter_text: str = "",
    page: PageRequest = PageRequest(),
    *,
    order_by: str = "name",
) -> Page[FileInfo]:
    """Latest file versions matching a query (``dpps ls``'s language), ordered by a query
    field (``-`` first for descending). The page and the total are one statement (each row
    carries the total), so they agree without a transaction around two; only a page past the
    end, which has no row to carry it, counts again."""
    stmt = select_dids(filter_text, limit=None, order_by=order_by)
    total = _counted(stmt)
    rows = reader.execute(_window(stmt.with_only_columns(*FILE_COLUMNS, total), page)).all()
    if rows:
        counted = rows[0][_WIDTH]
    elif page.offset == 0:
        counted = 0
    else:
        counted = reader.execute(select(total)).scalar()
    return Page(
        items=[file_from(row) for row in rows],
        total=int(counted or 0),
        offset=page.offset,
        limit=page.limit,
    )


def find_file(session: Session, did: DID) -> FileInfo | None:
    """The file ``did`` names (its version, else the latest), if it exists and is not deleted."""
    stmt = select(DIDRow).where(
        DIDRow.scope == did.scope,
        DIDRow.name == did.name,
        DIDRow.did_type == DIDType.FILE.value,
        DIDRow.deleted_at.is_(None),
    )
    if did.version is None:
        stmt = stmt.where(DIDRow.is_latest.is_(True))
    else:
        stmt = stmt.where(DIDRow.version == did.version)
    from dpps.bdms.archive import file_info  # the archive imports this module

    row = session.scalars(stmt).one_or_none()
    return None if row is None else file_info(row)


def query_fields() -> list[tuple[str, str, str]]:
    """(name, type, description) of every field of the query language (help pages)."""
    return describe_fields()
