"""The quality page of the dashboard (``/ui/quality``) in a real headless Chromium, on both
catalog backends.

A real QualPipe run judges a small DL1 product (two telescopes, one with too few images for
the criterion given) and its report and HTML page are archived next to the product by
QualPipe's own ``archive_report``; a second run judges the same product again with a lenient
criterion (a new version). The page must show each report's verdict and counts as stored,
its metrics as bars coloured by outcome, and QualPipe's own PNG plots, loaded from the
archive through the dashboard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dpps.oms.api import create_app
from dpps.oms.dashboard import quality_read
from dpps.oms.server import BackgroundServer
from dpps.pipelines.qualpipe.archiving import archive_report
from dpps.pipelines.tool import EXIT_OK, run_tool
from dpps.wms.api import WMS
from tests.oms.conftest import DL1_FILE, Dash, Seeded
from tests.pipelines.qualpipe.helpers import write_table_dl1
from tests.wms.conftest import PY, TIMEOUT_S, write

PRODUCT = "/ctao/dl1/obs_42/params.h5"
IMAGES = {3: 50, 4: 30}  # images per telescope: tel 4 fails "at least 40"
STRICT = [
    {"kind": "threshold", "metric": "dl1.n_images", "op": ">=", "value": 40},
    {"kind": "range", "metric": "dl1.width_median", "min": 0.0, "max": 1.0, "severity": "warning"},
]
LENIENT = [{"kind": "threshold", "metric": "dl1.n_images", "op": ">=", "value": 10}]


def _dl1(tmp: Path) -> Path:
    rng = np.random.default_rng(7)
    columns = {
        tel: {
            "hillas_intensity": rng.lognormal(5, 1, n),
            "hillas_width": rng.uniform(0.02, 0.1, n),
            "hillas_length": rng.uniform(0.05, 0.3, n),
            "time": np.linspace(0, 10, n),
        }
        for tel, n in IMAGES.items()
    }
    return write_table_dl1(tmp / "params.h5", columns)


def judge(seeded: Seeded, tmp: Path, criteria: list[dict[str, Any]], name: str) -> list[Any]:
    """Run QualPipe on the archived product and archive its report and page beside it."""
    out = tmp / name
    result = run_tool(
        "qualpipe-report", {"criteria": criteria, "title": name}, {"dl1": [tmp / "params.h5"]}, out
    )
    assert result.exit_code == EXIT_OK, result.error
    page = out / "quality_report.html"
    return archive_report(
        seeded.archive,
        out / "quality_report.json",
        "CTAO-S",
        product=f"ctao:{PRODUCT}",
        html_path=page,
    )


@pytest.fixture
def reports(seeded: Seeded, tmp_path: Path) -> list[Any]:
    dl1 = _dl1(tmp_path)
    ingested = seeded.archive.ingest(
        [dl1], "CTAO-S", lfn=PRODUCT, meta={"data_level": "DL1", "obs_id": "42"}
    )
    assert not ingested.failed, ingested.failed
    first = judge(seeded, tmp_path, STRICT, "strict")
    second = judge(seeded, tmp_path, LENIENT, "lenient")
    return [first, second]


def _content(seeded: Seeded, did: str) -> dict[str, Any]:
    info = seeded.archive.show(did).file
    return json.loads(quality_read.read_bytes(seeded.archive, info))


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_quality_page_in_headless_chromium(
    seeded: Seeded, reports: list[Any], live: BackgroundServer, dash: Dash
) -> None:
    page, shot = dash.page, dash.shot
    page.goto(f"{live.url}/ui/quality")
    page.fill("#token", seeded.tokens["reader"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/ui/quality")
    page.wait_for_load_state("networkidle")

    # The archive holds one report (two versions): the page shows the latest, as stored.
    latest_json = reports[1][0]
    assert seeded.archive.count(quality_read.REPORT_FILTER) == 1
    assert page.inner_text("[data-testid=quality-total]") == "1"
    shown = page.query_selector_all("[data-testid=quality-report]")
    assert [s.get_attribute("data-did") for s in shown] == [latest_json.did]
    stored = _content(seeded, latest_json.did)
    box = shown[0]
    assert box.query_selector("[data-testid=verdict]").inner_text() == (
        "passed" if stored["passed"] else "failed"
    )
    for key in ("checks", "passed", "failed", "missing"):
        testid = "checks" if key == "checks" else f"checks-{key}"
        assert box.query_selector(f"[data-testid={testid}]").inner_text() == str(
            stored["summary"][key]
        )
    assert box.query_selector("[data-testid=metrics-count]").inner_text() == str(
        len(stored["metrics"])
    )

    # QualPipe's PNG plots, read from the archived page, loaded in the browser.
    plots = box.query_selector_all("img[data-testid=plot]")
    assert len(plots) == len(stored["plots"]) >= 1
    for img in plots:
        assert img.evaluate("i => i.complete && i.naturalWidth") > 0
    shot("quality-reports")

    # The strict version (v1) is a failed report: older versions are kept, and its bars show
    # tel 4 in red. Read it through the product page's link to the first version.
    strict_did = reports[0][0].did.split("@")[0] + "@v1"
    strict = _content(seeded, strict_did)
    assert strict["passed"] is False
    assert strict["summary"]["failed"] == 1

    # The metric bars: one per telescope of the checked metric, coloured by the outcome.
    chart = box.query_selector("[data-testid=metric-charts] .metric-chart")
    bars = chart.query_selector_all("rect")
    assert len(bars) == len(IMAGES)
    titles = chart.query_selector_all("g > title")
    values = sorted(t.text_content() for t in titles)
    assert values == [f"tel {t}: {n}" for t, n in sorted(IMAGES.items())]
    assert {b.get_attribute("fill") for b in bars} == {"#2ca02c"}  # lenient: all pass
    assert dash.errors == []
    assert dash.blocked == [], f"the dashboard tried to load from elsewhere: {dash.blocked}"


def test_a_failed_report_is_red(seeded: Seeded, signed_in: TestClient, tmp_path: Path) -> None:
    _dl1(tmp_path)
    assert not seeded.archive.ingest([tmp_path / "params.h5"], "CTAO-S", lfn=PRODUCT).failed
    judge(seeded, tmp_path, STRICT, "strict")
    text = signed_in.get("/ui/quality").text
    assert 'data-testid="verdict">failed<' in text
    assert 'data-testid="checks-failed">1<' in text
    assert "<title>tel 4: 30</title>" in text
    assert 'fill="#d62728"' in text  # tel 4 below the threshold
    assert 'data-testid="problems"' in text


def test_no_report_yet(seeded: Seeded, signed_in: TestClient) -> None:
    answer = signed_in.get("/ui/quality")
    assert answer.status_code == 200
    assert 'data-testid="no-reports"' in answer.text


def test_images_only_of_quality_products(
    seeded: Seeded, signed_in: TestClient, reports: list[Any]
) -> None:
    """The image route reads QUAL plots and pages by DID, nothing else and no paths."""
    page_did = reports[0][1].did
    ok = signed_in.get("/ui/quality/image", params={"did": page_did, "n": "0"})
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "image/png"
    assert ok.content.startswith(quality_read.PNG_MAGIC)
    refused = {
        "not QUAL": {"did": f"ctao:{DL1_FILE}"},
        "a report, not a page": {"did": reports[0][0].did, "n": "0"},
        "no such image": {"did": page_did, "n": "99"},
        "not a number": {"did": page_did, "n": "-1"},
        "no index": {"did": page_did},
        "absent": {"did": "ctao:/ctao/nothing.png"},
    }
    for why, params in refused.items():
        answer = signed_in.get("/ui/quality/image", params=params)
        assert answer.status_code == 404, why
    for bad in ("../../etc/passwd", "ctao:../../etc/passwd", "/etc/passwd"):
        answer = signed_in.get("/ui/quality/image", params={"did": bad, "n": "0"})
        assert answer.status_code in (400, 404), bad
        assert "root:" not in answer.text
    with TestClient(create_app(seeded.archive)) as anonymous:
        answer = anonymous.get("/ui/quality/image", params={"did": page_did, "n": "0"})
        assert answer.status_code == 401


def test_plots_of_a_report_made_by_a_wms_job(
    seeded: Seeded, signed_in: TestClient, tmp_path: Path
) -> None:
    """QualPipe run as a WMS job registers its PNG plots too: the page shows those products
    (the job's other QUAL outputs), each served as an image by its own DID."""
    _dl1(tmp_path)
    assert not seeded.archive.ingest([tmp_path / "params.h5"], "CTAO-S", lfn=PRODUCT).failed
    script = (
        "import json, sys; from pathlib import Path; "
        "from dpps.pipelines.tool import run_tool; "
        "r = run_tool('qualpipe-report', json.loads(sys.argv[2]), {'dl1': [sys.argv[1]]}, "
        "Path('out')); sys.exit(r.exit_code)"
    )
    prefix = "/ctao/qual/obs_42"
    job = {
        "name": "quality-obs42",
        "command": [PY, "-c", script, "$(inputs.dl1.path)", json.dumps({"criteria": STRICT})],
        "inputs": {"dl1": f"lfn:{PRODUCT}"},
        "outputs": [
            {"name": "report", "glob": "out/quality_report.json", "lfn": f"{prefix}/report.json"},
            {
                "name": "page",
                "glob": "out/quality_report.html",
                "lfn": f"{prefix}/report.html",
                "data_level": "QUAL",
                "meta": {"product_type": "quality report page"},
            },
            {
                "name": "plots",
                "glob": "out/quality_plots/*.png",
                "array": True,
                "lfn": prefix + "/$(self.basename)",
                "data_level": "QUAL",
                "meta": {"product_type": "quality plot"},
            },
        ],
    }
    wms = WMS(seeded.archive)
    sub = wms.submit(write(tmp_path / "quality.yaml", json.dumps(job)))
    assert wms.wait(sub, timeout_s=TIMEOUT_S) == "DONE", wms.job(sub.id)
    plots = [d for d in wms.job(sub.id).outputs if d.endswith(".png")]
    assert plots
    text = signed_in.get("/ui/quality").text
    assert 'data-testid="verdict">failed<' in text
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert len(sources) == len(plots)
    for src in sources:
        assert "&amp;n=" not in src  # a product of its own, not an image inlined in the page
        answer = signed_in.get(src.replace("&amp;", "&"))
        assert answer.status_code == 200
        assert answer.content.startswith(quality_read.PNG_MAGIC)


def _bar_widths(chart: str) -> dict[str, float]:
    bars = re.findall(r'<title>([^<:]+): [^<]*</title>.*?<rect [^>]*width="([0-9.]+)"', chart)
    return {label: float(width) for label, width in bars}


@pytest.mark.verifies_usecase("UC-140-1.2.1")
def test_bars_are_drawn_against_the_threshold() -> None:
    """A metric's bars are scaled to its limit, which is marked: a value of 0 is an empty bar
    (it was drawn full length when every value was 0.00 and bars were scaled to their max)."""
    from dpps.oms.dashboard.quality import SCALE_MARGIN, metric_charts

    def check(tel: int, value: float, status: str) -> dict[str, Any]:
        return {
            "metric": "dl1.n_images",
            "tel_id": tel,
            "value": value,
            "criterion": ">= 40",
            "severity": "error",
            "status": status,
        }

    [(_, chart)] = metric_charts([check(1, 0.0, "fail"), check(2, 20.0, "fail")])
    widths = _bar_widths(str(chart))
    assert widths["tel 1"] == 0.0
    span = 420 - 150 - 90
    assert widths["tel 2"] == pytest.approx(span * 20 / (40 * SCALE_MARGIN), abs=0.1)
    [mark] = re.findall(r'<line class="mark" x1="([0-9.]+)"[^>]*><title>([^<]+)</title>', chart)
    assert float(mark[0]) == pytest.approx(150 + span / SCALE_MARGIN, abs=0.1)
    assert mark[1] == "limit &gt;= 40"

    # All values tiny (0.00 as printed) against a range's limits: short bars, not full ones.
    tiny = [
        check(3, 0.001, "fail") | {"criterion": "in [0.5, 2]", "metric": "dl1.width_median"},
    ]
    [(_, chart)] = metric_charts(tiny)
    assert _bar_widths(str(chart))["tel 3"] <= 1.0
    assert len(re.findall(r'class="mark"', chart)) == 2


@pytest.mark.verifies_usecase("UC-140-1.2.1")
def test_plots_of_a_page_archived_without_a_product_type(
    seeded: Seeded, signed_in: TestClient, tmp_path: Path
) -> None:
    """Nights and campaigns archived QualPipe's page untyped before it was typed at the
    source: such a page (QUAL, ``.html``, beside its report) still gives the report's plots."""
    _dl1(tmp_path)
    out = tmp_path / "old"
    result = run_tool(
        "qualpipe-report", {"criteria": LENIENT}, {"dl1": [tmp_path / "params.h5"]}, out
    )
    assert result.exit_code == EXIT_OK, result.error
    prefix = "/ctao/proc/B/quality/obs000042_quality_report"
    for suffix in (".json", ".html"):
        done = seeded.archive.ingest(
            [out / f"quality_report{suffix}"],
            "CTAO-S",
            lfn=prefix + suffix,
            meta={"data_level": "QUAL"},
        )
        assert not done.failed, done.failed
    page = seeded.archive.show(f"ctao:{prefix}.html").file
    assert page.product_type is None
    text = signed_in.get("/ui/quality").text
    assert 'data-testid="no-plots"' not in text
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert sources
    answer = signed_in.get(sources[0].replace("&amp;", "&"))
    assert answer.status_code == 200
    assert answer.content.startswith(quality_read.PNG_MAGIC)
