"""``dpps verify --release``: the release document from a real test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dpps.cli.verify_cmd import register
from dpps.core.errors import InvalidInput, Unavailable
from dpps.core.version import __version__
from dpps.verify.pdf import find_chromium, html_to_pdf
from dpps.verify.qa import CoverageSummary, DuplicationSummary, QaFigures, TestRunSummary
from dpps.verify.registry import load_registry
from dpps.verify.release import (
    build_release,
    expected_failures,
    qa_metrics,
    render_release_html,
    render_release_markdown,
)
from dpps.verify.report import build_report, parse_junit
from dpps.verify.requirements import load_requirements
from dpps.verify.trace import add_trace

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.verifies_usecase("UC-190-2.1")

SAMPLE = """
import pytest

@pytest.mark.verifies_usecase("UC-160-1.2")
def test_roles():
    pass

@pytest.mark.verifies_usecase("UC-110-1.6")
def test_replicate_fails():
    assert False

@pytest.mark.verifies_usecase("UC-190-1.3")
@pytest.mark.xfail(reason="known defect: transfers hang <when> the link drops", strict=False)
def test_link_outage():
    assert False
"""


@pytest.fixture
def junit(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(test_sample=SAMPLE)
    pytester.runpytest_subprocess(
        "--junitxml=junit.xml", "-p", "dpps.verify.pytest_plugin", "-p", "no:cacheprovider"
    )
    return pytester.path / "junit.xml"


@pytest.fixture
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)

    @application.callback()
    def _root() -> None:
        """Keep ``verify`` a subcommand."""

    return application


def test_expected_failures_keep_their_reason(junit: Path) -> None:
    (xfail,) = expected_failures([junit])
    assert xfail.test == "test_sample::test_link_outage"
    assert xfail.reason == "known defect: transfers hang <when> the link drops"


def test_release_document(junit: Path) -> None:
    usecases = load_registry()
    report = add_trace(
        build_report(usecases, parse_junit([junit]), sources=[junit]),
        load_requirements(),
        usecases,
    )
    release = build_release(report, "9.8.7", "abc1234", expected_failures([junit]))
    names = {c.name: c.version for c in release.components}
    assert names["dpps"] == "9.8.7"
    assert names["dpps BDMS"] == "9.8.7"
    assert names["Python"].count(".") == 2
    assert names["ctapipe"]  # a version, or "not installed"
    md = render_release_markdown(release)
    for heading in ("## Components", "## Use cases", "## Requirements", "## QA metrics"):
        assert heading in md
    assert md.startswith("# dpps 9.8.7 release report\n\nRevision abc1234;")
    assert "| UC ID | Name | Subsystem | Rev. | Requirements | TCs | Passed | Status |" in md
    assert (
        "| UC-160-1.2 | Manage accounts and roles | OMS | 1 | REQ-BDMS-009 | 1 | 1 | full |" in md
    )
    limits = md[md.index("## Known limitations") :]
    assert (
        "- Known defect (expected failure) test_sample::test_link_outage: known defect: "
        "transfers hang <when> the link drops" in limits
    )
    assert "REQ-DPPS-112 Backward Compatibility: Data Format is verified by nothing" in limits
    assert "REQ-BDMS-006 Reprocessing within one month is not met: 91 images/s" in limits
    assert "Use case UC-110-1.6 Replicate data products is partial: 1 failed" in limits
    assert "REQ-BDMS-009" not in limits  # verified by its one use case
    page = render_release_html(release)
    assert page.startswith("<!DOCTYPE html>")
    assert "hang &lt;when&gt; the link drops" in page
    assert "<script" not in page
    assert "http://" not in page.lower()
    assert "https://" not in page.lower()


def test_qa_metrics_against_their_thresholds() -> None:
    qa = QaFigures(
        coverage=CoverageSummary(line_rate=0.75),
        duplication=DuplicationSummary(lines=1000, duplicated_lines=2, percent=0.2, blocks=1),
        test_run=TestRunSummary(tests=10, failures=0, errors=1, skipped=2, time_s=3.5),
    )
    rows = {m.metric: (m.value, m.threshold, m.ok) for m in qa_metrics(qa)}
    assert rows == {
        "Line coverage": ("75.0 %", ">= 80 %", False),
        "Duplicated lines (symilar)": ("0.20 %", "<= 3 %", True),
        "Tests failed or in error": ("1 of 10 (2 skipped, 3.50 s)", "0", False),
    }


def test_cli_writes_the_release_files(app: typer.Typer, junit: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    args = ["verify", str(junit), "--release", "--release-dir", str(out), "--revision", "r1"]
    result = CliRunner().invoke(app, [*args, "--no-dependencies"])
    assert result.exit_code == 0, result.output
    md = (out / f"release-{__version__}.md").read_text(encoding="utf-8")
    html = (out / f"release-{__version__}.html").read_text(encoding="utf-8")
    assert "Revision r1;" in md
    assert "Revision r1;" in html
    assert "| Tests failed or in error | 1 of 3 (1 skipped," in md
    assert "release report written to" in result.stderr
    assert not (out / f"release-{__version__}.pdf").exists()


def test_cli_pdf_needs_release(app: typer.Typer, junit: Path) -> None:
    result = CliRunner().invoke(app, ["verify", str(junit), "--pdf"])
    assert result.exit_code == InvalidInput.exit_code


def test_no_chromium_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPPS_CHROMIUM", str(tmp_path / "no-such-browser"))
    assert find_chromium() is None
    (tmp_path / "r.html").write_text("<p>x</p>", encoding="utf-8")
    with pytest.raises(Unavailable, match="apt-get install chromium"):
        html_to_pdf(tmp_path / "r.html", tmp_path / "r.pdf")


@pytest.mark.skipif(
    find_chromium() is None and not os.environ.get("DPPS_REQUIRE_CHROMIUM"),
    reason="Chromium is not installed",
)
def test_cli_prints_the_pdf(app: typer.Typer, junit: Path, tmp_path: Path) -> None:
    args = ["verify", str(junit), "--release", "--release-dir", str(tmp_path), "--pdf"]
    result = CliRunner().invoke(app, [*args, "--no-dependencies", "--revision", "r1"])
    assert result.exit_code == 0, result.output
    pdf = (tmp_path / f"release-{__version__}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    assert len(pdf) > 10_000  # pages of tables, not an empty page
