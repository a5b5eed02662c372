"""``archive.replication`` over REST: the rules ``dpps rule list|show|delete`` work on.

The server answers ``GET /rules/{id}/details`` with the library's own ``RuleDetails``; rule
lists and deletions come back as ``RuleOut`` and are turned into the same ``RuleInfo`` the
library returns, in the same order (oldest first), so the remote CLI prints what the local
one does. Kept apart from ``client.py`` so each module keeps to one job.
"""

from __future__ import annotations

from typing import Any

from dpps.bdms.replication import rule_state
from dpps.bdms.types import RuleDetails, RuleInfo
from dpps.core.identifiers import DID
from dpps.oms.client_views import Transport, load, unsupported

RULES = "/api/v1/rules"
PAGE = 1000


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
    """``Replication``'s rule methods over REST (the server checks who may delete)."""

    def __init__(self, remote: Transport) -> None:
        self.remote = remote

    def list_rules(
        self, *, state: str | None = None, did: str | DID | None = None, limit: int = 1000
    ) -> list[RuleInfo]:
        params: dict[str, Any] = {"order": "oldest"}
        if state is not None:
            params["state"] = rule_state(state).value  # the library's check and message
        if did is not None:
            params["did"] = str(did)
        out: list[RuleInfo] = []
        while len(out) < limit:
            want = min(PAGE, limit - len(out))
            page = {**params, "limit": want, "offset": len(out)}
            items = self.remote._json("GET", RULES, params=page)["items"]
            out.extend(rule_info(i) for i in items)
            if len(items) < want:
                break
        return out

    def get_rule(self, rule_id: int, *, problems: int = 10) -> RuleDetails:
        data = self.remote._json(
            "GET", f"{RULES}/{int(rule_id)}/details", params={"problems": problems}
        )
        return load(RuleDetails, data)

    def delete_rule(self, rule_id: int, *, reason: str) -> RuleInfo:
        """What the rule was; the server records the deletion under the token's account."""
        data = self.remote._json("DELETE", f"{RULES}/{int(rule_id)}", params={"reason": reason})
        return rule_info(data)

    def __getattr__(self, name: str) -> Any:
        return unsupported(f"replication.{name}")
