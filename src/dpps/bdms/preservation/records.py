"""What a site's reaper and the catalog say to each other (no SQLAlchemy: the client carries
these). The catalog marks what may go and answers with ``Doomed`` replicas; the reaper at the
replicas' site removes their bytes and reports which ones went, and the catalog then forgets
them (``dpps.bdms.preservation.deletion``)."""

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


def doomed_to_wire(doomed: Doomed) -> dict[str, Any]:
    return asdict(doomed)


def doomed_from_wire(data: Mapping[str, Any]) -> Doomed:
    return Doomed(
        replica_id=int(data["replica_id"]),
        rse=str(data["rse"]),
        path=str(data["path"]),
        reason=str(data["reason"]),
    )
