"""Faults injected into the long-haul scenario on the small testbed (issue 11, deliverable 5).

Each fault strikes in the middle of the transfers: PIC's WAN link down for 60 s (the off-site
center then reaches neither the catalog nor the telescope site's XRootD), the telescope site's
storage server killed, every process of the off-site center killed, the central catalog
restarted. Nothing may be lost or duplicated, and every rule must end OK.

The testbed is the small one of tests/testbed/conftest.py, up for this module."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from dpps.catalog.models import TransferRow
from dpps.testbed import topology as topo
from dpps.testbed.scenario import longhaul, sites
from dpps.testbed.scenario.cutoff import SiteCutOff
from dpps.testing import netns

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="the testbed needs root (network namespaces); CI runs as root"
    ),
    # one testbed per machine: every testbed test on one worker, one after the other, rather
    # than a second worker idling on the lock
    pytest.mark.xdist_group("testbed"),
]

FILES = 40
OUTAGE_S = 60.0


def _snapshot(engine: Any) -> dict[str, Any]:
    """What the catalog says now: the scenario's counts and the transfers by state."""
    counts = longhaul._counts(engine)
    with engine.connect() as conn:
        states = dict(
            conn.execute(select(TransferRow.state, func.count()).group_by(TransferRow.state)).all()
        )
        attempts = conn.execute(select(func.coalesce(func.sum(TransferRow.attempts), 0)))
        counts["attempts"] = int(attempts.scalar_one())
    counts["transfers"] = {str(k): int(v) for k, v in states.items()}
    return counts


class LinkOutage:
    """The ``during`` hook: once transfers are under way, PIC's WAN link down for
    ``seconds``, then up again; the catalog (in the central namespace, still reachable from
    here) is read at the cut and just before the link comes back."""

    def __init__(self, site: str, seconds: float) -> None:
        self.site = site
        self.seconds = seconds
        self.at_cut: dict[str, Any] = {}
        self.before_restore: dict[str, Any] = {}
        self.link_was_down = False

    def __call__(self, dep: sites.Deployment, plan: topo.Plan) -> None:
        central = plan.node("central").netns
        node = plan.node(self.site)
        engine = create_engine(f"{dep.catalog_url}?application_name=fault", pool_size=1)
        try:
            # in the middle of the transfers: some files registered, not all of them safe
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                now = longhaul._in(central, lambda: _snapshot(engine))
                if now["offsite"] >= 1 or now["transfers"].get("ACTIVE", 0) >= 1:
                    break
                time.sleep(0.02)
            netns.run(["ip", "-n", plan.wan_netns, "link", "set", node.wan_link, "down"])
            try:
                self.at_cut = longhaul._in(central, lambda: _snapshot(engine))
                state = netns.run(
                    ["ip", "-n", plan.wan_netns, "-o", "link", "show", "dev", node.wan_link]
                )
                self.link_was_down = "state DOWN" in state
                time.sleep(self.seconds)
                self.before_restore = longhaul._in(central, lambda: _snapshot(engine))
            finally:
                netns.run(["ip", "-n", plan.wan_netns, "link", "set", node.wan_link, "up"])
        finally:
            engine.dispose()


@pytest.mark.verifies_usecase("UC-190-1.3")
def test_long_haul_survives_the_off_site_centers_link_going_down(small_testbed: Path) -> None:
    outage = LinkOutage("PIC", OUTAGE_S)
    report = longhaul.run(small_testbed, files=FILES, size_kib=64, during=outage, timeout_s=360)
    # the outage happened while transfers were pending: claimed or done ones at the cut, and
    # while the link was down the off-site center recorded nothing (it could not reach the
    # catalog), with transfers still waiting for it
    assert outage.link_was_down
    cut, restore = outage.at_cut, outage.before_restore
    assert cut["offsite"] >= 1 or cut["transfers"].get("ACTIVE", 0) >= 1, cut
    assert cut["offsite"] < FILES, cut
    assert restore["offsite"] == cut["offsite"], (cut, restore)
    assert restore["transfers"].get("QUEUED", 0) + restore["transfers"].get("ACTIVE", 0) > 0
    # nothing lost, nothing duplicated, every rule OK, every on-site copy deleted once safe
    assert report["ok"], report
    assert report["complete"]
    assert report["registered"] == FILES
    assert report["lost"] == 0
    assert report["bad_replicas"] == []
    assert report["duplicated"] == 0
    assert report["rules_not_ok"] == 0
    assert report["onsite_files_left"] == 0
    assert report["bytes_moved_offsite"] == report["bytes"]


def _nothing_lost(report: dict[str, Any], files: int = FILES) -> None:
    """The end state every fault must leave: every file safe off site exactly once, every
    rule OK, every on-site copy deleted once safe."""
    keys = ("complete", "registered", "lost", "not_yet_offsite", "duplicated", "rules_not_ok")
    keys += ("onsite_files_left", "dead_processes", "relayed_by_third_site", "links", "dir")
    assert report["ok"], "; ".join(f"{k}={report.get(k)}" for k in keys)
    assert report["complete"]
    assert report["registered"] == files
    assert report["lost"] == 0
    assert report["bad_replicas"] == []
    assert report["duplicated"] == 0
    assert report["rules_not_ok"] == 0
    assert report["onsite_files_left"] == 0
    assert report["quarantined"] == 0
    assert report["bytes_moved_offsite"] == report["bytes"]


class Crash:
    """The ``during`` hook of the crash faults: once transfers are under way (some claimed,
    none finished yet or only a few), ``kill(dep)``; ``down_s`` later, ``restart(dep)``. The
    catalog is read just before the crash."""

    def __init__(
        self,
        kill: Callable[[sites.Deployment], None],
        restart: Callable[[sites.Deployment], None],
        down_s: float,
    ) -> None:
        self.kill = kill
        self.restart = restart
        self.down_s = down_s
        self.at_crash: dict[str, Any] = {}

    def __call__(self, dep: sites.Deployment, plan: topo.Plan) -> None:
        central = plan.node("central").netns
        engine = create_engine(f"{dep.catalog_url}?application_name=fault", pool_size=1)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                now = longhaul._in(central, lambda: _snapshot(engine))
                if now["transfers"].get("ACTIVE", 0) >= 1:
                    break
                time.sleep(0.02)
            self.at_crash = now
        finally:
            engine.dispose()
        self.kill(dep)
        time.sleep(self.down_s)
        self.restart(dep)


@pytest.mark.verifies_usecase("UC-190-1.3")
def test_long_haul_survives_the_telescope_sites_storage_server_killed(
    small_testbed: Path,
) -> None:
    """CTAO-North's XRootD (the source of every copy) SIGKILLed in the middle of the
    transfers and started again 10 s later: copies in flight fail and are retried."""
    crash = Crash(
        kill=lambda dep: sites.kill_site_xrootd(dep, "CTAO-North"),
        restart=lambda dep: sites.restart_site_xrootd(dep, "CTAO-North"),
        down_s=10.0,
    )
    report = longhaul.run(small_testbed, files=FILES, size_kib=64, during=crash, timeout_s=300)
    assert crash.at_crash["transfers"].get("ACTIVE", 0) >= 1, crash.at_crash
    _nothing_lost(report)


@pytest.mark.verifies_usecase("UC-190-1.3")
def test_long_haul_survives_every_process_of_the_off_site_center_killed(
    small_testbed: Path,
) -> None:
    """PIC's transfer agent and its XRootD server SIGKILLed together (the machine room lost
    power) with copies in flight, both started again 10 s later: the new agent takes back
    the dead one's leases at once (same host, dead PID) and redoes the copies, removing the
    partial files the killed server left."""

    def kill(dep: sites.Deployment) -> None:
        sites.kill_process(dep, "transfer@PIC")
        sites.kill_site_xrootd(dep, "PIC")

    def restart(dep: sites.Deployment) -> None:
        sites.restart_site_xrootd(dep, "PIC")
        sites.start_process(dep, "transfer@PIC")

    crash = Crash(kill=kill, restart=restart, down_s=10.0)
    report = longhaul.run(small_testbed, files=FILES, size_kib=64, during=crash, timeout_s=300)
    assert crash.at_crash["transfers"].get("ACTIVE", 0) >= 1, crash.at_crash
    _nothing_lost(report)


@pytest.mark.verifies_usecase("UC-190-1.3")
def test_long_haul_survives_the_central_catalog_restarting(small_testbed: Path) -> None:
    """The central PostgreSQL stopped (every site's connections cut) for 10 s in the middle
    of the transfers and started again: every site process reconnects and carries on."""
    crash = Crash(
        kill=lambda dep: None,
        restart=lambda dep: sites.restart_catalog(dep, down_s=10.0),
        down_s=0.0,
    )
    report = longhaul.run(small_testbed, files=FILES, size_kib=64, during=crash, timeout_s=300)
    assert crash.at_crash["transfers"].get("ACTIVE", 0) >= 1, crash.at_crash
    _nothing_lost(report)


@pytest.mark.verifies_usecase("UC-190-1.3")
def test_a_telescope_site_cut_off_keeps_its_files_and_catches_up(small_testbed: Path) -> None:
    """CTAO-North cut off from the center for 30 s while ACADA writes 60 more files: none is
    registered while the site is cut off, none is quarantined for want of the catalog, every
    one is safe on site, and the backlog is registered once the link is back (the catch-up
    rate is printed)."""
    cut = SiteCutOff(seconds=30.0, backlog=60, size_kib=64)
    report = longhaul.run(small_testbed, files=FILES, size_kib=64, during=cut, timeout_s=400)
    total = FILES + cut.backlog
    assert cut.before_restore["registered"] < total, cut.before_restore
    assert cut.registered_before == FILES  # the baseline: every file before the cut
    assert report["quarantined"] == 0
    assert cut.catch_up_s < 240, "the backlog was not registered within 4 min of the link"
    print(
        f"catch-up: {cut.backlog} files in {cut.catch_up_s:.1f} s after the link returned "
        f"({cut.backlog / cut.catch_up_s:.1f} files/s)"
    )
    assert report["registered"] == total
    _nothing_lost(report, files=total)
