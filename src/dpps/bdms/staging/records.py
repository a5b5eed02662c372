"""What a site's stager and the catalog say to each other (no SQLAlchemy: the client carries
these).

A pass of the stager: the catalog leases the stage requests of the stager's tape RSEs whose
staging delay has passed and answers with ``StageJob`` (where the tape copy is, and what its
bytes must be) and the buffer copies due to expire (``Expiry``); the stager copies tape to its
site's buffer and removes the expired copies, then reports ``StageOutcome`` and the expiries
it carried out. Over the API a pass costs one claim and one report, whatever the number of
files (``dpps.client.agent.RemoteStageLedger``); in-process the same calls run the catalog's
transactions directly (``dpps.bdms.staging.stager.CatalogStageLedger``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

#: Outcomes of a staging copy: the copy is in the buffer; the tape replica is gone or damaged
#: (the request fails); the storage could not be reached (the request waits for the next pass).
READY, FAILED, RETRY = "READY", "FAILED", "RETRY"


@dataclass(frozen=True, slots=True)
class StageJob:
    """A leased stage request: copy ``path`` of tape RSE ``tape`` into the buffer. ``path`` is
    empty when the tape replica is gone (the request can only fail)."""

    request_id: int
    tape: str
    path: str
    expected: dict[str, str]


@dataclass(frozen=True, slots=True)
class StageOutcome:
    """What became of a ``StageJob``: ``state`` is READY (``buffer_path`` holds the copy),
    FAILED (``error``; ``bad_replica`` says why the tape copy is to be declared BAD, if it
    is) or RETRY (``error``: storage trouble, no verdict on the replica)."""

    request_id: int
    state: str
    error: str | None = None
    buffer_path: str | None = None
    bad_replica: str | None = None


@dataclass(frozen=True, slots=True)
class Expiry:
    """A leased READY request whose buffer copy has outlived its lifetime."""

    request_id: int
    buffer_path: str | None


class StageLedger(Protocol):
    """The catalog as a stager needs it. ``claim`` leases the due requests of ``tapes`` (at
    most ``limit``) and the expired buffer copies staged from them; ``report`` records the
    outcomes and marks the expiries carried out."""

    def claim(
        self, owner: str, tapes: Sequence[str], limit: int
    ) -> tuple[list[StageJob], list[Expiry]]: ...

    def report(
        self, owner: str, outcomes: Sequence[StageOutcome], expired: Sequence[int]
    ) -> None: ...


def job_to_wire(job: StageJob) -> dict[str, Any]:
    return asdict(job)


def job_from_wire(data: Mapping[str, Any]) -> StageJob:
    return StageJob(
        request_id=int(data["request_id"]),
        tape=str(data["tape"]),
        path=str(data["path"]),
        expected={str(k): str(v) for k, v in dict(data["expected"]).items()},
    )


def outcome_to_wire(outcome: StageOutcome) -> dict[str, Any]:
    return asdict(outcome)


def outcome_from_wire(data: Mapping[str, Any]) -> StageOutcome:
    state = str(data["state"])
    if state not in (READY, FAILED, RETRY):
        raise ValueError(f"state {state!r}: one of {READY}, {FAILED}, {RETRY}")

    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    return StageOutcome(
        request_id=int(data["request_id"]),
        state=state,
        error=text("error"),
        buffer_path=text("buffer_path"),
        bad_replica=text("bad_replica"),
    )


def expiry_to_wire(expiry: Expiry) -> dict[str, Any]:
    return asdict(expiry)


def expiry_from_wire(data: Mapping[str, Any]) -> Expiry:
    path = data.get("buffer_path")
    return Expiry(
        request_id=int(data["request_id"]), buffer_path=None if path is None else str(path)
    )
