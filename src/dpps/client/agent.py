"""Site processes reaching the catalog through the central API.

A workspace may name the API as its catalog (``catalog: {url: https://central:8000}``); its
transfer agent, ingestion queue, reaper, auditor and stager then speak to ``/api/v1/agents``, each
through the small protocol its daemon talks to the catalog with:

* ``RemoteLedger``, the ``TransferLedger`` (``dpps.bdms.transfer.records``): a claimed batch
  costs one request and its outcomes one more (the server settles their rules in the same
  request);
* ``RemoteIngestLedger``, the ``IngestLedger`` (``dpps.bdms.ingestion.records``): a batch of
  new files costs one request;
* ``RemoteReaperLedger``, the ``ReaperLedger`` (``dpps.bdms.preservation.records``): a pass
  costs a claim of what to delete and a report of what went;
* ``RemoteAuditLedger``, the ``AuditLedger`` (same module): a pass costs a claim of the
  replicas due and a report per chunk of them read;
* ``RemoteStageLedger``, the ``StageLedger`` (``dpps.bdms.staging.records``): a pass costs a
  claim of the due stage requests and expired buffer copies, and a report.

A site 150 ms from the catalog spends those round trips per batch instead of several SQL
statements per file. ``RemoteHeartbeats`` keeps the processes visible to ``dpps health`` and
to their peers' share of the work.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dpps.bdms.ingestion.records import (
    IngestBatch,
    IngestResult,
    batch_to_wire,
    result_from_wire,
)
from dpps.bdms.preservation.records import (
    AuditTarget,
    Doomed,
    doomed_from_wire,
    doomed_to_wire,
    target_from_wire,
)
from dpps.bdms.staging import records as staging
from dpps.bdms.staging.records import Expiry, StageJob, StageOutcome
from dpps.bdms.transfer.records import (
    Job,
    Outcome,
    Recorded,
    job_from_wire,
    outcome_to_wire,
    recorded_from_wire,
)
from dpps.client.archive import ENV_TOKEN, RemoteArchive
from dpps.core.config import Config
from dpps.core.daemon import WorkerSlot
from dpps.core.errors import ConfigError

#: An agent's requests are small: a dead link must fail one within a minute, not five.
TIMEOUT_S = 60.0


def api_catalog(config: Config) -> str | None:
    """The API URL when this workspace reaches its catalog through ``dpps serve``, else None."""
    url = config.catalog.url
    return url if url.startswith(("http://", "https://")) else None


def connect(config: Config, environ: Mapping[str, str] | None = None) -> RemoteArchive:
    """The central API named by the workspace's ``catalog.url``, with the agent's token from
    ``$DPPS_TOKEN`` or the file ``catalog.token_file`` names."""
    url = api_catalog(config)
    if url is None:
        raise ConfigError(f"catalog.url {config.catalog.url!r} is a database, not the API")
    env = os.environ if environ is None else environ
    token = env.get(ENV_TOKEN, "")
    if not token and config.catalog.token_file:
        path = Path(config.catalog.token_file)
        if not path.is_absolute():
            path = config.workspace / path
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"catalog.token_file: cannot read {path}: {exc}") from None
    if not token:
        raise ConfigError(
            f"catalog.url is the API at {url}: give the agent a site-agent token in "
            f"${ENV_TOKEN} or catalog.token_file ('dpps token create ACCOUNT' on the server)"
        )
    return RemoteArchive(url, token, timeout=TIMEOUT_S)


class RemoteLedger:
    """``TransferLedger`` over the API: claims into ``rses`` only."""

    def __init__(self, remote: RemoteArchive, rses: frozenset[str]) -> None:
        self.remote = remote
        self.rses = sorted(rses)

    def claim(self, owner: str, limit: int) -> list[Job]:
        body = {"instance": owner, "limit": limit, "rses": self.rses}
        data = self.remote._json("POST", "/api/v1/agents/transfers/claim", json=body)
        return [job_from_wire(j) for j in data["jobs"]]

    def record(self, owner: str, outcomes: Sequence[Outcome]) -> Recorded:
        body = {"instance": owner, "outcomes": [outcome_to_wire(o) for o in outcomes]}
        data = self.remote._json("POST", "/api/v1/agents/transfers/report", json=body)
        return recorded_from_wire(data)

    def renew(self, owner: str, ids: Sequence[int]) -> None:
        if ids:
            body = {"instance": owner, "renew": list(ids)}
            self.remote._json("POST", "/api/v1/agents/transfers/report", json=body)

    def settle(self, rule_ids: set[int]) -> None:
        """Nothing to do: the server settled them when their outcomes were reported."""


class RemoteIngestLedger:
    """``IngestLedger`` over the API."""

    def __init__(self, remote: RemoteArchive) -> None:
        self.remote = remote

    def rse_id(self, rse: str) -> int:
        """0: the server places a batch's replicas on the RSE it knows by the batch's name."""
        return 0

    def present(
        self, scope: str, names: Sequence[str], stop: threading.Event | None = None
    ) -> set[str]:
        body = {"scope": scope, "names": list(names)}
        data = self.remote._json("POST", "/api/v1/agents/ingest/present", json=body)
        return set(data["names"])

    def register(
        self, batch: IngestBatch, stop: threading.Event | None = None
    ) -> list[IngestResult]:
        body = {"batch": batch_to_wire(batch)}
        data = self.remote._json("POST", "/api/v1/agents/ingest/register", json=body)
        return [result_from_wire(r) for r in data["results"]]


class RemoteReaperLedger:
    """``ReaperLedger`` over the API: a pass costs one claim and one report."""

    def __init__(self, remote: RemoteArchive, rses: frozenset[str]) -> None:
        self.remote = remote
        self.rses = sorted(rses)

    def claim(self, owner: str, slot: tuple[int, int]) -> list[Doomed]:
        body = {"instance": owner, "rses": self.rses, "slot": list(slot)}
        data = self.remote._json("POST", "/api/v1/agents/reaper/claim", json=body)
        return [doomed_from_wire(d) for d in data["doomed"]]

    def purged(self, removed: Sequence[Doomed]) -> int:
        body = {"removed": [doomed_to_wire(d) for d in removed]}
        data = self.remote._json("POST", "/api/v1/agents/reaper/purged", json=body)
        return int(data["forgotten"])


class RemoteAuditLedger:
    """``AuditLedger`` over the API: a claim per pass, a report per chunk of replicas read."""

    def __init__(self, remote: RemoteArchive, rses: frozenset[str]) -> None:
        self.remote = remote
        self.rses = sorted(rses)

    def claim(self, owner: str, slot: tuple[int, int]) -> list[AuditTarget]:
        body = {"instance": owner, "rses": self.rses, "slot": list(slot)}
        data = self.remote._json("POST", "/api/v1/agents/auditor/claim", json=body)
        return [target_from_wire(t) for t in data["targets"]]

    def record(self, verified: Sequence[int], damaged: Sequence[tuple[int, str]]) -> list[str]:
        body = {"rses": self.rses, "verified": list(verified), "damaged": list(damaged)}
        data = self.remote._json("POST", "/api/v1/agents/auditor/report", json=body)
        return [str(d) for d in data["lost"]]


class RemoteStageLedger:
    """``StageLedger`` over the API: a pass costs one claim and one report (one more for
    each 5 s a slow tape keeps the batch's first copies from being reported)."""

    def __init__(self, remote: RemoteArchive, rses: frozenset[str]) -> None:
        self.remote = remote
        self.rses = sorted(rses)

    def claim(
        self, owner: str, tapes: Sequence[str], limit: int
    ) -> tuple[list[StageJob], list[Expiry]]:
        body = {"instance": owner, "rses": self.rses, "limit": limit}
        data = self.remote._json("POST", "/api/v1/agents/stager/claim", json=body)
        jobs = [staging.job_from_wire(j) for j in data["jobs"]]
        return jobs, [staging.expiry_from_wire(e) for e in data["expiries"]]

    def report(self, owner: str, outcomes: Sequence[StageOutcome], expired: Sequence[int]) -> None:
        body = {
            "instance": owner,
            "rses": self.rses,
            "outcomes": [staging.outcome_to_wire(o) for o in outcomes],
            "expired": list(expired),
        }
        self.remote._json("POST", "/api/v1/agents/stager/report", json=body)


class RemoteHeartbeats:
    """``Heartbeats`` over the API (``dpps.core.daemon``), at most one request per
    ``interval_s`` per instance: the runner beats before every pass, which for an ingestion
    queue polling its landing area means one request per batch; heartbeats are forgotten
    only after 60 s without one, so every 10 s says the same across the WAN."""

    def __init__(self, remote: RemoteArchive, interval_s: float = 10.0) -> None:
        self.remote = remote
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], tuple[float, WorkerSlot]] = {}

    def beat(self, daemon: str, instance: str, details: Mapping[str, Any]) -> WorkerSlot:
        now = time.monotonic()
        last = self._last.get((daemon, instance))
        if last is not None and now - last[0] < self.interval_s:
            return last[1]
        body = {"daemon": daemon, "instance": instance, "details": dict(details)}
        data = self.remote._json("POST", "/api/v1/agents/heartbeats", json=body)
        slot = WorkerSlot(int(data["number"]), int(data["total"]))
        self._last[(daemon, instance)] = (now, slot)
        return slot

    def forget(self, daemon: str, instance: str) -> None:
        self._last.pop((daemon, instance), None)
        body = {"daemon": daemon, "instance": instance, "forget": True}
        self.remote._json("POST", "/api/v1/agents/heartbeats", json=body)
