"""A telescope site cut off from the center while ACADA keeps writing, and its catch-up.

The ``during`` hook of the long-haul scenario (``longhaul.run(..., during=SiteCutOff(...))``)
that the fault test runs for 30 s and ``benchmarks/bench_testbed.py --scenario cutoff`` for
several minutes: once the scenario's first files are registered (their rate, trigger to
catalog, is the baseline), CTAO-North's WAN link goes down, ACADA writes ``backlog`` more files
into the landing area, the link comes back after ``seconds``, and the time until the catalog
holds every file is the catch-up. The catalog is read from the central namespace, which stays
reachable from here.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import create_engine

from dpps.testbed import topology as topo
from dpps.testbed.scenario import longhaul, sites
from dpps.testing import netns


class SiteCutOff:
    """CTAO-North's link down for ``seconds`` while ACADA writes ``backlog`` files of
    ``size_kib``; ``wait_s`` bounds each wait for the catalog."""

    def __init__(
        self, seconds: float, backlog: int, size_kib: int, *, wait_s: float = 240.0
    ) -> None:
        self.seconds = seconds
        self.backlog = backlog
        self.size_kib = size_kib
        self.wait_s = wait_s
        #: The catalog's counts just before the link came back.
        self.before_restore: dict[str, Any] = {}
        #: Files registered before the cut, and the rate at which they were (files/s).
        self.registered_before = 0
        self.baseline_files_per_s = 0.0
        self.catch_up_s = 0.0

    @property
    def catch_up_files_per_s(self) -> float:
        return self.backlog / self.catch_up_s if self.catch_up_s else 0.0

    def __call__(self, dep: sites.Deployment, plan: topo.Plan) -> None:
        central = plan.node("central").netns
        node = plan.node("CTAO-North")
        engine = create_engine(f"{dep.catalog_url}?application_name=fault", pool_size=1)

        def registered() -> int:
            return int(longhaul._in(central, lambda: longhaul._counts(engine))["registered"])

        try:
            first = len(dep.announced)
            started = min(dep.announced.values(), default=time.time())
            deadline = time.monotonic() + self.wait_s
            while time.monotonic() < deadline and registered() < first:
                time.sleep(0.05)  # the files written so far, registered: the baseline
            self.registered_before = registered()
            self.baseline_files_per_s = self.registered_before / max(time.time() - started, 1e-3)
            netns.run(["ip", "-n", plan.wan_netns, "link", "set", node.wan_link, "down"])
            try:
                cut = time.monotonic()
                longhaul.announce(dep, self.backlog, self.size_kib)  # ACADA writes on
                time.sleep(max(0.0, self.seconds - (time.monotonic() - cut)))
                self.before_restore = longhaul._in(central, lambda: longhaul._counts(engine))
            finally:
                netns.run(["ip", "-n", plan.wan_netns, "link", "set", node.wan_link, "up"])
            back = time.monotonic()
            total = len(dep.announced)
            while time.monotonic() < back + self.wait_s and registered() < total:
                time.sleep(0.1)
            self.catch_up_s = time.monotonic() - back
        finally:
            engine.dispose()
