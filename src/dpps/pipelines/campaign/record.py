"""A campaign with a record: what ``dpps campaign reprocess`` runs here and the campaign daemon
runs for a campaign submitted over REST.

``run_campaign`` does the work; this module keeps the campaign's row (``WMS.campaigns``) true
while it does: the runner claims the row's lease, a heartbeat thread writes the current phase
and progress (and renews the lease) about once a second, and the report or the error is stored
at the end. A runner that dies leaves an expired lease; the next claim takes over, and since a
campaign is idempotent by name it continues where the dead one stopped. A runner told to stop
(SIGTERM of ``dpps serve``) gives the campaign back at its next progress report.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from dpps.core.daemon import Daemon, DaemonContext, new_instance_id
from dpps.core.errors import Conflict, DppsError, error_text
from dpps.pipelines.campaign import jobs, selection
from dpps.pipelines.campaign.run import CampaignReport, Phase, Tick, run_campaign
from dpps.pipelines.campaign.spec import IDENTITY, CampaignSpec
from dpps.wms.api import WMS
from dpps.wms.campaigns import LEASE_S, CampaignStore
from dpps.wms.states import CampaignState
from dpps.wms.types import CampaignInfo

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive

log = logging.getLogger("dpps.campaign")

KIND = "reprocess"
#: How often the record is brought up to date while the campaign runs.
HEARTBEAT_S = 1.0


class Interrupted(Exception):
    """The runner was told to stop; the campaign goes back to the queue (not a failure)."""


def check(archive: Archive, spec: CampaignSpec) -> None:
    """What can be refused before anything is queued: tool options, the query, its DL0, and
    the models and IRF it names."""
    jobs.check_configs(spec)
    selection.check(archive, spec.query)
    for given in (spec.models, spec.irf):
        if given is not None:
            archive.show(given, events_limit=0)  # NotFound / InvalidInput name the DID


def submit(archive: Archive, spec: CampaignSpec) -> CampaignInfo:
    """Queue the campaign for the campaign daemon (or attach to it, or queue a rerun)."""
    check(archive, spec)
    return WMS(archive).campaigns.submit(spec.name, KIND, spec.to_mapping(), identity=IDENTITY)


def run_here(
    archive: Archive, spec: CampaignSpec, *, phase: Phase | None = None, tick: Tick | None = None
) -> CampaignReport:
    """Submit and run the campaign in this process (``dpps campaign reprocess``); a Conflict
    when a runner elsewhere holds it."""
    submit(archive, spec)
    owner = new_instance_id()
    if WMS(archive).campaigns.claim(owner, spec.name) is None:  # pragma: no cover - raises
        raise Conflict(f"campaign {spec.name!r} could not be claimed")
    return execute(archive, spec, owner, phase=phase, tick=tick)


class _Heartbeat:
    """Keeps the record's phase, progress and lease current from a thread of its own, so that
    a campaign blocked in a long wait still shows it is alive."""

    def __init__(
        self, store: CampaignStore, name: str, owner: str, stop: threading.Event | None
    ) -> None:
        self.store, self.name, self.owner = store, name, owner
        self.stop = stop or threading.Event()
        self.state = ("starting", 0, 0)
        self.lost = False
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"campaign-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=LEASE_S)

    def _loop(self) -> None:
        written: tuple[str, int, int] | None = None
        last = 0.0
        while not self._closed.wait(HEARTBEAT_S):
            now = time.monotonic()
            if self.state == written and now - last < LEASE_S / 4:
                continue
            try:
                current = self.state
                if not self.store.progress(self.name, self.owner, *current):
                    self.lost = True
                    return
                written, last = current, now
            except DppsError as exc:  # the catalog briefly away: the lease has minutes
                log.warning("campaign %s: progress not recorded: %s", self.name, exc)

    def _check(self) -> None:
        if self.lost:
            raise Conflict(f"campaign {self.name!r} was taken over by another runner")
        if self.stop.is_set():
            raise Interrupted(self.name)

    def phase(self, outer: Phase | None) -> Phase:
        def phase(name: str) -> None:
            self._check()
            self.state = (name, 0, 0)
            if outer is not None:
                outer(name)

        return phase

    def tick(self, outer: Tick | None) -> Tick:
        def tick(done: int, total: int) -> None:
            self._check()
            self.state = (self.state[0], done, total)
            if outer is not None:
                outer(done, total)

        return tick


def execute(
    archive: Archive,
    spec: CampaignSpec,
    owner: str,
    *,
    phase: Phase | None = None,
    tick: Tick | None = None,
    stop: threading.Event | None = None,
) -> CampaignReport:
    """Run a campaign whose record ``owner`` has claimed, and close the record."""
    store = WMS(archive).campaigns
    beat = _Heartbeat(store, spec.name, owner, stop)
    beat.start()
    try:
        report = run_campaign(archive, spec, phase=beat.phase(phase), tick=beat.tick(tick))
    except Interrupted:
        beat.close()
        store.give_back(spec.name, owner, "interrupted: the next runner resumes it")
        raise
    except BaseException as exc:
        beat.close()
        text = "interrupted" if isinstance(exc, KeyboardInterrupt) else error_text(exc)
        try:
            store.finish(spec.name, owner, CampaignState.FAILED, error=text)
        except DppsError as inner:  # taken over meanwhile: the new runner records the end
            log.warning("campaign %s: end not recorded: %s", spec.name, inner)
        raise
    beat.close()
    state = CampaignState.DONE if report.ok else CampaignState.FAILED
    store.finish(spec.name, owner, state, report=report.to_mapping())
    return report


class CampaignDaemon(Daemon):
    """Runs campaigns queued over REST, one at a time, in a thread of its own: a pass only
    claims and starts, so the daemon's heartbeat stays fresh during a campaign of hours
    (registered by ``dpps.pipelines.daemons``)."""

    sleep_s = 2.0
    max_sleep_s = 10.0

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.owner = new_instance_id()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def run_once(self, ctx: DaemonContext) -> int:
        if self.thread is not None and self.thread.is_alive():
            return 0
        store = WMS(self.archive).campaigns
        info = store.claim(self.owner)
        if info is None:
            return 0
        try:
            spec = CampaignSpec.from_mapping(info.spec)
        except DppsError as exc:  # a record no runner can read: say so, do not retry forever
            store.finish(info.name, self.owner, CampaignState.FAILED, error=error_text(exc))
            return 1
        archive = self.archive.as_account(info.account)
        self.thread = threading.Thread(
            target=self._run, args=(archive, spec), name=f"campaign-{info.name}", daemon=True
        )
        self.thread.start()
        return 1

    def _run(self, archive: Archive, spec: CampaignSpec) -> None:
        try:
            execute(archive, spec, self.owner, stop=self.stop)
        except Interrupted:
            log.info("campaign %s given back (stopping)", spec.name)
        except Exception:  # recorded as FAILED on the campaign; the daemon goes on
            log.exception("campaign %s failed", spec.name)

    def drain(self) -> None:
        """After ``--once``: wait for the campaign this pass started."""
        if self.thread is not None:
            self.thread.join()

    def close(self) -> None:
        """Stop: the running campaign is given back at its next progress report."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5.0)


__all__ = ["KIND", "CampaignDaemon", "Interrupted", "check", "execute", "run_here", "submit"]
