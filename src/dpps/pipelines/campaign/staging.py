"""Step 3 and 6 of a campaign: stage the tape-only inputs, and release them afterwards.

Only requests this campaign created are released: a file some other reader had already
staged (or asked for) joins that reader's request, which is left alone, so clearing the
buffer never takes a copy from under someone else. Requests are told apart by their request
time: the campaign's own are those made after it started asking.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dpps.bdms.archive import Archive
from dpps.bdms.records import StageInfo, StageState
from dpps.core.errors import Unavailable

Advance = Callable[[int, int], None]


@dataclass(slots=True)
class StagingReport:
    files: int = 0
    bytes: int = 0
    #: Stage requests this campaign created (released at the end) and ones it joined.
    own_requests: list[int] = field(default_factory=list)
    joined_requests: list[int] = field(default_factory=list)
    ready: int = 0
    failed: list[str] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def stage(
    archive: Archive,
    dids: Sequence[str],
    sizes: Sequence[int],
    *,
    timeout_s: float,
    progress: Advance | None = None,
) -> StagingReport:
    """Request staging of ``dids`` (all at once, so they stage together) and wait until each
    is READY or FAILED; a stager daemon does the work, or this process when none is alive."""
    report = StagingReport(files=len(dids), bytes=sum(sizes))
    if not dids:
        return report
    started = time.monotonic()
    since = _now() - dt.timedelta(seconds=1)
    infos = archive.preservation.stage(list(dids))
    for info in infos:
        mine = info.requested_at >= since
        (report.own_requests if mine else report.joined_requests).append(info.id)
    ids = [i.id for i in infos]

    def status(_text: str) -> None:
        if progress is not None:
            done = [i for i in archive.preservation.stage_requests(ids=ids, limit=len(ids))]
            progress(sum(1 for i in done if i.state != StageState.QUEUED), len(ids))

    try:
        final = archive.preservation.stage(
            list(dids), wait=True, timeout_s=timeout_s, status=status
        )
    except Unavailable as exc:
        raise Unavailable(f"staging the campaign's inputs: {exc}") from None
    report.ready = sum(1 for i in final if i.state == StageState.READY)
    report.failed = [f"{i.did}: {i.error}" for i in final if i.state != StageState.READY]
    if progress is not None:
        progress(len(ids), len(ids))
    report.seconds = round(time.monotonic() - started, 3)
    return report


def release(archive: Archive, report: StagingReport, campaign: str) -> list[int]:
    """Release the buffer copies of the campaign's own stage requests (nothing else)."""
    if not report.own_requests:
        return []
    report.released = archive.preservation.release(
        report.own_requests, reason=f"campaign {campaign} finished with its staged inputs"
    )
    return report.released


def still_staged(archive: Archive, ids: Sequence[int]) -> list[StageInfo]:
    """Those of ``ids`` whose buffer copy is still READY (for reports and tests)."""
    if not ids:
        return []
    infos = archive.preservation.stage_requests(ids=list(ids), limit=len(ids))
    return [i for i in infos if i.state == StageState.READY]
