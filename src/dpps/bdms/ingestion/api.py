"""``Archive.acada``: the ACADA ingestion queue as the CLI and Python users reach it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dpps.bdms.ingestion.queue import FileOutcome, IngestionQueue
from dpps.bdms.ingestion.settings import QueueSettings
from dpps.bdms.types import BulkReport, FileResult
from dpps.core.errors import (
    Conflict,
    DppsError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unavailable,
)

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive

_ERRORS: dict[str, type[DppsError]] = {
    cls.__name__: cls
    for cls in (Conflict, IntegrityFailure, InvalidInput, NotFound, PermissionDenied, Unavailable)
} | {"Bug": DppsError}


class AcadaAPI:
    """Queues over ACADA landing areas, and the one-off ingest of named landing-area files."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def queue(
        self,
        rse: str | None = None,
        *,
        landing: Path | None = None,
        workers: int | None = None,
        metrics_port: int | None = None,
        executor: str | None = None,
    ) -> IngestionQueue:
        """The ingestion queue of ``rse``'s landing area (``acada`` config section defaults);
        close it when done. Raises Conflict if another queue holds the landing area."""
        settings = QueueSettings.from_config(
            self.archive.config,
            rse=rse,
            landing=landing,
            workers=workers,
            metrics_port=metrics_port,
            executor=executor,
        )
        return IngestionQueue(self.archive.context, settings)

    def ingest(
        self, paths: Sequence[Path], rse: str | None = None, *, landing: Path | None = None
    ) -> BulkReport:
        """Run the queue's per-file logic once over ``paths`` (files in the landing area):
        registered in place with datasets and rules, or quarantined; triggers removed."""
        if not paths:
            raise InvalidInput("nothing to ingest: give at least one file")
        started = time.perf_counter()
        executor = "inline" if len(paths) == 1 else "process"
        queue = self.queue(rse, landing=landing, executor=executor)
        try:
            outcomes = queue.ingest_files(paths)
        finally:
            queue.close()
        return BulkReport(
            [_result(o, self.archive.config.default_scope) for o in outcomes],
            time.perf_counter() - started,
        )


def _result(outcome: FileOutcome, scope: str) -> FileResult:
    did = f"{scope}:{outcome.lfn}" if outcome.lfn else None
    if outcome.status in ("registered", "present"):
        return FileResult(outcome.path, did, outcome.status, bytes=outcome.bytes)
    error = _ERRORS.get(outcome.error_type, InvalidInput)
    if outcome.status == "retry":
        error = Unavailable
    message = outcome.reason
    if outcome.status == "quarantined":
        message = f"quarantined: {outcome.reason}"
    return FileResult(
        outcome.path,
        did,
        "failed",
        error=message,
        error_type=error.__name__,
        exit_code=error.exit_code,
    )
