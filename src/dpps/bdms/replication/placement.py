"""Where a rule's missing copies go: the evaluator's per-file decision, kept pure.

Given what one file has (replicas by RSE and state, the rule's locks, open transfers, failed
transfers) and what the rule allows (``Plan``), ``decide`` returns the locks the file should
have, the destinations to queue transfers to, and why the file is stuck if it is. Only
``build_plan`` reads the catalog (the RSEs and the transfer load, once per evaluation); the
decision itself is plain Python, so the placement policy can be read on its own.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dpps.bdms.replication import rse_expression
from dpps.catalog.models import RSERow, RuleRow, TransferRow
from dpps.core.config import Config
from dpps.core.states import ReplicaState, RuleState, TransferState

OPEN = (TransferState.QUEUED.value, TransferState.ACTIVE.value)
AVAILABLE = ReplicaState.AVAILABLE.value
_NOT_A_TARGET = (ReplicaState.AVAILABLE.value, ReplicaState.BEING_DELETED.value)


@dataclass
class Plan:
    """What one evaluation needs to know about the RSEs, computed once per rule."""

    rule_id: int
    copies: int
    expression: str
    source_expression: str | None
    activity: str
    priority: int
    match: set[int]
    targets: set[int]  # matching, available, configured
    sources: set[int] | None  # None: any configured RSE
    configured: set[int]
    site: dict[int, str]
    coords: dict[int, tuple[float, float] | None]
    load: Counter[int]
    min_km: float
    max_attempts: int
    #: RSE pairs closer than ``min_km`` (both ways), computed once: ``score`` asks for every
    #: candidate and holder of every file.
    near: frozenset[tuple[int, int]] = frozenset()


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine) between two (latitude, longitude) in degrees."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2
    h += math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def build_plan(session: Session, config: Config, rule: RuleRow) -> Plan:
    """The RSE facts one rule's evaluation needs, computed once per evaluation."""
    rses = list(session.scalars(select(RSERow)))
    by_name = {r.name: r.id for r in rses}
    facts = rse_expression.facts_from_config(config, {r.name: r.available for r in rses})
    match = {by_name[n] for n in rse_expression.evaluate(rule.rse_expression, facts)}
    sources = None
    if rule.source_expression:
        names = rse_expression.evaluate(rule.source_expression, facts)
        sources = {by_name[n] for n in names}
    configured = {r.id for r in rses if r.name in config.rses}
    sites = config.sites
    coords: dict[int, tuple[float, float] | None] = {}
    for r in rses:
        site = sites.get(r.site)
        lat, lon = (site.latitude, site.longitude) if site is not None else (None, None)
        coords[r.id] = (lat, lon) if lat is not None and lon is not None else None
    load: Counter[int] = Counter(
        dict(
            session.execute(
                select(TransferRow.dest_rse_id, func.count())
                .where(TransferRow.state.in_(OPEN))
                .group_by(TransferRow.dest_rse_id)
            ).all()
        )
    )
    return Plan(
        rule_id=rule.id,
        copies=rule.copies,
        expression=rule.rse_expression,
        source_expression=rule.source_expression,
        activity=rule.activity,
        priority=rule.priority,
        match=match,
        targets={r.id for r in rses if r.id in match and r.available} & configured,
        sources=sources,
        configured=configured,
        site={r.id: r.site for r in rses},
        coords=coords,
        load=load,
        min_km=config.rules.min_distance_km,
        max_attempts=config.transfers.max_attempts,
        near=near_pairs(coords, config.rules.min_distance_km),
    )


def near_pairs(
    coords: dict[int, tuple[float, float] | None], min_km: float
) -> frozenset[tuple[int, int]]:
    """Every ordered pair of RSEs whose sites are closer than ``min_km`` (one RSE and itself
    included); an RSE without coordinates is near nothing."""
    located = [(r, c) for r, c in coords.items() if c is not None]
    return frozenset(
        (a, b) for a, ca in located for b, cb in located if distance_km(ca, cb) < min_km
    )


def decide(
    plan: Plan,
    replicas: dict[int, str],
    locks: dict[int, tuple[int, str]],
    open_to: set[int],
    failed: set[int],
) -> tuple[dict[int, str], list[int], str | None]:
    """For one file: the locks it should have, the transfers to queue, why it is stuck."""
    keep_first = lambda rse: (rse not in locks, rse)  # noqa: E731 - stable locks first
    good = sorted((r for r in plan.match if replicas.get(r) == AVAILABLE), key=keep_first)
    ok = good[: plan.copies]
    waiting = sorted((r for r in plan.match if r in open_to and r not in ok), key=keep_first)
    pending = waiting[: plan.copies - len(ok)]
    need = plan.copies - len(ok) - len(pending)
    want = {r: RuleState.OK.value for r in ok} | {r: RuleState.REPLICATING.value for r in pending}
    if need <= 0 and not pending:
        return want, [], None
    reason = no_source(plan, replicas, open_to)
    if need <= 0 or reason is not None:
        return want, [], reason if need > 0 or pending else None
    # copies that exist or are on their way, whichever rule asked for them
    holders = [r for r, state in replicas.items() if state == AVAILABLE] + sorted(open_to)
    candidates = [
        r
        for r in plan.targets
        if r not in want and r not in open_to and replicas.get(r) not in _NOT_A_TARGET
    ]
    chosen: list[int] = []
    for _ in range(need):
        if not candidates:
            break
        best = min(candidates, key=lambda r: score(plan, r, holders, locks, failed))
        candidates.remove(best)
        chosen.append(best)
        holders.append(best)
        plan.load[best] += 1
        want[best] = RuleState.REPLICATING.value
    if len(chosen) < need:
        have = len(ok) + len(pending) + len(chosen)
        return (
            want,
            chosen,
            f"only {have} of {plan.copies} copies possible: no other available RSE "
            f"matches {plan.expression!r}",
        )
    return want, chosen, None


def score(
    plan: Plan,
    rse: int,
    holders: list[int],
    locks: dict[int, tuple[int, str]],
    failed: set[int],
) -> tuple[bool, bool, bool, bool, int, int]:
    """Lower is better: not where it failed, keep this rule's lock (repair in place), a new
    site, far from the other copies, then the least loaded RSE."""
    sites = {plan.site.get(h) for h in holders}
    near = any((rse, h) in plan.near for h in holders)
    return (
        rse in failed,
        rse not in locks,
        plan.site.get(rse) in sites,
        near,
        plan.load[rse],
        rse,
    )


def no_source(plan: Plan, replicas: dict[int, str], open_to: set[int]) -> str | None:
    """Why no transfer could ever read this file, or None when a source exists or is coming
    (an open transfer to a source RSE: the ACADA tape copy waits for the disk copy)."""
    allowed = plan.configured if plan.sources is None else plan.sources & plan.configured
    coming = (open_to - plan.match) & allowed  # the rule's own transfers need a source too
    if any(replicas.get(r) == AVAILABLE for r in allowed) or coming:
        return None
    if not any(state == AVAILABLE for state in replicas.values()):
        return "no AVAILABLE replica left to copy from"
    return f"no AVAILABLE replica on a source RSE ({plan.source_expression!r})"
