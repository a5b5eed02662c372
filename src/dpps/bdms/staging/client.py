"""Reading files that only tape holds: request staging, wait for it, read from the buffer.

``dpps get`` (and the WMS through it) hands the files without a readable disk replica to
``fetch``: every stage request is made first, so the files of one call stage together rather
than one after another, and then the call waits until each is READY and reads it from the disk
buffer, verified against the catalog's checksums like any download. Without a live stager
daemon (a bare workspace, no ``dpps serve``) the waiting client does the stager's work for its
own requests, so retrieval from tape works everywhere; with one, the client only watches.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.records import StageState
from dpps.bdms.staging import stager
from dpps.bdms.types import FileResult, ReplicaInfo
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, StageRequestRow
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.daemon import DaemonContext
from dpps.core.errors import DppsError, IntegrityFailure, NotFound, Unavailable

Status = Callable[[str], None]

#: How often a waiting client looks at its requests (seconds, at most).
POLL_S = 0.5
#: How often one file may be requested again after its copy vanished or staging failed.
MAX_REQUESTS = 3


class NeedsStaging(Exception):
    """Internal signal from retrieval: this file is readable only after staging."""

    def __init__(self, pending: Pending) -> None:
        super().__init__(pending.label)
        self.pending = pending


@dataclass
class Pending:
    """A file of a ``get`` call waiting for its tape copy to reach the buffer."""

    did_id: int
    label: str
    target: Path
    expected: dict[str, str]
    size: int | None
    problems: list[str] = field(default_factory=list)
    request_id: int | None = None
    requests: int = 0
    result: FileResult | None = None


def _request(factory: sessionmaker[Session], config: Config, p: Pending, account: str) -> None:
    p.requests += 1
    with transaction(factory) as session:
        did = session.get(DIDRow, p.did_id)
        if did is None:
            raise NotFound(f"{p.label} vanished from the catalog")
        p.request_id = stager.request_stage(session, config, did, account=account).id


def _failed(p: Pending, exc: DppsError) -> FileResult:
    return FileResult(
        source=p.label,
        did=p.label,
        status="failed",
        error=str(exc),
        error_type=type(exc).__name__,
        exit_code=exc.exit_code,
    )


def fetch(
    factory: sessionmaker[Session],
    config: Config,
    pending: Sequence[Pending],
    *,
    account: str,
    overwrite: bool,
    wait: bool = True,
    timeout_s: float | None = None,
    status: Status | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FileResult]:
    """Request staging for every pending file, then (if ``wait``) read each once READY.

    Without ``wait`` a file already staged is read at once and the others come back with
    status ``staging``. A file not ready within ``timeout_s`` (default
    ``staging.wait_timeout_s``) fails with Unavailable; its request stays queued.
    """
    for p in pending:
        try:
            _request(factory, config, p, account)
        except DppsError as exc:
            p.result = _failed(p, exc)
    deadline = time.monotonic() + (timeout_s or config.staging.wait_timeout_s)
    ctx = DaemonContext(name=stager.DAEMON)
    while True:
        open_ = [p for p in pending if p.result is None]
        _read_ready(factory, config, open_, account=account, overwrite=overwrite)
        open_ = [p for p in open_ if p.result is None]
        if not open_ or not wait:
            break
        if time.monotonic() > deadline:
            for p in open_:
                p.result = _failed(
                    p,
                    Unavailable(
                        f"{p.label}: staging not finished after "
                        f"{timeout_s or config.staging.wait_timeout_s:.0f} s (request "
                        f"{p.request_id} stays queued; run the command again later)"
                    ),
                )
            break
        with factory() as session:
            alive = stager.stager_alive(session)
            rows = stager.requests_by_id(session, [p.request_id for p in open_ if p.request_id])
            infos = [stager.stage_info(session, config, r) for r in rows.values()]
        if status is not None:
            etas = [i.eta_seconds for i in infos if i.eta_seconds is not None]
            done = len(pending) - len(open_)
            status(
                f"staging from tape: {done} of {len(pending)} files ready"
                + (f", next in ~{min(etas):.0f} s" if etas else "")
                + ("" if alive else " (no stager daemon: staging here)")
            )
        if not alive and stager.one_pass(ctx, factory, config, only_ids=list(rows)):
            continue
        etas = [i.eta_seconds for i in infos if i.eta_seconds]
        time.sleep(min([POLL_S, *etas]))
    results: list[FileResult] = []
    for p in pending:
        if p.result is None:  # not waiting: the request is made, the bytes come later
            p.result = FileResult(
                source=f"stage request {p.request_id}",
                did=p.label,
                status="staging",
                bytes=p.size,
            )
        elif progress is not None:
            progress(1)
        results.append(p.result)
    return results


def _read_ready(
    factory: sessionmaker[Session],
    config: Config,
    pending: Sequence[Pending],
    *,
    account: str,
    overwrite: bool,
) -> None:
    """Read every pending file whose request is READY; re-request vanished or failed ones."""
    with factory() as session:
        rows = stager.requests_by_id(session, [p.request_id for p in pending if p.request_id])
        states = {
            rid: (r.state, r.buffer_path, r.error, stager.stage_info(session, config, r).rse)
            for rid, r in rows.items()
        }
    buffer = stager.buffer_storage(config)
    for p in pending:
        state, path, error, rse = states.get(p.request_id or -1, (None, None, None, "?"))
        if state == StageState.READY and path:
            try:
                buffer.download(
                    path, p.target, tuple(p.expected), expected=p.expected, overwrite=overwrite
                )
            except (NotFound, IntegrityFailure) as exc:  # expired or damaged meanwhile
                p.problems.append(f"staging buffer: {exc}")
                _again(factory, config, p, account, str(exc))
                continue
            except DppsError as exc:
                p.result = _failed(p, exc)
                continue
            p.result = FileResult(
                source=f"{rse}:{path} (staged)",
                did=p.label,
                status="retrieved",
                bytes=p.size,
                rse=rse,
                path=str(p.target),
            )
        elif state in (StageState.FAILED, StageState.EXPIRED):
            _again(factory, config, p, account, error or state)


def _again(
    factory: sessionmaker[Session], config: Config, p: Pending, account: str, why: str
) -> None:
    if p.requests >= MAX_REQUESTS:
        p.result = _failed(p, Unavailable(f"{p.label}: staging failed: {why}"))
        return
    try:
        _request(factory, config, p, account)
    except DppsError as exc:
        p.result = _failed(p, type(exc)(f"{exc} (staging failed before: {why})"))


def estimate(session: Session, config: Config, did_id: int, best: ReplicaInfo) -> float:
    """Seconds to read a tape-only file: its open stage request shortens the wait."""
    base = best.estimated_seconds or 0.0
    delay = config.rses[best.rse].staging_delay_s if best.rse in config.rses else 0.0
    now = utcnow()
    rows = session.scalars(
        select(StageRequestRow).where(
            StageRequestRow.did_id == did_id,
            StageRequestRow.state.in_([StageState.READY.value, StageState.QUEUED.value]),
        )
    )
    best_estimate = base
    for row in rows:
        if row.state == StageState.READY and (row.expires_at or now) > now:
            best_estimate = min(best_estimate, base - delay)
        elif row.state == StageState.QUEUED:
            due = row.requested_at + dt.timedelta(seconds=delay)
            remaining = max(0.0, (due - now).total_seconds())
            best_estimate = min(best_estimate, base - delay + remaining)
    return round(max(best_estimate, 0.0), 6)
