"""``archive.replication`` over REST: what ``dpps rule list|show|update|delete`` and
``dpps transfer list|retry`` work on.

The server answers ``GET /rules/{id}/details`` with the library's own ``RuleDetails``; rule
lists and deletions come back as ``RuleOut`` and are turned into the same ``RuleInfo`` the
library returns, in the same order (oldest first), so the remote CLI prints what the local
one does. Kept apart from ``client.py`` so each module keeps to one job.
"""

from __future__ import annotations

from typing import Any

from dpps.bdms.records import RuleChange
from dpps.bdms.types import Page, RuleDetails, RuleInfo, TransferInfo
from dpps.client.views import Transport, load, paged_total
from dpps.core.identifiers import DID
from dpps.core.states import RuleState, TransferState, parse_state

RULES = "/api/v1/rules"
TRANSFERS = "/api/v1/transfers"
PAGE = 1000


def transfer_info(out: dict[str, Any]) -> TransferInfo:
    """A ``TransferOut`` answer as the library's ``TransferInfo``."""
    fields = (
        "id",
        "did",
        "state",
        "attempts",
        "max_attempts",
        "bytes",
        "error",
        "next_attempt_at",
        "finished_at",
    )
    return load(
        TransferInfo,
        {**{k: out[k] for k in fields}, "source": out["source_rse"], "dest": out["dest_rse"]},
    )


def rule_info(out: dict[str, Any]) -> RuleInfo:
    """A ``RuleOut`` answer as the library's ``RuleInfo`` (the REST names are longer)."""
    return load(
        RuleInfo,
        {
            **{k: v for k, v in out.items() if k not in ("rse_expression", "source_expression")},
            "rses": out["rse_expression"],
            "source": out["source_expression"],
        },
    )


class RemoteReplication:
    """``ReplicationAPI``: rules and transfers over REST (the server checks the rights)."""

    def __init__(self, remote: Transport) -> None:
        self.remote = remote

    def list_rules(
        self, *, state: str | None = None, did: str | DID | None = None, limit: int = 1000
    ) -> list[RuleInfo]:
        return self.rule_listing(state=state, did=did, limit=limit).items

    def rule_listing(
        self,
        *,
        state: str | None = None,
        did: str | DID | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> Page[RuleInfo]:
        params: dict[str, Any] = {"order": "oldest"}
        if state is not None:
            params["state"] = parse_state(RuleState, state, "rule").value  # the library's check
        if did is not None:
            params["did"] = str(did)
        items, total = paged_total(self.remote, RULES, params, limit, offset, page=PAGE)
        return Page([rule_info(i) for i in items], total, offset, limit)

    def get_rule(self, rule_id: int, *, problems: int = 10) -> RuleDetails:
        data = self.remote._json(
            "GET", f"{RULES}/{int(rule_id)}/details", params={"problems": problems}
        )
        return load(RuleDetails, data)

    def update_rule(self, rule_id: int, change: RuleChange) -> RuleInfo:
        """The rule as it is after the change (the server checks the rights of adding it)."""
        body: dict[str, Any] = {
            "priority": change.priority,
            "clear_lifetime": change.clear_lifetime,
            "suspended": change.suspended,
            "comment": change.comment,
            "locked": change.locked,
        }
        if change.lifetime is not None:
            body["lifetime_days"] = change.lifetime.total_seconds() / 86_400
        data = self.remote._json("PATCH", f"{RULES}/{int(rule_id)}", json=body)
        return rule_info(data)

    def transfers(
        self,
        *,
        rule_id: int | None = None,
        state: str | None = None,
        rse: str | None = None,
        errors_only: bool = False,
        limit: int = 100,
    ) -> list[TransferInfo]:
        """Newest change first, as the library orders them."""
        return self.transfer_listing(
            rule_id=rule_id, state=state, rse=rse, errors_only=errors_only, limit=limit
        ).items

    def transfer_listing(
        self,
        *,
        rule_id: int | None = None,
        state: str | None = None,
        rse: str | None = None,
        errors_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[TransferInfo]:
        params: dict[str, Any] = {"order": "updated", "errors": errors_only}
        if state is not None:
            params["state"] = parse_state(TransferState, state, "transfer").value
        for key, value in (("rule_id", rule_id), ("rse", rse)):
            if value is not None:
                params[key] = value
        items, total = paged_total(self.remote, TRANSFERS, params, limit, offset, page=PAGE)
        return Page([transfer_info(i) for i in items], total, offset, limit)

    def retry_transfer(self, transfer_id: int) -> TransferInfo:
        data = self.remote._json("POST", f"{TRANSFERS}/{int(transfer_id)}/retry")
        return transfer_info(data)

    def delete_rule(self, rule_id: int, *, reason: str) -> RuleInfo:
        """What the rule was; the server records the deletion under the token's account."""
        data = self.remote._json("DELETE", f"{RULES}/{int(rule_id)}", params={"reason": reason})
        return rule_info(data)
