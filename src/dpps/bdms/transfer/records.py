"""What a transfer agent and the catalog say to each other: jobs, outcomes, and the ledger.

A transfer agent copies; the catalog decides what to copy and records what happened. The
``TransferLedger`` is the seam between the two: ``CatalogLedger``
(``dpps.bdms.transfer.ledger``) writes the catalog in this process, ``RemoteLedger``
(``dpps.client.agent``) asks the central API, so a site's agent across a long-haul link costs
one request per claimed batch and one per batch of outcomes instead of a dozen SQL statements
each. This module imports no SQLAlchemy, so the client can carry these records over the wire.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed copy, with everything the worker thread needs (no catalog access)."""

    transfer_id: int
    did_id: int
    label: str
    source_rse: str
    source_rse_id: int
    source_path: str
    dest_rse: str
    dest_rse_id: int
    dest_path: str
    replica_id: int
    expected: dict[str, str]
    bytes: int
    attempts: int
    max_attempts: int
    redo: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    job: Job
    status: Literal["done", "failed", "interrupted"]
    error: str | None = None
    bad_source: bool = False
    method: str = ""
    seconds: float = 0.0
    unsynced_dir: str | None = None


@dataclass
class Recorded:
    done: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0
    #: rules with locks on the files of these outcomes: to be settled (``settle_rule_ids``)
    rules: set[int] = field(default_factory=set)


class TransferLedger(Protocol):
    """The catalog as a transfer agent needs it: four calls, each one transaction.

    ``owner`` is the agent's instance id (its leases); ``claim`` leases up to ``limit`` due
    transfers into the agent's RSEs, ``record`` moves transfers, replicas, locks and rules on
    after their copies (outcomes of leases the agent lost are dropped and counted ``lost``),
    ``renew`` extends the leases of copies still running and ``settle`` checks rules whose
    copies completed for OK.
    """

    def claim(self, owner: str, limit: int) -> list[Job]: ...

    def record(self, owner: str, outcomes: Sequence[Outcome]) -> Recorded: ...

    def renew(self, owner: str, ids: Sequence[int]) -> None: ...

    def settle(self, rule_ids: set[int]) -> None: ...


# -- on the wire (JSON) -------------------------------------------------------------------------
_JOB_FIELDS = frozenset(f.name for f in fields(Job))


def job_to_wire(job: Job) -> dict[str, Any]:
    return asdict(job)


def job_from_wire(data: Mapping[str, Any]) -> Job:
    """A job from its JSON object; exactly the job's fields, no more, no fewer."""
    missing, extra = _JOB_FIELDS - data.keys(), data.keys() - _JOB_FIELDS
    if missing or extra:
        raise ValueError(f"a transfer job needs {sorted(missing)}, has unknown {sorted(extra)}")
    return Job(**{**data, "expected": dict(data["expected"])})


def outcome_to_wire(outcome: Outcome) -> dict[str, Any]:
    """The outcome without ``unsynced_dir``: the agent fsyncs its own directories before it
    reports, and a path on the agent's disk means nothing to the catalog."""
    return {
        "job": job_to_wire(outcome.job),
        "status": outcome.status,
        "error": outcome.error,
        "bad_source": outcome.bad_source,
        "method": outcome.method,
        "seconds": outcome.seconds,
    }


def outcome_from_wire(data: Mapping[str, Any]) -> Outcome:
    status = data["status"]
    if status not in ("done", "failed", "interrupted"):
        raise ValueError(f"unknown transfer outcome {status!r}")
    return Outcome(
        job_from_wire(data["job"]),
        status,
        error=data.get("error"),
        bad_source=bool(data.get("bad_source", False)),
        method=str(data.get("method", "")),
        seconds=float(data.get("seconds", 0.0)),
    )


def recorded_to_wire(summary: Recorded) -> dict[str, Any]:
    return {**asdict(summary), "rules": sorted(summary.rules)}


def recorded_from_wire(data: Mapping[str, Any]) -> Recorded:
    return Recorded(
        done=int(data["done"]),
        retried=int(data["retried"]),
        failed=int(data["failed"]),
        released=int(data["released"]),
        lost=int(data["lost"]),
        rules={int(r) for r in data["rules"]},
    )
