"""Authorisation facts that need the catalog: a DID's scope, whether it holds raw data.

The role matrix (``dpps.core.authz``) says which actions a role may take; some actions depend
on what they touch: a rule on a dataset is a rule on raw data if any file below it is DL0.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dpps.bdms.archive import Archive
from dpps.catalog import dids as did_repo
from dpps.catalog.models import AttachmentRow, DIDRow
from dpps.core.authz import Action, Principal, require, rule_action
from dpps.core.states import DataLevel


def touches_dl0(session: Session, did_id: int) -> bool:
    """True if the DID is a DL0 file or a collection with a DL0 file anywhere below it."""
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
            DIDRow.data_level == DataLevel.DL0.value,
        )
        .limit(1)
    )
    return session.scalar(stmt) is not None


def require_rule_write(archive: Archive, who: Principal, did: str) -> None:
    """Rules need ``rule.write`` - or ``rule.write.dl0`` on raw data - and the DID's scope."""
    parsed = archive.did(did)
    require(who, Action.READ)
    with archive.sessions() as session:
        row = did_repo.get_did(session, parsed)
        raw = touches_dl0(session, row.id)
    require(who, rule_action(raw), scopes=[parsed.scope])


def require_did_write(archive: Archive, who: Principal, did: str, action: Action) -> None:
    require(who, action, scopes=[archive.did(did).scope])
