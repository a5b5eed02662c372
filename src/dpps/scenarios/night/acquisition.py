"""A simulated night at the site: ACADA writes it, the queue ingests it, the rules replicate it.

``NightPlan`` (``dpps.acada.observing``) is what the telescopes observe: a few observation
blocks on a point source in wobble mode, with calibration events and monitoring tables.
``simulate`` writes them into the ACADA landing area of the on-site RSE, ``ingest`` runs the
ingestion queue until no trigger is left (files registered in place, datasets created with
the ``acada`` replication policy), and ``replication_step`` is one round of the rule
evaluator and the transfer daemon, called until ``replication_done``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dpps.acada.observing import NightPlan
from dpps.acada.simulate import simulate
from dpps.bdms.types import PageRequest
from dpps.core.daemon import DaemonContext, spec
from dpps.core.errors import IntegrityFailure
from dpps.core.states import RuleState

if TYPE_CHECKING:
    from collections.abc import Callable

    from dpps.bdms.archive import Archive


#: Observed DL0 (ACADA's tree) with an observation id, latest id first.
_OBSERVED = 'data_level=DL0 and name like "/ctao/dl0/%" and obs_id >= 0'


def next_obs_id(archive: Archive) -> int:
    """One more than the largest obs_id of observed DL0 in the archive (1 for a new one)."""
    last = archive.views.files(_OBSERVED, PageRequest(limit=1), order_by="-obs_id").items
    return int(last[0].obs_id or 0) + 1 if last else 1


def simulate_night(
    archive: Archive, plan: NightPlan, on_block: Callable[[int], None] | None = None
) -> list[Path]:
    """ACADA writes the night into the landing area (files, then their triggers)."""
    landing = archive.acada.queue(executor="inline").settings.landing
    return simulate(landing, plan.simulation(), on_block=on_block)


def ingest(archive: Archive, *, rounds: int = 20) -> int:
    """Run the ingestion queue until the landing area holds no trigger; files registered."""
    queue = archive.acada.queue(executor="inline")
    registered = 0
    try:
        for _ in range(rounds):
            handled = queue.run_once(DaemonContext("ingest"))
            registered += handled
            if not any(queue.settings.landing.rglob("*.trigger")):
                return registered
    finally:
        queue.close()
    raise IntegrityFailure(f"triggers left in {queue.settings.landing} after {rounds} rounds")


def daemon_pass(archive: Archive, name: str) -> int:
    """One pass of the archive daemon registered as ``name`` (``dpps daemon NAME --once``
    without heartbeats); returns the work it did."""
    import dpps.bdms.daemons  # noqa: F401  (declares the archive's daemons in the registry)

    with spec(name).start(archive.context) as daemon:
        return daemon.run_once(DaemonContext(name))


def replication_step(archive: Archive) -> int:
    """One round of the rule evaluator and the transfer daemon; returns the work done."""
    return daemon_pass(archive, "evaluator") + daemon_pass(archive, "transfer")


def rule_states(archive: Archive, policy: str = "acada") -> dict[str, int]:
    """Rules of the policy by state."""
    return archive.views.rules_by_state(policy=policy)


def replication_done(archive: Archive, policy: str = "acada") -> bool:
    states = rule_states(archive, policy)
    return bool(states) and set(states) == {RuleState.OK.value}
