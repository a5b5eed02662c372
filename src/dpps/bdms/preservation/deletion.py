"""Deleting replicas, rules and data products without ever losing track (UC-110-1.8, 1.9).

Deleting a replica is two short transactions around the storage call: first the replica is
marked BEING_DELETED (only if no rule locks it, checked in the same UPDATE so a rule created
meanwhile wins), then its bytes are removed, then its row goes and a ``replica.delete`` event
records what was where. A process killed in between leaves a BEING_DELETED row that the reaper
finishes later; an unreachable store does the same. File rows are never removed: a file that
is deliberately deleted or whose lifetime ended keeps its row with ``deleted_at`` set, and its
events stay attached to it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.preservation.records import Doomed
from dpps.bdms.records import DeletionReport
from dpps.bdms.states import replicas as replica_states
from dpps.catalog import attachments as attachment_repo
from dpps.catalog import dids as did_repo
from dpps.catalog import events, replication
from dpps.catalog.engine import transaction, write
from dpps.catalog.models import (
    AccountRow,
    AttachmentRow,
    DIDRow,
    ReplicaRow,
    RSERow,
    RuleLockRow,
    RuleRow,
    TransferRow,
    utcnow,
)
from dpps.core.authz import ROOT, Action, principal_of, require
from dpps.core.config import Config
from dpps.core.errors import (
    Conflict,
    DppsError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from dpps.core.identifiers import DID
from dpps.core.states import DIDType, ReplicaState, TransferState
from dpps.storage.rse import StorageElement

log = logging.getLogger("dpps.deletion")

_CHUNK = 500


def _chunks[T](items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def remove_rule(
    session: Session, rule: RuleRow, *, account: str, reason: str, action: str = "rule.delete"
) -> int:
    """Drop a rule - the one way any rule goes: ``dpps rule delete`` (through
    ``rules.delete_rule``), an expired lifetime (the reaper, ``action="rule.expire"``) and the
    deliberate removal of a product (``delete_did``).

    Its locks go, its queued transfers are cancelled, and the replicas it held that no other
    rule locks get a tombstone (the reaper deletes them once past retention, unless one is a
    live file's last good copy). The event keeps everything the rule said. Other rules on the
    same files are made due: they may have counted one of its cancelled transfers as a copy
    on its way. Returns the number of replicas tombstoned; the caller commits.
    """
    if not reason or not reason.strip():
        raise InvalidInput("give a reason for deleting a rule: it is the preservation record")
    now = utcnow()
    replication.lock_rules(session, [rule.id])  # evaluators and transfers take turns with us
    pairs = [
        (d, r)
        for d, r in session.execute(
            select(RuleLockRow.did_id, RuleLockRow.rse_id).where(RuleLockRow.rule_id == rule.id)
        )
    ]
    affected = {d for d, _ in pairs} | set(
        session.scalars(
            select(TransferRow.did_id).where(
                TransferRow.rule_id == rule.id, TransferRow.state == TransferState.QUEUED.value
            )
        )
    )
    session.execute(delete(RuleLockRow).where(RuleLockRow.rule_id == rule.id))
    replication.refresh_lock_counts(session, {d for d, _ in pairs})
    tombstoned = 0
    for chunk in _chunks(pairs):
        result = session.execute(
            update(ReplicaRow)
            .where(
                tuple_(ReplicaRow.did_id, ReplicaRow.rse_id).in_(list(chunk)),
                ReplicaRow.lock_count == 0,
                ReplicaRow.tombstone_at.is_(None),
            )
            .values(tombstone_at=now)
            .execution_options(synchronize_session=False)
        )
        tombstoned += int(getattr(result, "rowcount", 0) or 0)
    session.execute(
        update(TransferRow)
        .where(TransferRow.rule_id == rule.id, TransferRow.state == TransferState.QUEUED.value)
        .values(
            state=TransferState.CANCELLED.value,
            finished_at=now,
            error=f"rule {rule.id} removed: {reason}",
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(TransferRow)
        .where(TransferRow.rule_id == rule.id)
        .values(rule_id=None)
        .execution_options(synchronize_session=False)
    )
    events.record(
        session,
        account=account,
        action=action,
        did_id=rule.did_id,
        reason=reason,
        details={
            "rule_id": rule.id,
            "account": rule.account,
            "rses": rule.rse_expression,
            "source": rule.source_expression,
            "copies": rule.copies,
            "state": rule.state,
            "policy": rule.policy,
            "created_at": rule.created_at.isoformat() if rule.created_at else None,
            "expires_at": rule.expires_at.isoformat() if rule.expires_at else None,
            "locks": len(pairs),
            "tombstoned": tombstoned,
        },
    )
    session.delete(rule)
    session.flush()
    if affected:
        replication.bump_rules(session, sorted(affected))
    return tombstoned


#: The replica transition of deletion (``dpps.bdms.states.replicas.being_deleted``).
mark_being_deleted = replica_states.being_deleted


def purge(
    factory: sessionmaker[Session],
    config: Config,
    replica_ids: Sequence[int],
    *,
    account: str,
    reason: str,
) -> tuple[int, list[str]]:
    """Remove the bytes of BEING_DELETED replicas, then their rows (with an event).

    Returns (replicas purged, errors); a replica whose store is unreachable stays
    BEING_DELETED for a later pass.
    """
    with factory() as session:
        doomed = doomed_rows(session, dict.fromkeys(replica_ids, reason))
    removed, errors = remove_bytes(config, doomed)
    return forget(factory, removed, account=account), errors


def doomed_rows(session: Session, reasons: Mapping[int, str]) -> list[Doomed]:
    """The replicas of ``reasons`` (id -> why) still BEING_DELETED, with where they are."""
    doomed: list[Doomed] = []
    for chunk in _chunks(sorted(reasons)):
        rows = session.execute(
            select(ReplicaRow.id, ReplicaRow.path, RSERow.name)
            .join(RSERow, RSERow.id == ReplicaRow.rse_id)
            .where(
                ReplicaRow.id.in_(chunk),
                ReplicaRow.state == ReplicaState.BEING_DELETED.value,
            )
        ).all()
        doomed += [Doomed(rep_id, rse, path, reasons[rep_id]) for rep_id, path, rse in rows]
    return doomed


def remove_bytes(
    config: Config, doomed: Sequence[Doomed], rses: frozenset[str] | None = None
) -> tuple[list[Doomed], list[str]]:
    """Remove the replicas' bytes from storage (the catalog is not touched): (removed,
    errors). Only replicas on ``rses`` when given: a site's reaper touches its own storage.
    An RSE whose root is missing (unmounted) or unreachable keeps its replicas for later."""
    storages: dict[str, StorageElement] = {}
    removed: list[Doomed] = []
    errors: list[str] = []
    for item in doomed:
        if rses is not None and item.rse not in rses:
            errors.append(f"{item.rse}:{item.path}: not this site's storage")
            continue
        try:
            storage = storages.get(item.rse) or StorageElement.from_config(item.rse, config)
            storages[item.rse] = storage
            if not storage.root_exists():  # unmounted: removing "nothing" would leave dark data
                raise Unavailable(f"RSE {item.rse}: its root {storage.root} is missing")
            storage.remove(item.path)
        except DppsError as exc:  # unreachable, or an RSE no longer configured: later
            errors.append(f"{item.rse}:{item.path}: {exc}")
            continue
        removed.append(item)
    return removed, errors


def forget(factory: sessionmaker[Session], removed: Sequence[Doomed], *, account: str) -> int:
    """Remove the rows of replicas whose bytes are gone (still BEING_DELETED, on the RSE the
    report names), each with a ``replica.delete`` event naming why and where; returns how
    many went."""
    reported = {d.replica_id: d for d in removed}
    count = 0
    for chunk in _chunks(sorted(reported)):
        with transaction(factory) as session:
            gone = [
                g
                for g in session.execute(
                    select(
                        ReplicaRow.id,
                        ReplicaRow.did_id,
                        ReplicaRow.rse_id,
                        ReplicaRow.path,
                        ReplicaRow.bytes,
                        RSERow.name,
                    )
                    .join(RSERow, RSERow.id == ReplicaRow.rse_id)
                    .where(
                        ReplicaRow.id.in_(chunk),
                        ReplicaRow.state == ReplicaState.BEING_DELETED.value,
                    )
                ).all()
                if g.name == reported[g.id].rse
            ]
            session.execute(
                delete(ReplicaRow)
                .where(
                    ReplicaRow.id.in_([g.id for g in gone]),
                    ReplicaRow.state == ReplicaState.BEING_DELETED.value,
                )
                .execution_options(synchronize_session=False)
            )
            events.record_many(
                session,
                (
                    {
                        "account": account,
                        "action": "replica.delete",
                        "did_id": g.did_id,
                        "rse_id": g.rse_id,
                        "reason": reported[g.id].reason,
                        "details": {"path": g.path, "bytes": g.bytes},
                    }
                    for g in gone
                ),
            )
            count += len(gone)
    return count


def tombstone_files(
    session: Session, did_ids: Sequence[int], *, account: str, action: str, reason: str
) -> None:
    """Set ``deleted_at`` on files and collections (rows stay; events say why)."""
    now = utcnow()
    for chunk in _chunks(list(did_ids)):
        live = list(
            session.scalars(
                select(DIDRow.id).where(DIDRow.id.in_(chunk), DIDRow.deleted_at.is_(None))
            )
        )
        if not live:
            continue
        session.execute(
            update(DIDRow)
            .where(DIDRow.id.in_(live))
            .values(deleted_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        events.record_many(
            session,
            ({"account": account, "action": action, "did_id": d, "reason": reason} for d in live),
        )


def drop_file_locks(session: Session, did_ids: Sequence[int]) -> None:
    """Forget every lock on these files (they are going away) and recount."""
    for chunk in _chunks(list(did_ids)):
        session.execute(
            delete(RuleLockRow)
            .where(RuleLockRow.did_id.in_(chunk))
            .execution_options(synchronize_session=False)
        )
    replication.refresh_lock_counts(session, set(did_ids))


def _descendants(session: Session, root: DIDRow) -> tuple[list[int], list[int]]:
    """(file ids, collection ids) under ``root`` (root included), any depth."""
    files: list[int] = []
    collections: list[int] = []
    frontier = [root]
    seen: set[int] = set()
    while frontier:
        nxt: list[DIDRow] = []
        for row in frontier:
            if row.id in seen:
                continue
            seen.add(row.id)
            if row.did_type == DIDType.FILE:
                files.append(row.id)
            else:
                collections.append(row.id)
                nxt += list(attachment_repo.children_of(session, row.id))
        frontier = nxt
    return files, collections


def check_may_delete(session: Session, account: str, scope: str) -> None:
    """Deliberate removal is the archive manager's (or an admin's) once accounts exist.

    Checked here, where every way in (the local CLI, Python, the REST API acting as the
    token's account) passes, so they cannot disagree. Locally the catalog owner acts as
    ``root`` (admin); an account the catalog does not know may delete only while no account
    exists at all (a fresh workspace). Raises ``PermissionDenied`` before anything changes.
    """
    row = session.scalars(select(AccountRow).where(AccountRow.name == account)).one_or_none()
    if row is not None:
        if row.disabled_at is not None:
            raise PermissionDenied(f"account {account!r} is disabled")
        principal = principal_of(row)
    elif account == ROOT.name or session.scalar(select(AccountRow.id).limit(1)) is None:
        principal = ROOT
    else:
        raise PermissionDenied(f"account {account!r} is unknown: it may not delete products")
    require(principal, Action.DID_DELETE, scopes=[scope])


def delete_did(
    factory: sessionmaker[Session], config: Config, did: DID, *, account: str, reason: str
) -> DeletionReport:
    """Deliberately remove a product (file, dataset or container): its rules, its replicas'
    bytes and rows; the DID rows stay with ``deleted_at``. A file that also belongs to a
    live collection outside the deleted one is kept (and listed in ``kept``). Only for the
    archive manager or an admin (``check_may_delete``)."""
    if not reason or not reason.strip():
        raise InvalidInput("a deletion needs a reason (--reason): it is the preservation record")

    def txn(session: Session) -> tuple[list[int], int, list[int], list[str]]:
        check_may_delete(session, account, did.scope)
        root = did_repo.get_did(session, did)
        if root.deleted_at is not None:
            raise NotFound(f"{did} was already deleted on {root.deleted_at:%Y-%m-%d %H:%M}")
        files, collections = _descendants(session, root)
        doomed = set(files) | set(collections)
        kept: list[str] = []
        if collections:
            shared = session.execute(
                select(AttachmentRow.child_id, DIDRow.scope, DIDRow.name)
                .join(DIDRow, DIDRow.id == AttachmentRow.parent_id)
                .where(
                    AttachmentRow.child_id.in_(files),
                    AttachmentRow.parent_id.not_in(list(doomed)),
                    DIDRow.deleted_at.is_(None),
                )
            ).all()
            keep = {child for child, _s, _n in shared}
            kept = sorted({f"{s}:{n}" for _c, s, n in shared})
            files = [f for f in files if f not in keep]
        rules = list(
            session.scalars(select(RuleRow).where(RuleRow.did_id.in_([*files, *collections])))
        )
        locked = sorted(r.id for r in rules if r.locked)
        if locked:
            raise Conflict(
                f"{did} is held by locked rule(s) {', '.join(map(str, locked))}: unlock them "
                "first (dpps rule update ID --unlock)"
            )
        for rule in rules:
            remove_rule(session, rule, account=account, reason=f"deletion of {did}: {reason}")
        drop_file_locks(session, files)
        replica_ids = list(
            session.scalars(select(ReplicaRow.id).where(ReplicaRow.did_id.in_(files)))
        )
        mark_being_deleted(session, replica_ids, account=account, reason=reason, ignore_locks=True)
        tombstone_files(
            session, [*files, *collections], account=account, action="did.delete", reason=reason
        )
        replication.bump_rules(session, files)  # rules of other collections see them go
        return files, len(rules), replica_ids, kept

    # Retried as a whole when PostgreSQL breaks a deadlock with a daemon.
    files, rules_removed, replica_ids, kept = write(factory, txn)
    purged, errors = purge(factory, config, replica_ids, account=account, reason=reason)
    return DeletionReport(
        did=str(did),
        reason=reason,
        files=len(files),
        rules_removed=rules_removed,
        replicas_deleted=purged,
        replicas_pending=len(replica_ids) - purged,
        kept=kept,
        errors=errors,
    )


def set_lifetime(
    session: Session, row: DIDRow, expires_at: dt.datetime | None, *, account: str, reason: str
) -> int:
    """Set (or clear) the end of life of a DID and of every file under it; returns files."""
    files, collections = _descendants(session, row)
    ids = [*files, *collections]
    for chunk in _chunks(ids):
        session.execute(
            update(DIDRow)
            .where(DIDRow.id.in_(chunk))
            .values(expires_at=expires_at, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    events.record(
        session,
        account=account,
        action="did.lifetime",
        did_id=row.id,
        reason=reason,
        details={
            "expires_at": expires_at.isoformat() if expires_at else None,
            "files": len(files),
        },
    )
    return len(files)
