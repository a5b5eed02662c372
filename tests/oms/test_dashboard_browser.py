"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

Pages load, sign-in works, the numbers shown are the catalog's, the product search works (and
explains a bad filter), a product page shows replicas, provenance and events. A screenshot of
every page is kept under reports/screenshots/ as a test artefact. Nothing is downloaded:
Playwright drives /usr/bin/chromium, whose network access is limited to the test server.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from dpps.catalog.models import DIDRow, ReplicaRow, RSERow
from dpps.core.states import ReplicaState
from dpps.oms.server import BackgroundServer
from tests.oms.conftest import Dash, Seeded


def _stored(seeded: Seeded) -> dict[tuple[str, str], int]:
    with seeded.archive.sessions() as session:
        rows = session.execute(
            select(RSERow.site, DIDRow.data_level, func.count())
            .join(ReplicaRow, ReplicaRow.rse_id == RSERow.id)
            .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
            .where(ReplicaRow.state == ReplicaState.AVAILABLE.value)
            .group_by(RSERow.site, DIDRow.data_level)
        )
        return {(site, level): int(n) for site, level, n in rows}


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_dashboard_in_headless_chromium(
    seeded: Seeded, live: BackgroundServer, dash: Dash
) -> None:
    page, shot = dash.page, dash.shot

    # Without a session every page leads to the sign-in form; a wrong token is explained.
    page.goto(f"{live.url}/ui/products")
    assert page.url.startswith(f"{live.url}/ui/login")
    page.fill("#token", "dpps_wrong")
    page.click("button[type=submit]")
    assert "unknown token" in page.inner_text("[data-testid=login-error]")
    shot("login")
    page.fill("#token", seeded.tokens["operator"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/ui/products")
    assert page.inner_text("[data-testid=account]") == "acct-operator"

    # Overview: the numbers are the catalog's.
    page.goto(f"{live.url}/ui/")
    assert page.inner_text("[data-testid=total-files]") == str(seeded.archive.count(""))
    shown = {
        (row.get_attribute("data-site"), row.get_attribute("data-level")): int(
            row.query_selector("[data-testid=files]").inner_text()
        )
        for row in page.query_selector_all("[data-testid=site-table] tbody tr[data-site]")
    }
    assert shown == _stored(seeded) == {("CTAO-North", "DL0"): 3, ("CTAO-South", "DL1"): 1}
    assert page.inner_text("[data-testid=ingested-24h]") == "4"
    assert page.query_selector_all("svg.plot")
    shot("overview")

    # Product browser: live count while typing, then the search itself.
    page.goto(f"{live.url}/ui/products")
    page.fill("[data-testid=search-input]", "data_level=DL0 and tel_id in (1,2)")
    # a function, not an expression string: the page's CSP (no 'unsafe-eval') refuses eval
    page.wait_for_function("() => document.getElementById('hint').textContent.includes('match')")
    assert page.inner_text("[data-testid=hint]").startswith("2 files")
    page.click("[data-testid=search-button]")
    page.wait_for_selector("[data-testid=result-count]")
    assert page.inner_text("[data-testid=result-count]") == "2 matches"
    links = [a.inner_text() for a in page.query_selector_all("[data-testid=results] a")]
    assert links == seeded.dl0_files[:2]
    shot("products")
    page.fill("[data-testid=search-input]", "tel_id >> 3")
    page.click("[data-testid=search-button]")
    assert "syntax error" in page.inner_text("[data-testid=search-error]")

    # Product page: description, replicas, provenance (its dataset), events.
    page.goto(f"{live.url}/ui/products/{seeded.dl0_files[0]}")
    details = seeded.archive.show(seeded.dl0_files[0])
    assert page.inner_text("[data-testid=product-did]") == details.file.did
    assert page.inner_text("[data-testid=product-adler32]") == details.file.adler32
    assert "CTAO-N" in page.inner_text("[data-testid=replicas]")
    assert "ctao:/ctao/dl0/obs_42" in page.inner_text("[data-testid=provenance]")
    assert "file.register" in page.inner_text("[data-testid=events]")
    shot("product")

    for name in ("rules", "transfers", "jobs", "workflows", "quality"):
        page.click(f"[data-nav={name}]")
        page.wait_for_url(f"{live.url}/ui/{name}")
        assert page.inner_text("h1")
        shot(name)
    page.goto(f"{live.url}/ui/products/ctao:/ctao/nothing.fits")
    assert "no such DID" in page.inner_text("[data-testid=error]")
    assert dash.errors == []
    assert dash.blocked == [], f"the dashboard tried to load from elsewhere: {dash.blocked}"
