"""Datasets and containers as first-class objects: create, attach, detach, close, list.

Rucio's semantics, because the observatory's archive runs on Rucio today and its users know
them: a dataset holds files, a container holds datasets and containers (never files); a closed
collection takes no attachment or detachment (what it holds is fixed, so a dataset can be cited
and a published release cannot grow); attaching may not make a cycle; attaching what is already
attached is refused as a duplicate unless the caller says to ignore duplicates; detaching what is
not attached is ``NotFound``.

Membership is what replication rules on a collection see, so every change here tells the
rules in the same transaction: attaching makes the covering rules due and reopens OK ones
(``states.rules.members_added``), detaching releases their locks on the files that left
(``states.rules.members_removed``). Core functions: they take the caller's session and never
commit (the facade is ``datasets_api.Datasets``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from dpps.bdms.metadata_values import parse_user_meta
from dpps.bdms.retrieve import did_label
from dpps.bdms.states import rules as rule_states
from dpps.catalog import attachments as attachment_repo
from dpps.catalog import dids as did_repo
from dpps.catalog import events
from dpps.catalog.models import AttachmentRow, DIDRow
from dpps.catalog.replication import covering_dids, expand_files
from dpps.core.errors import Conflict, InvalidInput, NotFound
from dpps.core.identifiers import DID
from dpps.core.states import DIDType

COLLECTIONS = frozenset({DIDType.DATASET.value, DIDType.CONTAINER.value})


def create(
    session: Session,
    did: DID,
    did_type: DIDType,
    *,
    account: str,
    meta: Mapping[str, str] | None = None,
) -> DIDRow:
    """A new, open dataset or container; a name already taken (by any kind of DID) is a
    Conflict, as Rucio's ``add-dataset`` says "already exists" (ingest's ``--dataset``
    creates on first use instead: ``registration.ensure_dataset``)."""
    if did_type.value not in COLLECTIONS:
        raise InvalidInput(f"a collection is a DATASET or a CONTAINER, not a {did_type.value}")
    if did.version is not None:
        raise InvalidInput(f"{did}: datasets and containers have no versions; drop the @v")
    columns, free = parse_user_meta(meta or {})  # the one guard on user-given values
    taken = session.scalar(
        select(DIDRow.did_type).where(DIDRow.scope == did.scope, DIDRow.name == did.name).limit(1)
    )
    if taken is not None:
        raise Conflict(f"{did} exists already (a {taken})")
    row, _created = attachment_repo.collection(
        session, did.scope, did.name, did_type, account=account
    )
    for key, value in columns.items():
        setattr(row, key, value)
    row.meta = free
    return row


def collection(session: Session, did: DID) -> DIDRow:
    """The dataset or container ``did`` names: NotFound, or InvalidInput for a file."""
    row = did_repo.get_did(session, did)
    if row.did_type not in COLLECTIONS:
        raise InvalidInput(f"{did_label(row)} is a file, not a dataset or container")
    return row


def _open(row: DIDRow, verb: str) -> None:
    if not row.is_open:
        raise Conflict(
            f"{did_label(row)} is closed: it takes no {verb} (a closed {row.did_type.lower()} "
            "holds what it held when it was closed; reopen it first if that is really meant)"
        )


def _check_kinds(parent: DIDRow, children: Sequence[DIDRow]) -> None:
    for child in children:
        if child.deleted_at is not None:
            raise Conflict(f"{did_label(child)} is deleted")
        if parent.did_type == DIDType.DATASET.value and child.did_type != DIDType.FILE.value:
            raise InvalidInput(
                f"{did_label(child)} is a {child.did_type}: a dataset holds files only "
                "(attach datasets and containers to a container)"
            )
        if parent.did_type == DIDType.CONTAINER.value and child.did_type == DIDType.FILE.value:
            raise InvalidInput(
                f"{did_label(child)} is a file: a container holds datasets and containers, "
                "not files (attach the file to a dataset)"
            )


def _check_cycles(session: Session, parent: DIDRow, children: Sequence[DIDRow]) -> None:
    """A container may not end up inside itself: refuse a child that is the parent or holds
    it somewhere below (``covering_dids`` of the parent: itself and all that hold it)."""
    nested = [c for c in children if c.did_type == DIDType.CONTAINER.value]
    if not nested:
        return
    above = covering_dids(session, [parent.id])
    for child in nested:
        if child.id in above:
            raise InvalidInput(
                f"attaching {did_label(child)} to {did_label(parent)} would make a cycle: "
                f"{did_label(parent)} is {'itself' if child.id == parent.id else 'inside it'}"
            )


def attach(
    session: Session,
    parent: DID,
    children: Sequence[DID],
    *,
    account: str,
    ignore_duplicates: bool = False,
) -> list[str]:
    """Attach ``children`` to ``parent``, all or none; returns the labels newly attached.

    Refused: a closed parent (Conflict), an unknown child (NotFound), a child of the wrong
    kind or one that would make a cycle (InvalidInput), a child already attached (Conflict,
    as Rucio's "file already exists", unless ``ignore_duplicates``: then it is skipped)."""
    if not children:
        raise InvalidInput("nothing to attach: give at least one DID")
    row = collection(session, parent)
    _open(row, "attachments")
    rows = list({r.id: r for r in (did_repo.get_did(session, c) for c in children)}.values())
    _check_kinds(row, rows)
    _check_cycles(session, row, rows)
    present = attachment_repo.members_among(session, row.id, [r.id for r in rows])
    if present and not ignore_duplicates:
        shown = ", ".join(did_label(r) for r in rows if r.id in present)
        raise Conflict(
            f"already attached to {did_label(row)}: {shown} (ignore duplicates to attach the "
            "others)"
        )
    new = [r for r in rows if r.id not in present]
    if not new:
        return []
    attachment_repo.attach(session, row.id, [r.id for r in new], bump=False)
    rule_states.members_added(session, [row.id], account=account)
    labels = [did_label(r) for r in new]
    events.record(
        session, account=account, action="did.attach", did_id=row.id, details={"dids": labels}
    )
    return labels


def detach(session: Session, parent: DID, children: Sequence[DID], *, account: str) -> list[str]:
    """Detach ``children`` from ``parent``, all or none; returns their labels.

    A closed parent is a Conflict; a child that is not attached directly to ``parent`` is
    NotFound (as Rucio). Rules covering ``parent`` release their locks on files no longer
    below them, so the reaper may delete copies nothing else keeps."""
    if not children:
        raise InvalidInput("nothing to detach: give at least one DID")
    row = collection(session, parent)
    _open(row, "detachments")
    rows = list({r.id: r for r in (did_repo.get_did(session, c) for c in children)}.values())
    present = attachment_repo.members_among(session, row.id, [r.id for r in rows])
    missing = [did_label(r) for r in rows if r.id not in present]
    if missing:
        raise NotFound(f"not attached to {did_label(row)}: {', '.join(missing)}")
    files = sorted({f for r in rows for f, _size in expand_files(session, r)})
    attachment_repo.detach(session, row.id, [r.id for r in rows])
    session.flush()
    rule_states.members_removed(session, [row.id], files, account=account)
    labels = [did_label(r) for r in rows]
    events.record(
        session, account=account, action="did.detach", did_id=row.id, details={"dids": labels}
    )
    return labels


def set_open(session: Session, did: DID, is_open: bool, *, account: str) -> DIDRow:
    """Close (or reopen) a dataset or container; asking for the state it is in changes
    nothing and records nothing."""
    row = collection(session, did)
    if row.is_open != is_open:
        row.is_open = is_open
        events.record(
            session,
            account=account,
            action=f"{row.did_type.lower()}.{'open' if is_open else 'close'}",
            did_id=row.id,
        )
    return row


def content(
    session: Session,
    did: DID,
    *,
    recursive: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[DIDRow]:
    """What a DID holds, by name: its direct members (files, datasets or containers), or,
    ``recursive``, every file below it at any depth - and a file's files are the file itself
    (as Rucio's ``list-files``), so a retrieval can expand whatever it is given. Deleted
    members are left out: nothing of them can be read (a deleted file asked for by name is
    returned, so that its retrieval fails saying why instead of vanishing)."""
    return list(session.scalars(_content(session, did, recursive).offset(offset).limit(limit)))


def count_content(session: Session, did: DID, *, recursive: bool = False) -> int:
    """How many ``content`` lists in all (a count of a large tree reads its index as far as
    the listing would: the CLI asks for it, the REST API only when asked)."""
    stmt = _content(session, did, recursive).order_by(None)
    return int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


def _content(session: Session, did: DID, recursive: bool) -> Select[DIDRow]:
    """The statement of ``content``, ordered by name and version."""
    row = did_repo.get_did(session, did)
    if row.did_type not in COLLECTIONS:
        if not recursive:
            raise InvalidInput(f"{did_label(row)} is a file: it has no content")
        return select(DIDRow).where(DIDRow.id == row.id)  # even deleted: get says why
    if recursive:
        stmt = select(DIDRow).where(
            attachment_repo.member_of(row.id), DIDRow.did_type == DIDType.FILE.value
        )
    else:
        stmt = select(DIDRow).join(AttachmentRow, AttachmentRow.child_id == DIDRow.id)
        stmt = stmt.where(AttachmentRow.parent_id == row.id)
    return stmt.where(DIDRow.deleted_at.is_(None)).order_by(DIDRow.name, DIDRow.version)


def collection_id(session: Session, did: DID) -> int:
    """The id of the collection ``did`` names (``ls --dataset``); NotFound, InvalidInput."""
    return collection(session, did).id


__all__ = [
    "COLLECTIONS",
    "attach",
    "collection",
    "collection_id",
    "content",
    "create",
    "detach",
    "set_open",
]
