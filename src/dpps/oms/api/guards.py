"""Authorisation facts that need the archive: a DID's scope, whether it holds raw data.

The role matrix (``dpps.core.authz``) says which actions a role may take; some actions depend
on what they touch: a rule on a dataset is a rule on raw data if any file below it is DL0.
"""

from __future__ import annotations

from dpps.bdms.archive import Archive
from dpps.core.authz import Action, Principal, require, rule_action


def require_rule_write(archive: Archive, who: Principal, did: str) -> None:
    """Rules need ``rule.write`` - or ``rule.write.dl0`` on raw data - and the DID's scope."""
    parsed = archive.did(did)
    require(who, Action.READ)
    require(who, rule_action(archive.holds_raw_data(parsed)), scopes=[parsed.scope])


def require_did_write(archive: Archive, who: Principal, did: str, action: Action) -> None:
    require(who, action, scopes=[archive.did(did).scope])
