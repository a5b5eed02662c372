"""Faults injected into the long-haul scenario on the small testbed (issue 11, deliverable 5).

The first fault: PIC's WAN link goes down in the middle of the transfers for 60 s and comes
back. The off-site center then reaches neither the catalog nor the telescope site's
XRootD; nothing may be lost or duplicated, and every rule must end OK once the link is back.

The testbed is the small one of tests/testbed/conftest.py, up for this module."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from dpps.catalog.models import TransferRow
from dpps.testbed import topology as topo
from dpps.testbed.scenario import longhaul, sites
from dpps.testing import netns

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the testbed needs root (network namespaces); CI runs as root"
)

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
