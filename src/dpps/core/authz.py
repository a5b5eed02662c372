"""Who may do what: the role matrix, in one table that the REST API and the CLI both consult.

Roles are capabilities, not ranks: an account holds one or more. ``admin`` is the superuser
(it may do everything, including managing accounts); among the working roles only an
``archive-manager`` may change rules on raw data (DL0), a ``data-processing-manager`` writes
products and their rules at higher data levels and runs the workload (jobs, workflows,
transformations), an ``operator`` runs the shifts (reads everything, flags data quality
through metadata, kills runaway jobs, retries failed transfers), a ``reader`` only reads,
and a ``site-agent`` is a data center's transfer agent reaching the catalog through the API
(it claims transfers into its RSEs and reports their outcomes; it reads, and writes nothing
else).

Scopes are the second axis: whatever the role, an account writes only DIDs in the scopes it
was given (``*`` means every scope). Reads are never restricted by scope.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol

from dpps.core.errors import InvalidInput, PermissionDenied
from dpps.core.identifiers import validate_scope

ALL_SCOPES: Final = "*"


class Role(StrEnum):
    ADMIN = "admin"
    ARCHIVE_MANAGER = "archive-manager"
    DATA_PROCESSING_MANAGER = "data-processing-manager"
    OPERATOR = "operator"
    READER = "reader"
    SITE_AGENT = "site-agent"


class Action(StrEnum):
    READ = "read"  # query, show, locate, download, RSEs, rules, transfers, events, reports
    DID_WRITE = "did.write"  # ingest, bulk registration, datasets
    META_WRITE = "meta.write"  # set or re-extract metadata (e.g. quality flags on shift)
    RULE_WRITE = "rule.write"  # add rules, apply policies, on DIDs that hold no DL0
    RULE_WRITE_DL0 = "rule.write.dl0"  # the same on DIDs that are or contain raw data
    ACCOUNT_READ = "account.read"  # list accounts and other accounts' tokens
    ACCOUNT_WRITE = "account.write"  # accounts, roles, scopes, other accounts' tokens
    TOKEN_OWN = "token.own"  # create, list and revoke one's own tokens
    WMS_WRITE = "wms.write"  # submit and retry jobs, workflows; add, pause, resume transformations
    WMS_KILL = "wms.kill"  # kill jobs and workflows (shifters stop runaway jobs too)
    TRANSFER_RETRY = "transfer.retry"  # queue a FAILED transfer again
    DID_DELETE = "did.delete"  # deliberate removal of a product (dpps delete), rules and replicas
    EXPORT = "export"  # write an archival information package (BagIt) on the server's disk
    STAGE = "stage"  # ask for tape-only files to be staged ahead of processing (dpps stage)
    AUDIT = "audit"  # re-read replicas now and mark damaged ones BAD (dpps audit)
    CAMPAIGN = "campaign"  # queue a reprocessing campaign (stages, runs jobs, writes products)
    AGENT = "agent"  # a site's transfer agent: claim transfers, report their outcomes, beat


_A, _AM, _DPM, _OP, _R, _SA = (
    Role.ADMIN,
    Role.ARCHIVE_MANAGER,
    Role.DATA_PROCESSING_MANAGER,
    Role.OPERATOR,
    Role.READER,
    Role.SITE_AGENT,
)

#: THE role matrix: action -> roles allowed. Read it as a table, one row per action.
MATRIX: Final[dict[Action, frozenset[Role]]] = {
    #                                admin  archive-mgr  dp-mgr  operator  reader  site-agent
    Action.READ: frozenset({_A, _AM, _DPM, _OP, _R, _SA}),
    Action.DID_WRITE: frozenset({_A, _AM, _DPM}),
    Action.META_WRITE: frozenset({_A, _AM, _DPM, _OP}),
    Action.RULE_WRITE: frozenset({_A, _AM, _DPM}),
    Action.RULE_WRITE_DL0: frozenset({_A, _AM}),
    Action.ACCOUNT_READ: frozenset({_A}),
    Action.ACCOUNT_WRITE: frozenset({_A}),
    Action.TOKEN_OWN: frozenset({_A, _AM, _DPM, _OP, _R, _SA}),
    Action.WMS_WRITE: frozenset({_A, _DPM}),
    Action.WMS_KILL: frozenset({_A, _DPM, _OP}),
    Action.TRANSFER_RETRY: frozenset({_A, _AM, _OP}),
    Action.DID_DELETE: frozenset({_A, _AM}),
    Action.EXPORT: frozenset({_A, _AM, _DPM}),
    Action.STAGE: frozenset({_A, _AM, _DPM}),
    Action.AUDIT: frozenset({_A, _AM, _OP}),
    Action.CAMPAIGN: frozenset({_A, _DPM}),
    Action.AGENT: frozenset({_A, _SA}),
}
assert set(MATRIX) == set(Action), "every action needs a row in the matrix"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated account as a request or a command sees it."""

    name: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    token_id: int | None = None

    def can(self, action: Action) -> bool:
        return bool(self.roles & MATRIX[action])

    def may_write_scope(self, scope: str) -> bool:
        return ALL_SCOPES in self.scopes or scope in self.scopes


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {text!r} (known: {known})") from None


def parse_scope(text: str) -> str:
    """A scope an account may write: a valid scope name, or ``*`` for all."""
    return text if text == ALL_SCOPES else validate_scope(text)


def require(principal: Principal, action: Action, *, scopes: Iterable[str] = ()) -> None:
    """Raise PermissionDenied unless ``principal`` may do ``action`` on DIDs in ``scopes``."""
    if not principal.can(action):
        allowed = ", ".join(sorted(MATRIX[action]))
        held = ", ".join(sorted(principal.roles)) or "no role"
        raise PermissionDenied(
            f"account {principal.name!r} ({held}) may not {action.value}: needs one of {allowed}"
        )
    outside = sorted({s for s in scopes if not principal.may_write_scope(s)})
    if outside:
        mine = ", ".join(sorted(principal.scopes)) or "none"
        raise PermissionDenied(
            f"account {principal.name!r} may not write in scope(s) {', '.join(outside)} "
            f"(its scopes: {mine})"
        )


def rule_action(touches_dl0: bool) -> Action:
    """Rules on raw data are the archive manager's: the action depends on the DID's content."""
    return Action.RULE_WRITE_DL0 if touches_dl0 else Action.RULE_WRITE


def matrix_rows() -> list[tuple[str, list[bool]]]:
    """The matrix as (action, [allowed per role in Role order]) rows, for display."""
    return [(a.value, [r in MATRIX[a] for r in Role]) for a in Action]


class AccountLike(Protocol):
    """What a stored account offers (``catalog.models.AccountRow``; core cannot import it)."""

    name: str
    roles: list[str]
    scopes: list[str]


def principal_of(row: AccountLike, token_id: int | None = None) -> Principal:
    """The principal a stored account stands for; roles this version does not know are ignored."""
    return Principal(
        row.name,
        frozenset(Role(r) for r in row.roles if r in Role.__members__.values()),
        frozenset(row.scopes),
        token_id,
    )


ROOT: Final = Principal("root", frozenset({Role.ADMIN}), frozenset({ALL_SCOPES}))
"""The catalog owner: who acts when a command opens the catalog directly (no token)."""
