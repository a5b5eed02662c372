"""Every dashboard page holds its layout at 800 px (a laptop's half screen) and at 1400 and
1920 px (control room screens): nothing is wider than the window, nothing sticks out of its
panel or card. A long DID, error or RSE expression must wrap, not push the page sideways.

One archive (SQLite), one live server and one Chromium serve the whole module: every page of
the dashboard with something on it (rules and transfers, a failed one; a quality report with
its plots; finished, failed and running campaigns; a failed job), each loaded once per width.
The workflow list is checked empty: running a workflow would add 15 s to the suite.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from dpps.bdms.archive import Archive
from dpps.catalog.models import TransferRow
from dpps.oms.server import BackgroundServer
from dpps.wms.api import WMS
from dpps.wms.types import SubmitOptions
from tests.bdms.helpers import make_fits
from tests.bdms.replication_helpers import evaluate
from tests.oms.conftest import ARGS, CHROMIUM, DL1_FILE, SHOTS, Seeded, seed
from tests.oms.test_dashboard_campaigns import DONE, seed_campaigns
from tests.oms.test_dashboard_quality import LENIENT, PRODUCT, _dl1, judge
from tests.oms.test_dashboard_replication import Replication, make_replication
from tests.wms.conftest import PY, TIMEOUT_S, write

WIDTHS = (800, 1400, 1920)
#: The module's archive, its rules and transfers, the failed job's id, the server's URL.
Site = tuple[Seeded, Replication, int, str]
#: What overflows: the document, and any visible element sticking out of its panel or card
#: (a scroll bar inside a panel would hide the overflow, so none is allowed either).
OVERFLOW = """() => {
  const out = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth) out.push(`page ${doc.scrollWidth} > ${doc.clientWidth}`);
  const name = (el) => el.tagName.toLowerCase()
    + (el.dataset.testid ? `[${el.dataset.testid}]` : "")
    + (el.className && typeof el.className === "string" ? "." + el.className.split(" ")[0] : "");
  for (const box of document.querySelectorAll("header, .panel, .card")) {
    const outer = box.getBoundingClientRect();
    if (box.scrollWidth > box.clientWidth + 1) out.push(`${name(box)} scrolls ${box.scrollWidth}`);
    for (const el of box.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      if (!r.width || !r.height) continue;
      if (r.right > outer.right + 1 || r.left < outer.left - 1) {
        out.push(`${name(el)} in ${name(box)}: ${Math.round(r.left)}-${Math.round(r.right)}`
          + ` outside ${Math.round(outer.left)}-${Math.round(outer.right)}`);
      }
    }
  }
  return out.slice(0, 8);
}"""


#: What real archives hold and the tables must wrap: long LFNs and errors without spaces.
LONG_LFN = "/ctao/dl0/" + "/".join(["CTAO-North_LST-1_array-trigger_2026-12-07"] * 3) + ".fits"
LONG_ERROR = "copy failed: root://" + "storage-element.example.org:1094//" * 6 + " (timeout)"


def _long_names(seeded: Seeded, tmp: Path, replication: Replication) -> None:
    archive = seeded.archive
    made = make_fits(tmp / "long", "long.fits", obs_id=44, tel_id=1, seed=44)
    assert not archive.ingest([made], "CTAO-N", lfn=LONG_LFN).failed
    archive.add_rule(LONG_LFN, copies=1, rses="CTAO-S")
    evaluate(archive)
    with archive.sessions.begin() as s:
        s.execute(
            update(TransferRow)
            .where(TransferRow.id == replication.failed)
            .values(error=LONG_ERROR)
        )


def _failed_job(seeded: Seeded, tmp: Path) -> int:
    """A job whose command fails with a long message (what its page must wrap)."""
    wms = WMS(seeded.archive)
    message = "calibration table missing: " + "/ctao/cal/obs_42/tel_001_camera.fits," * 8
    job = {
        "name": "broken-" + "calibration-step-" * 5,
        "command": [PY, "-c", f"print({message!r}); raise SystemExit(3)"],
    }
    sub = wms.submit(
        write(tmp / "failing.yaml", json.dumps(job)), opts=SubmitOptions(max_attempts=1)
    )
    assert wms.wait(sub, timeout_s=TIMEOUT_S) == "FAILED", wms.job(sub.id)
    return int(sub.id)


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("layout")
    with Archive.init(tmp / "ws") as archive:
        seeded = seed(archive, tmp)
        seed_campaigns(seeded, tmp)  # replicates until every rule is OK: before the others
        replication = make_replication(seeded)
        _long_names(seeded, tmp, replication)
        _dl1(tmp)
        ingested = archive.ingest([tmp / "params.h5"], "CTAO-S", lfn=PRODUCT)
        assert not ingested.failed, ingested.failed
        judge(seeded, tmp, LENIENT, "lenient")
        job = _failed_job(seeded, tmp)
        with BackgroundServer(archive) as server:
            yield seeded, replication, job, server.url


@pytest.fixture(scope="module")
def tab(site: Site) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    seeded, _replication, _job, url = site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
            page.set_default_timeout(30_000)
            page.goto(f"{url}/ui/login")
            page.fill("#token", seeded.tokens["reader"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/ui/")
            yield page
        finally:
            browser.close()


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_no_page_overflows_at_800_1400_or_1920_px(site: Site, tab: Any) -> None:
    seeded, replication, job, url = site
    paths = [
        "/ui/",
        "/ui/products",
        "/ui/products?q=data_level%3DDL0",
        f"/ui/products/ctao:{DL1_FILE}",
        f"/ui/products/{seeded.dl0_files[0]}",
        f"/ui/products/ctao:{LONG_LFN}",
        "/ui/rules",
        f"/ui/rules/{replication.dl0_rule}",
        "/ui/transfers",
        f"/ui/transfers/{replication.failed}",
        "/ui/rses",
        "/ui/rses/CTAO-S",
        "/ui/sites",
        "/ui/sites/CTAO-South",
        "/ui/traffic",
        "/ui/traffic?window=30d",
        "/ui/jobs",
        f"/ui/jobs/{job}",
        "/ui/workflows",
        "/ui/quality",
        "/ui/campaigns",
        f"/ui/campaigns/{DONE}",
    ]
    problems: dict[str, list[str]] = {}
    for width in WIDTHS:
        tab.set_viewport_size({"width": width, "height": 900})
        for path in paths:
            answer = tab.goto(url + path)
            assert answer is not None
            assert answer.status == 200, (path, answer.status)
            found = tab.evaluate(OVERFLOW)
            if os.environ.get("DPPS_LAYOUT_SHOTS"):  # to look at them; CI keeps the others
                SHOTS.mkdir(parents=True, exist_ok=True)
                slug = path.strip("/").replace("/", "_").replace(":", "")[:60] or "overview"
                tab.screenshot(path=str(SHOTS / f"layout-{width}-{slug}.png"), full_page=True)
            if found:
                problems[f"{width}px {path}"] = found
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in problems.items())
