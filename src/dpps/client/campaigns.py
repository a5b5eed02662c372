"""``RemoteCampaigns``: ``dpps campaign`` over REST.

A remote campaign is queued on the server (the campaign daemon of ``dpps serve`` runs it) and
watched by polling its record: the progress bar follows the record's phase and counts, and the
end prints the report the server stored, the same mapping a local run prints. A campaign that
stopped on an error raises that error's class, so the exit code is the local one too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

from dpps.bdms.types import Page
from dpps.client.views import NO_READ_TIMEOUT, Transport, load
from dpps.core.errors import error_from_text
from dpps.wms.states import FINAL_CAMPAIGN_STATES, CampaignState
from dpps.wms.types import CampaignInfo

PATH = "/api/v1/campaigns"
POLL_S = 1.0


class CampaignDocument(Protocol):
    """A campaign as it is sent: ``dpps.pipelines.campaign.CampaignSpec`` (the client does not
    import the pipelines: the server validates the mapping with the same class)."""

    def to_mapping(self) -> dict[str, Any]: ...


class RemoteCampaigns:
    """Plan, submit, watch and list campaigns on a dpps server."""

    def __init__(self, remote: Transport) -> None:
        self.remote = remote

    def plan(self, spec: CampaignDocument) -> dict[str, Any]:
        """The dry run's report (the server reads the whole selection: no read timeout)."""
        data: dict[str, Any] = self.remote._json(
            "POST", f"{PATH}/plan", json=spec.to_mapping(), timeout=NO_READ_TIMEOUT
        )
        return data

    def submit(self, spec: CampaignDocument) -> CampaignInfo:
        return load(CampaignInfo, self.remote._json("POST", PATH, json=spec.to_mapping()))

    def get(self, name: str) -> CampaignInfo:
        return load(CampaignInfo, self.remote._json("GET", f"{PATH}/{quote(name, safe='')}"))

    def recent(self, *, state: str | None = None, limit: int = 100) -> list[CampaignInfo]:
        return self.listing(state=state, limit=limit).items

    def listing(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page[CampaignInfo]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state is not None:
            params["state"] = state
        data = self.remote._json("GET", PATH, params=params)
        return Page(load(list[CampaignInfo], data["items"]), int(data["total"]), offset, limit)

    def wait(
        self,
        name: str,
        *,
        phase: Callable[[str], None] | None = None,
        tick: Callable[[int, int], None] | None = None,
        poll_s: float = POLL_S,
    ) -> CampaignInfo:
        """Poll until the campaign is finished; its error (no report) is raised as such."""
        shown = ""
        while True:
            info = self.get(name)
            label = info.phase
            if info.state == CampaignState.QUEUED:
                label = "queued: waiting for the campaign daemon (dpps serve)"
            if phase is not None and label != shown:
                phase(label)
                shown = label
            if tick is not None and info.total:
                tick(info.done, info.total)
            if info.state in FINAL_CAMPAIGN_STATES:
                if info.report is None and info.error:
                    raise error_from_text(info.error)
                return info
            time.sleep(poll_s)


__all__ = ["RemoteCampaigns"]
