"""What a site's reaper and auditor and the catalog say to each other (no SQLAlchemy: the
client carries these).

The reaper: the catalog marks what may go and answers with ``Doomed`` replicas; the reaper at
the replicas' site removes their bytes and reports which ones went, and the catalog then
forgets them (``dpps.bdms.preservation.deletion``). The auditor: the catalog answers with the
``AuditTarget`` replicas due for re-reading; the auditor at their site reads them and reports
which were intact and which damaged, and the catalog stamps or declares them BAD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Doomed:
    """A replica marked BEING_DELETED: where its bytes are, and why they go."""

    replica_id: int
    rse: str
    path: str
    reason: str


class ReaperLedger(Protocol):
    """The catalog as a site's reaper needs it (``dpps.client.agent.RemoteReaperLedger``):
    ``claim`` runs the catalog's side of a reaper pass for ``rses`` (lifetimes, expiry, safe
    on-site copies, tombstones, deletions a dead process left) and returns what to remove;
    ``purged`` forgets the replicas whose bytes are gone. ``slot``: this instance's share
    among its site's reapers, (number, total)."""

    def claim(self, owner: str, slot: tuple[int, int]) -> list[Doomed]: ...

    def purged(self, removed: Sequence[Doomed]) -> int: ...


@dataclass(frozen=True, slots=True)
class AuditTarget:
    """A replica to re-read, with what the catalog says its bytes are."""

    replica_id: int
    did_id: int
    did: str
    rse_id: int
    rse: str
    path: str
    bytes: int | None
    expected: dict[str, str]


class AuditLedger(Protocol):
    """The catalog as a site's auditor needs it (``dpps.client.agent.RemoteAuditLedger``):
    ``claim`` answers the replicas of the auditor's RSEs due for re-reading (longest unverified
    first, the configured number per pass); ``record`` stamps the intact ones and declares the
    damaged ones BAD (with why), returning the files left without a good copy."""

    def claim(self, owner: str, slot: tuple[int, int]) -> list[AuditTarget]: ...

    def record(self, verified: Sequence[int], damaged: Sequence[tuple[int, str]]) -> list[str]: ...


def target_to_wire(target: AuditTarget) -> dict[str, Any]:
    return asdict(target)


def target_from_wire(data: Mapping[str, Any]) -> AuditTarget:
    return AuditTarget(
        replica_id=int(data["replica_id"]),
        did_id=int(data["did_id"]),
        did=str(data["did"]),
        rse_id=int(data["rse_id"]),
        rse=str(data["rse"]),
        path=str(data["path"]),
        bytes=None if data.get("bytes") is None else int(data["bytes"]),
        expected={str(k): str(v) for k, v in dict(data["expected"]).items()},
    )


def doomed_to_wire(doomed: Doomed) -> dict[str, Any]:
    return asdict(doomed)


def doomed_from_wire(data: Mapping[str, Any]) -> Doomed:
    return Doomed(
        replica_id=int(data["replica_id"]),
        rse=str(data["rse"]),
        path=str(data["path"]),
        reason=str(data["reason"]),
    )
