"""``dpps report``: what the archive did in a period, for the operations meeting.

Volumes ingested and replicated per data center, failures, repairs, the state of rules and
transfers, job statistics once the workload manager records jobs, and the health check's
verdict. Built from the catalog only (events, transfers, replicas), so any past period can be
reported again later with the same numbers.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from dpps.bdms import stats
from dpps.bdms.preservation import health as bdms_health
from dpps.bdms.records import HealthReport
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.errors import InvalidInput
from dpps.core.states import TransferState
from dpps.oms.templating import render
from dpps.wms import stats as wms_stats

FORMATS = ("markdown", "html", "json")
_FAILURE = re.compile(r"(^|[._])(bad|fail|failed|failure|lost|error|stuck)($|[._])")
_REPAIR = re.compile(r"(repair|recover|restore)")
_SINCE = re.compile(r"^(?P<n>\d+(\.\d+)?)(?P<unit>[hdw])$")


@dataclass(frozen=True, slots=True)
class OperationsReport:
    since: dt.datetime
    until: dt.datetime
    ingested: list[stats.Volume]
    replicated: list[stats.Volume]
    transfers_failed: list[stats.Volume]
    failures: dict[str, int]
    repairs: dict[str, int]
    events_by_action: dict[str, int]
    rules_by_state: dict[str, int]
    transfers_by_state: dict[str, int]
    jobs_by_state: dict[str, int] | None
    stored: list[stats.SiteLevelVolume]
    health: HealthReport
    alarms: list[str]


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``24h``, ``7d``, ``2w`` back from now, or an ISO date/time (UTC)."""
    now = now or utcnow()
    m = _SINCE.match(text.strip())
    if m:
        hours = float(m["n"]) * {"h": 1, "d": 24, "w": 168}[m["unit"]]
        return now - dt.timedelta(hours=hours)
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"invalid --since {text!r}: use e.g. 24h, 7d, 2w or an ISO date 2026-11-21"
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def alarms(health: HealthReport) -> list[str]:
    """What an operator must look at now, one line each (empty: all is well): the reason of
    every failed health check, BAD replicas awaiting repair, and the notes."""
    out = list(health.alarms)
    if health.bad_replicas:
        out.append(f"{health.bad_replicas} BAD replica(s) awaiting repair")
    return out + [f"note: {n}" for n in health.notes]


def build_report(
    session: Session,
    config: Config,
    since: dt.datetime,
    until: dt.datetime | None = None,
) -> OperationsReport:
    until = until or utcnow()
    if since >= until:
        raise InvalidInput(
            f"the report period is empty: {since:%Y-%m-%d %H:%M} is not before "
            f"{until:%Y-%m-%d %H:%M}"
        )
    actions = stats.events_by_action(session, since, until)
    health = bdms_health.report(session, config)
    return OperationsReport(
        since=since,
        until=until,
        ingested=stats.ingested_by_site(session, since, until),
        replicated=stats.transfers_by_site(session, TransferState.DONE, since, until),
        transfers_failed=stats.transfers_by_site(session, TransferState.FAILED, since, until),
        failures={a: n for a, n in actions.items() if _FAILURE.search(a)},
        repairs={a: n for a, n in actions.items() if _REPAIR.search(a)},
        events_by_action=actions,
        rules_by_state=stats.rules_by_state(session),
        transfers_by_state=stats.transfers_by_state(session),
        jobs_by_state=wms_stats.jobs_by_state(session),
        stored=stats.stored_by_site_and_level(session),
        health=health,
        alarms=alarms(health),
    )


def render_markdown(report: OperationsReport) -> str:
    return render("report.md", r=report)


def render_html(report: OperationsReport) -> str:
    return render("report.html", r=report)
