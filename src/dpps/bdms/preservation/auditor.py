"""Fixity audits (UC-110-1.7): re-read replicas, mark the damaged ones BAD, raise lost files.

Bit rot, a wrong deletion by hand or a failing disk are silent until somebody reads the bytes,
so the auditor reads them on a schedule: the replicas verified longest ago first (never-checked
ones before all others), a bounded number per pass and optionally at a bounded rate, so audits
never starve users and transfers of bandwidth. A replica whose file is gone or whose size or
checksums differ from the catalog becomes BAD with an event; the rule evaluator then repairs it
from a good copy. A file left with no AVAILABLE replica is lost: an alarm (a ``file.lost``
event, the ``files_lost`` counter, a line in ``dpps health``) that must never fire in practice.

A storage element that cannot be reached is not evidence of damage: its replicas are skipped
(and counted) without a state change. Audits only read, so two auditors checking the same
replica do no harm; instances split the replicas by id anyway (``ctx.slot``) to share work.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.preservation.records import AuditLedger, AuditTarget
from dpps.bdms.records import AuditReport, BadReplica
from dpps.bdms.states import replicas as replica_states
from dpps.catalog.context import CatalogContext, served
from dpps.catalog.engine import write
from dpps.catalog.models import DIDRow, ReplicaRow, RSERow
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.daemon import Daemon, DaemonContext, WorkerSlot
from dpps.core.errors import DppsError, NotFound, Unavailable
from dpps.core.states import ReplicaState, RSEKind
from dpps.storage.rse import StorageElement

log = logging.getLogger("dpps.auditor")

DAEMON = "auditor"
#: Replicas loaded and written per catalog transaction.
CHUNK = 200

#: Process-wide counters (exported as metrics by the operations layer).
METRICS: Counter[str] = Counter()

#: An RSE (by URL) that could not be reached is left alone this long (s) by the daemon.
UNREACHABLE_BACKOFF_S = 60.0
#: The daemon's memory of unreachable RSEs (per process: URL -> (monotonic until, reason)).
_DAEMON_BACKOFF: dict[str, tuple[float, str]] = {}


def _unreachable(backoff: dict[str, tuple[float, str]], url: str) -> str | None:
    """Why ``url`` is being left alone, or None when it may be tried."""
    entry = backoff.get(url)
    if entry is None:
        return None
    if time.monotonic() >= entry[0]:
        del backoff[url]
        return None
    return entry[1]


def plan(
    session: Session,
    config: Config,
    *,
    rse: str | None = None,
    limit: int | None = None,
    due_before: dt.datetime | None = None,
    slot: WorkerSlot | None = None,
) -> list[int]:
    """Replica ids to audit, longest unverified first."""
    names = [
        name
        for name, cfg in config.rses.items()
        if (rse is None or name == rse)
        and (config.auditor.include_tape or cfg.kind != RSEKind.TAPE)
        and (rse is not None or not _unreachable(_DAEMON_BACKOFF, config.rse_url(name)))
    ]
    if rse is not None and rse not in config.rses:
        raise NotFound(f"unknown RSE {rse!r} (known: {', '.join(sorted(config.rses))})")
    stmt = (
        select(ReplicaRow.id)
        .join(RSERow, RSERow.id == ReplicaRow.rse_id)
        .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
        .where(
            ReplicaRow.state == ReplicaState.AVAILABLE.value,
            RSERow.available.is_(True),
            RSERow.name.in_(names),
            DIDRow.deleted_at.is_(None),
        )
    )
    if due_before is not None:
        stmt = stmt.where(
            (ReplicaRow.last_verified_at.is_(None)) | (ReplicaRow.last_verified_at < due_before)
        )
    if slot is not None and slot.total > 1:
        stmt = stmt.where(ReplicaRow.id % slot.total == slot.number)
    stmt = stmt.order_by(ReplicaRow.last_verified_at.asc().nulls_first(), ReplicaRow.id)
    return list(session.scalars(stmt.limit(limit)))


def targets(session: Session, ids: Sequence[int]) -> list[AuditTarget]:
    """The replicas ``ids`` still AVAILABLE, with what the catalog says their bytes are."""
    rows = session.execute(
        select(ReplicaRow, DIDRow, RSERow.name)
        .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
        .join(RSERow, RSERow.id == ReplicaRow.rse_id)
        .where(ReplicaRow.id.in_(list(ids)), ReplicaRow.state == ReplicaState.AVAILABLE.value)
        .order_by(ReplicaRow.id)
    )
    out = []
    for rep, did, rse_name in rows:
        expected = {"adler32": did.adler32 or ""}
        if did.blake3:
            expected["blake3"] = did.blake3
        out.append(
            AuditTarget(
                rep.id,
                did.id,
                f"{did.scope}:{did.name}",
                rep.rse_id,
                rse_name,
                rep.path,
                did.bytes,
                expected,
            )
        )
    return out


def verify(storage: StorageElement, target: AuditTarget) -> tuple[str | None, int]:
    """(None, bytes read) if the replica is intact, else (why it is BAD, bytes read).

    Unavailable propagates: an unreachable store proves nothing about the bytes.
    """
    try:
        size, digests = storage.checksum(target.path, tuple(target.expected))
    except NotFound:
        if not storage.root_exists():  # unmounted: says nothing about this one file
            raise Unavailable(f"RSE {storage.name}: its root {storage.root} is missing") from None
        return "missing: the file is not on the storage element", 0
    if target.bytes is not None and size != target.bytes:
        return f"size mismatch: {size} bytes on storage, {target.bytes} in the catalog", size
    wrong = [n for n in target.expected if digests.get(n, "").lower() != target.expected[n]]
    if wrong:
        detail = ", ".join(f"{n} {digests[n]} (catalog {target.expected[n]})" for n in wrong)
        return f"checksum mismatch: {detail}", size
    return None, size


def audit(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    ids: Sequence[int],
    *,
    bytes_per_s: float | None = None,
    progress: Callable[[int], None] | None = None,
    backoff: dict[str, tuple[float, str]] | None = None,
) -> AuditReport:
    """Verify the replicas ``ids``; write outcomes chunk by chunk (short transactions).

    Once an RSE is found unreachable its other replicas are skipped, for this call or, with
    ``backoff`` (the daemon's memory), for ``UNREACHABLE_BACKOFF_S``.
    """

    def chunks() -> Iterator[list[AuditTarget]]:
        for start in range(0, len(ids), CHUNK):
            with factory() as session:
                yield targets(session, ids[start : start + CHUNK])

    def record(verified: list[int], damaged: list[tuple[AuditTarget, str]]) -> list[str]:
        return _record(factory, ctx.name, verified, damaged)

    return check(
        ctx, config, chunks(), record, bytes_per_s=bytes_per_s, progress=progress, backoff=backoff
    )


#: Stamps a chunk's intact replicas, declares its damaged ones BAD: the files now lost.
Record = Callable[[list[int], list[tuple[AuditTarget, str]]], list[str]]


def check(
    ctx: DaemonContext,
    config: Config,
    chunks: Iterable[list[AuditTarget]],
    record: Record,
    *,
    bytes_per_s: float | None = None,
    progress: Callable[[int], None] | None = None,
    backoff: dict[str, tuple[float, str]] | None = None,
) -> AuditReport:
    """Read the replicas of ``chunks`` from their storage and ``record`` each chunk's outcome:
    the auditor's work wherever its catalog is (``audit``, or a site's ``SiteAuditor``)."""
    started = time.monotonic()
    backoff = {} if backoff is None else backoff
    urls = {name: config.rse_url(name) for name in config.rses}
    storages: dict[str, StorageElement] = {}
    good = skipped = nbytes = 0
    bad: list[BadReplica] = []
    lost: list[str] = []
    errors: list[str] = []
    examined = 0
    for chunk in chunks:
        if ctx.stopping:
            break
        verified: list[int] = []
        damaged: list[tuple[AuditTarget, str]] = []
        for target in chunk:
            if ctx.stopping:
                break
            examined += 1
            why = _unreachable(backoff, urls.get(target.rse, target.rse))
            if why is not None:
                skipped += 1
                note = f"{target.rse}: skipped, unreachable moments ago ({why})"
                if note not in errors:
                    errors.append(note)
                continue
            try:
                storage = storages.get(target.rse) or StorageElement.from_config(
                    target.rse, config
                )
                storages[target.rse] = storage
                reason, size = verify(storage, target)
            except DppsError as exc:
                skipped += 1
                ctx.errors[type(exc).__name__] += 1
                errors.append(f"{target.rse}:{target.path}: {exc}")
                if isinstance(exc, Unavailable):  # spare the rest of its replicas for a while
                    until = time.monotonic() + UNREACHABLE_BACKOFF_S
                    backoff[urls.get(target.rse, target.rse)] = (until, str(exc))
                reason, size = None, 0
            else:
                if reason:
                    damaged.append((target, reason))
                else:
                    verified.append(target.replica_id)
            nbytes += size
            if progress is not None:
                progress(1)
            if bytes_per_s:
                ahead = nbytes / bytes_per_s - (time.monotonic() - started)
                if ahead > 0:
                    ctx.stop.wait(ahead)
        newly_lost = record(verified, damaged) if verified or damaged else []
        good += len(verified)
        bad += [BadReplica(t.did, t.rse, t.path, why) for t, why in damaged]
        lost += newly_lost
    METRICS["replicas_verified"] += good
    METRICS["replicas_bad"] += len(bad)
    METRICS["files_lost"] += len(lost)
    METRICS["replicas_skipped"] += skipped
    return AuditReport(
        examined=examined,
        good=good,
        bad=bad,
        lost=lost,
        skipped=skipped,
        bytes=nbytes,
        seconds=time.monotonic() - started,
        errors=errors,
    )


def _record(
    factory: sessionmaker[Session],
    account: str,
    verified: list[int],
    damaged: list[tuple[AuditTarget, str]],
) -> list[str]:
    """Stamp the good replicas, mark the damaged ones BAD; returns the files now lost."""
    if not verified and not damaged:
        return []
    # Retried as a whole when PostgreSQL breaks a deadlock with an evaluator or a transfer.
    return write(factory, lambda session: _record_in(session, account, verified, damaged))


def _record_in(
    session: Session, account: str, verified: list[int], damaged: list[tuple[AuditTarget, str]]
) -> list[str]:
    now = utcnow()
    if verified:
        session.execute(
            update(ReplicaRow)
            .where(ReplicaRow.id.in_(verified))
            .values(last_verified_at=now)
            .execution_options(synchronize_session=False)
        )
    declared = replica_states.declare_bad(
        session,
        [
            replica_states.Damaged(
                target.did_id,
                target.rse_id,
                f"audit: {reason}",
                rse=target.rse,
                did=target.did,
                details={"path": target.path},
            )
            for target, reason in damaged
        ],
        account=account,
        lost_reason="no AVAILABLE replica left after an audit",
        now=now,
        verified=True,
    )  # replicas deleted or changed meanwhile are skipped: not ours to judge
    lost = [d.did or str(d.did_id) for d in declared.lost]
    return lost


def one_pass(ctx: DaemonContext, factory: sessionmaker[Session], config: Config) -> int:
    """One scheduled pass: the replicas due for re-verification, oldest first, bounded (the
    ``Auditor`` daemon's work)."""
    due = utcnow() - dt.timedelta(days=config.auditor.interval_days)
    with factory() as session:
        ids = plan(
            session, config, limit=config.auditor.files_per_pass, due_before=due, slot=ctx.slot
        )
    if not ids:
        return 0
    report = audit(
        ctx, factory, config, ids, bytes_per_s=config.auditor.bytes_per_s, backoff=_DAEMON_BACKOFF
    )
    if report.bad:
        log.warning("audit: %d BAD replica(s), %d lost file(s)", len(report.bad), len(report.lost))
    return report.good + len(report.bad)  # skipped replicas are no progress: back off


def claim(
    session: Session, config: Config, rses: frozenset[str], slot: WorkerSlot
) -> list[AuditTarget]:
    """A pass's replicas of ``rses`` due for re-reading (what the API answers a site's
    auditor that reaches the catalog through it)."""
    due = utcnow() - dt.timedelta(days=config.auditor.interval_days)
    ids = plan(
        session,
        served(config, rses),
        limit=config.auditor.files_per_pass,
        due_before=due,
        slot=slot,
    )
    return targets(session, ids)


def record_reported(
    session: Session,
    account: str,
    rses: frozenset[str],
    verified: Sequence[int],
    damaged: Sequence[tuple[int, str]],
) -> list[str]:
    """A site auditor's report, in the caller's transaction: only replicas still AVAILABLE on
    the reporting site's RSEs count, with the catalog's own idea of what they are."""
    reasons = dict(damaged)
    known = {
        t.replica_id: t for t in targets(session, sorted({*verified, *reasons})) if t.rse in rses
    }
    return _record_in(
        session,
        account,
        [i for i in verified if i in known and i not in reasons],
        [(known[i], why) for i, why in reasons.items() if i in known],
    )


class SiteAuditor(Daemon):
    """A site's auditor whose catalog is the central API (``dpps daemon auditor --site X`` in
    a workspace whose ``catalog.url`` is the API): a claim of the replicas due, the reading
    here, one report per chunk."""

    def __init__(self, config: Config, ledger: AuditLedger, rses: frozenset[str]) -> None:
        self.config = served(config, rses)
        self.ledger = ledger

    def run_once(self, ctx: DaemonContext) -> int:
        due = self.ledger.claim(ctx.instance, (ctx.slot.number, ctx.slot.total))
        if not due:
            return 0

        def record(verified: list[int], damaged: list[tuple[AuditTarget, str]]) -> list[str]:
            return self.ledger.record(verified, [(t.replica_id, why) for t, why in damaged])

        chunks = [due[i : i + CHUNK] for i in range(0, len(due), CHUNK)]
        report = check(
            ctx,
            self.config,
            chunks,
            record,
            bytes_per_s=self.config.auditor.bytes_per_s,
            backoff=_DAEMON_BACKOFF,
        )
        return report.good + len(report.bad)


class Auditor(Daemon):
    """Audit passes on the archive's catalog (``dpps daemon auditor``)."""

    def __init__(self, catalog: CatalogContext) -> None:
        self.catalog = catalog
        # A site's process (--site/--rses) audits only its own RSEs: the others are
        # not in the configuration it works from.
        self.config = served(catalog.config, catalog.rses)

    def run_once(self, ctx: DaemonContext) -> int:
        return one_pass(ctx, self.catalog.sessions, self.config)
