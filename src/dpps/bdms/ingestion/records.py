"""What the ingestion queue and the catalog say to each other: a batch and its results.

The queue inspects files at the telescope site; the catalog registers them. The
``IngestLedger`` is the seam: ``CatalogIngestLedger`` (``dpps.bdms.ingestion.ledger``) writes
the catalog in this process, ``RemoteIngestLedger`` (``dpps.client.agent``) asks the central
API, so a site 150 ms from the catalog spends one request per batch of files instead of
several statements per file. No SQLAlchemy here: the client carries these records, and files
travel as the fields of ``dpps.catalog.dids.NewFile``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class IngestBatch:
    """One batch of inspected files to register in place on ``rse``.

    ``files``: (path relative to the landing area, the NewFile's fields); each file's dataset
    is the directory of its name, created on first use with the rules of ``policy`` and
    attached to containers up to ``lfn_prefix``. ``report_conflicts``: the relative paths
    whose conflict (registered before with other content) the catalog should record as an
    event (once per queue process). ``quarantined``: quarantine records (fields) to record as
    events, each with whether the file was recovered from an earlier run (then recorded only
    if no event exists yet).
    """

    scope: str
    lfn_prefix: str
    policy: str
    rse: str
    files: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    report_conflicts: list[str] = field(default_factory=list)
    quarantined: list[tuple[dict[str, Any], bool]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class IngestResult:
    rel: str
    lfn: str
    status: Literal["registered", "present", "conflict", "error"]
    message: str = ""
    error_type: str = ""
    bytes: int | None = None


class IngestLedger(Protocol):
    """The catalog as the ingestion queue needs it, each call one transaction (``stop`` cuts
    a retry's pause short)."""

    def rse_id(self, rse: str) -> int: ...

    def present(
        self, scope: str, names: Sequence[str], stop: threading.Event | None = None
    ) -> set[str]: ...

    def register(
        self, batch: IngestBatch, stop: threading.Event | None = None
    ) -> list[IngestResult]: ...


def batch_to_wire(batch: IngestBatch) -> dict[str, Any]:
    return asdict(batch)


def batch_from_wire(data: Mapping[str, Any]) -> IngestBatch:
    return IngestBatch(
        scope=str(data["scope"]),
        lfn_prefix=str(data["lfn_prefix"]),
        policy=str(data["policy"]),
        rse=str(data["rse"]),
        files=[(str(rel), dict(fields)) for rel, fields in data.get("files", [])],
        report_conflicts=[str(r) for r in data.get("report_conflicts", [])],
        quarantined=[(dict(rec), bool(rec_ok)) for rec, rec_ok in data.get("quarantined", [])],
    )


def result_to_wire(result: IngestResult) -> dict[str, Any]:
    return asdict(result)


def result_from_wire(data: Mapping[str, Any]) -> IngestResult:
    status = data["status"]
    if status not in ("registered", "present", "conflict", "error"):
        raise ValueError(f"unknown registration status {status!r}")
    return IngestResult(
        rel=str(data["rel"]),
        lfn=str(data["lfn"]),
        status=status,
        message=str(data.get("message", "")),
        error_type=str(data.get("error_type", "")),
        bytes=None if data.get("bytes") is None else int(data["bytes"]),
    )
