"""Dashboard pages of replication: rules and transfers, listed, filtered, paged, one by one.

The lists are the library's listings (``bdms.listings``: the same rows, order and totals as
the CLI and the REST API), asked for one page at a time: an archive has millions of
transfers, and a page that loaded "the latest 100" hid everything else. Filters a person
types (state, RSE, site, age) are checked by the listings and a wrong one is shown as an
error, never as an empty list that looks like "nothing there".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from dpps.bdms import stats
from dpps.bdms.listings import RuleFilter, TransferFilter
from dpps.bdms.types import Page, PageRequest
from dpps.core.clock import utcnow
from dpps.core.errors import DppsError, InvalidInput
from dpps.core.identifiers import DID, parse_did
from dpps.core.states import RuleState, TransferState
from dpps.oms.dashboard.common import ctx, error_page, html, login_redirect, viewer

router = APIRouter()

#: Page sizes offered (a link may ask for any size up to the largest).
SIZES = (25, 50, 100, 200)
DEFAULT_SIZE = 50
#: The age filter's choices: created within this long.
AGES = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(days=1), "7d": dt.timedelta(days=7)}
AGES |= {"30d": dt.timedelta(days=30)}
#: Transfers of a rule shown on the rule's page (the rest: the transfers list, filtered).
RULE_TRANSFERS = 20


@dataclass(frozen=True, slots=True)
class Listing:
    """What a list page was asked for: filters as typed, the page window."""

    state: str
    rse: str
    site: str
    age: str
    offset: int
    limit: int
    rule: int | None = None

    @property
    def since(self) -> dt.datetime | None:
        return utcnow() - AGES[self.age] if self.age in AGES else None

    def query(self, **change: Any) -> str:
        """This listing's query string with ``change`` applied (pager and filter links)."""
        values = {
            "state": self.state,
            "rse": self.rse,
            "site": self.site,
            "age": self.age,
            "limit": self.limit,
            "offset": self.offset,
            "rule": "" if self.rule is None else self.rule,
        } | change
        return "?" + urlencode({k: v for k, v in values.items() if v not in ("", None, 0)})


def listing(params: Mapping[str, str]) -> Listing:
    """The request's filters, bounded: a page of 1 to ``SIZES[-1]``, a known age, short text."""

    def text(key: str) -> str:
        return params.get(key, "").strip()[:64]

    try:
        offset = max(0, min(int(params.get("offset", "0") or 0), 10**9))
        limit = int(params.get("limit", "") or DEFAULT_SIZE)
        rule = int(params["rule"]) if params.get("rule", "").strip() else None
    except ValueError:
        raise InvalidInput("offset, limit and rule are whole numbers") from None
    return Listing(
        state=text("state"),
        rse=text("rse"),
        site=text("site"),
        age=text("age") if text("age") in AGES else "",
        offset=offset,
        limit=min(max(limit, 1), SIZES[-1]),
        rule=rule,
    )


def _choices(request: Request) -> dict[str, Any]:
    rses = ctx(request).archive.rses()
    return {
        "rse_names": sorted(r.name for r in rses),
        "site_names": sorted({r.site for r in rses}),
        "ages": list(AGES),
        "sizes": SIZES,
    }


def _list_page(
    request: Request,
    page: str,
    title: str,
    states: list[str],
    fetch: Callable[[Listing], Page[Any]],
    counts: Callable[[Session], dict[str, int]],
) -> Response:
    """A paged, filtered list (rules or transfers): a wrong filter is a 400 page naming it."""
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    error, rows, total = None, [], 0
    try:
        asked = listing(request.query_params)
        found = fetch(asked)
        rows, total = found.items, found.total
    except InvalidInput as exc:
        error, asked = str(exc), listing({})
    with ctx(request).archive.sessions() as s:
        by_state = counts(s)
    return html(
        f"dash/{page}.html",
        status=400 if error else 200,
        title=title,
        active=page,
        who=who,
        by_state=by_state,
        rows=rows,
        total=total,
        asked=asked,
        error=error,
        states=states,
        **_choices(request),
    )


@router.get("/rules")
def rules_page(request: Request) -> Response:
    views = ctx(request).archive.views

    def fetch(asked: Listing) -> Page[Any]:
        where = RuleFilter(
            state=asked.state or None,
            rse=asked.rse or None,
            site=asked.site or None,
            since=asked.since,
        )
        return views.rules(where, PageRequest(asked.offset, asked.limit))

    states = [s.value for s in RuleState]
    return _list_page(request, "rules", "Replication rules", states, fetch, stats.rules_by_state)


@router.get("/rules/{rule_id}")
def rule_page(request: Request, rule_id: int) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    archive = ctx(request).archive
    try:
        rule = archive.views.rule(rule_id)
        transfers = archive.views.transfers(
            TransferFilter(rule_id=rule_id), PageRequest(0, RULE_TRANSFERS)
        )
    except DppsError as exc:
        return error_page(who, exc)
    return html(
        "dash/rule.html",
        title=f"Rule {rule.id}",
        active="rules",
        who=who,
        r=rule,
        transfers=transfers,
        all_transfers=Listing("", "", "", "", 0, DEFAULT_SIZE, rule.id).query(),
    )


@router.get("/transfers")
def transfers_page(request: Request) -> Response:
    views = ctx(request).archive.views

    def fetch(asked: Listing) -> Page[Any]:
        where = TransferFilter(
            state=asked.state or None,
            involving=asked.rse or None,
            site=asked.site or None,
            since=asked.since,
            rule_id=asked.rule,
        )
        return views.transfers(where, PageRequest(asked.offset, asked.limit))

    states = [s.value for s in TransferState]
    return _list_page(request, "transfers", "Transfers", states, fetch, stats.transfers_by_state)


@router.get("/transfers/{transfer_id}")
def transfer_page(request: Request, transfer_id: int) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    archive = ctx(request).archive
    try:
        t = archive.views.transfer(transfer_id)
    except DppsError as exc:
        return error_page(who, exc)
    return html("dash/transfer.html", title=f"Transfer {t.id}", active="transfers", who=who, t=t)


def rules_of(request: Request, did: str) -> list[Any]:
    """The rules on a product (any version of its name), for its page: newest first."""
    parsed = parse_did(did)
    where = RuleFilter(did=DID(parsed.scope, parsed.name))
    return ctx(request).archive.views.rules(where, PageRequest(0, 50)).items
