"""The release report: one document per version that a verification review can sign.

It gathers what the observatory's own release reports show: the components and their
versions, the use-case table with revisions, requirement coverage, QA metrics against their
thresholds, and the known limitations. Limitations are derived, not written by hand, so the
document cannot claim more than the run shows: expected failures (xfail) with their reasons,
requirements not verified, use cases not fully verified.

Building is pure given its inputs (the report, the component versions, the expected failures
read from the JUnit XML); rendering is pure too; the CLI writes the files.
"""

from __future__ import annotations

import html
import platform
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from dpps.core.errors import InvalidInput, NotFound
from dpps.verify.qa import QaFigures
from dpps.verify.render import (
    figure_line,
    html_requirements,
    markdown_requirements,
    number,
)
from dpps.verify.report import (
    RequirementStatus,
    Status,
    VerificationReport,
    requirement_totals_line,
    totals_line,
)

#: The field's and the platform's software dpps integrates, listed with their versions.
INTEGRATED = (
    "ctapipe",
    "pyirf",
    "gammapy",
    "astropy",
    "protozfits",
    "SQLAlchemy",
    "psycopg",
    "FastAPI",
    "dask",
    "distributed",
    "xrootd",
    "fsspec",
)

#: Which dpps packages make up each subsystem of the use-case registry.
SUBSYSTEM_PACKAGES = {
    "BDMS": "dpps.bdms, dpps.catalog, dpps.storage",
    "WMS": "dpps.wms",
    "PIPELINES": "dpps.pipelines (simpipe, datapipe, calibpipe, qualpipe)",
    "OMS": "dpps.oms, dpps.cli",
    "CORE": "dpps.core",
    "AIV": "dpps.verify, dpps.testbed",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Component(_Frozen):
    """One line of the components table."""

    name: str
    version: str
    note: str = ""


class ExpectedFailure(_Frozen):
    """A test marked xfail: a known defect, with the reason the test gives."""

    test: str
    reason: str


class QaMetric(_Frozen):
    """One QA metric against its threshold, as the observatory's release reports tabulate."""

    metric: str
    value: str
    threshold: str
    ok: bool | None  # None: no threshold applies


class ReleaseReport(_Frozen):
    """Everything the release document shows."""

    version: str
    revision: str
    components: tuple[Component, ...]
    verification: VerificationReport
    qa_metrics: tuple[QaMetric, ...]
    limitations: tuple[str, ...]


def components(version: str, revision: str) -> tuple[Component, ...]:
    """dpps with its subsystems, the runtime, and the integrated software that is installed."""
    rows = [Component(name="dpps", version=version, note=f"revision {revision}")]
    rows += [
        Component(name=f"dpps {name}", version=version, note=packages)
        for name, packages in SUBSYSTEM_PACKAGES.items()
    ]
    rows.append(Component(name="Python", version=platform.python_version()))
    rows.append(Component(name="SQLite (embedded catalog)", version=sqlite3.sqlite_version))
    for name in INTEGRATED:
        try:
            rows.append(Component(name=name, version=metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append(Component(name=name, version="not installed"))
    return tuple(rows)


def expected_failures(paths: Sequence[Path]) -> tuple[ExpectedFailure, ...]:
    """The xfail tests of JUnit XML files and their reasons (``<skipped type="pytest.xfail">``)."""
    found: dict[str, str] = {}
    for path in paths:
        if not path.is_file():
            raise NotFound(f"JUnit XML file {path} does not exist")
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise InvalidInput(f"{path} is not valid XML: {exc}") from exc
        for case in root.iter("testcase"):
            skipped = case.find("skipped")
            if skipped is None or skipped.get("type") != "pytest.xfail":
                continue
            classname, name = case.get("classname", ""), case.get("name", "")
            test = f"{classname}::{name}" if classname else name
            found[test] = " ".join(skipped.get("message", "").split())
    return tuple(ExpectedFailure(test=t, reason=r) for t, r in sorted(found.items()))


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f} %"


def qa_metrics(qa: QaFigures) -> tuple[QaMetric, ...]:
    """The QA figures given, each with its threshold.

    Coverage >= 80 % and duplicated lines <= 3 % are the thresholds of the observatory's DPPS
    release report (its SonarQube quality gate, seed 000_dd1518398ae50b53.txt); the others are
    this project's own gates in scripts/test.sh: zero findings, errors, broken contracts and
    failed tests.
    """
    rows = []
    if qa.coverage is not None:
        rate = qa.coverage.line_rate
        rows.append(
            QaMetric(metric="Line coverage", value=_pct(rate), threshold=">= 80 %", ok=rate >= 0.8)
        )
        if qa.coverage.branch_rate is not None:
            rows.append(
                QaMetric(
                    metric="Branch coverage",
                    value=_pct(qa.coverage.branch_rate),
                    threshold="-",
                    ok=None,
                )
            )
    if qa.duplication is not None:
        pct = qa.duplication.percent
        rows.append(
            QaMetric(
                metric="Duplicated lines (symilar)",
                value=f"{pct:.2f} %",
                threshold="<= 3 %",
                ok=pct <= 3.0,
            )
        )
    if qa.ruff is not None:
        rows.append(
            QaMetric(
                metric="Ruff findings",
                value=str(qa.ruff.total),
                threshold="0",
                ok=qa.ruff.total == 0,
            )
        )
    if qa.mypy is not None:
        rows.append(
            QaMetric(
                metric="Mypy errors (strict)",
                value=str(qa.mypy.errors),
                threshold="0",
                ok=qa.mypy.errors == 0,
            )
        )
    if qa.contracts is not None:
        rows.append(
            QaMetric(
                metric="Import contracts broken",
                value=f"{qa.contracts.broken} of {qa.contracts.kept + qa.contracts.broken}",
                threshold="0",
                ok=qa.contracts.broken == 0,
            )
        )
    if qa.test_run is not None:
        run = qa.test_run
        bad = run.failures + run.errors
        rows.append(
            QaMetric(
                metric="Tests failed or in error",
                value=f"{bad} of {run.tests:,} ({run.skipped} skipped, {number(run.time_s)} s)",
                threshold="0",
                ok=bad == 0,
            )
        )
    return tuple(rows)


def limitations(report: VerificationReport, xfails: Sequence[ExpectedFailure]) -> tuple[str, ...]:
    """What this release does not do or show, from the run itself."""
    out = [f"Known defect (expected failure) {x.test}: {x.reason}" for x in xfails]
    for result in report.requirements:
        req = result.requirement
        if result.status is RequirementStatus.NOT_MET:
            figures = "; ".join(figure_line(f) for f in result.figures if not f.met)
            out.append(f"{req.id} {req.name} is not met: {figures}.")
        elif result.status is RequirementStatus.NONE:
            out.append(f"{req.id} {req.name} is verified by nothing: {result.reason}.")
        elif result.status is RequirementStatus.PARTIAL:
            out.append(f"{req.id} {req.name} is partly verified: {result.reason}.")
    for row in report.usecases:
        if row.status is Status.PARTIAL:
            out.append(
                f"Use case {row.usecase.id} {row.usecase.name} is partial: {row.failed} failed, "
                f"{row.skipped} skipped of {len(row.tests)} tests."
            )
        elif row.status is Status.NONE:
            out.append(f"Use case {row.usecase.id} {row.usecase.name} has no test in this run.")
    return tuple(out)


def build_release(
    report: VerificationReport,
    version: str,
    revision: str,
    xfails: Sequence[ExpectedFailure] = (),
) -> ReleaseReport:
    """The release report of ``version`` from a traced verification report."""
    return ReleaseReport(
        version=version,
        revision=revision,
        components=components(version, revision),
        verification=report,
        qa_metrics=qa_metrics(report.qa),
        limitations=limitations(report, xfails),
    )


# --- rendering ----------------------------------------------------------------------------------


def _md(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]


def _ok(ok: bool | None) -> str:
    return "-" if ok is None else ("OK" if ok else "FAIL")


def _usecase_rows(release: ReleaseReport) -> list[tuple[object, ...]]:
    return [
        (
            row.usecase.id,
            row.usecase.name,
            row.usecase.subsystem,
            row.usecase.revision,
            ", ".join(row.usecase.requirements) or "-",
            len(row.tests),
            row.passed,
            row.status.value,
        )
        for row in release.verification.usecases
    ]


_UC_HEADER = ("UC ID", "Name", "Subsystem", "Rev.", "Requirements", "TCs", "Passed", "Status")


def render_release_markdown(release: ReleaseReport) -> str:
    """The release document as Markdown."""
    rep = release.verification
    out = [
        f"# dpps {release.version} release report",
        "",
        f"Revision {release.revision}; generated {rep.generated_at:%Y-%m-%d %H:%M:%S %Z} from "
        + (", ".join(f"`{s}`" for s in rep.sources) or "no test results")
        + ".",
        "",
        "## Components",
        "",
    ]
    out += _md_table(
        ("Component", "Version", "Note"), [(c.name, c.version, c.note) for c in release.components]
    )
    out += ["", "## Use cases", "", f"**{totals_line(rep)}**", ""]
    out += _md_table(_UC_HEADER, _usecase_rows(release))
    if rep.requirement_totals is not None:
        out += markdown_requirements(rep)
    out += ["", "## QA metrics", ""]
    out += _md_table(
        ("Metric", "Value", "Threshold", "Status"),
        [(m.metric, m.value, m.threshold, _ok(m.ok)) for m in release.qa_metrics],
    )
    out += ["", "## Known limitations", ""]
    out += [f"- {_md(item)}" for item in release.limitations] or ["- none found in this run"]
    return "\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 80em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td:first-child { white-space: nowrap; }
.full, .OK { background: #d9f2d9; } .partial { background: #fff3c4; }
.none, .FAIL { background: #f8d7da; } .inspected { background: #d7eef8; }
@media print { body { margin: 0; } h2 { break-before: page; } }
"""


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], classes: Sequence[str] | None = None
) -> str:
    head = "".join(f"<th>{_h(c)}</th>" for c in header)
    body = "".join(
        (f'<tr class="{_h(cls)}">' if cls else "<tr>")
        + "".join(f"<td>{_h(c)}</td>" for c in row)
        + "</tr>"
        for row, cls in zip(rows, classes or [""] * len(rows), strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_release_html(release: ReleaseReport) -> str:
    """The release document as one self-contained HTML page (inline CSS, no scripts)."""
    rep = release.verification
    title = f"dpps {release.version} release report"
    sources = ", ".join(f"<code>{_h(s)}</code>" for s in rep.sources) or "no test results"
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{_h(title)}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_h(title)}</h1>",
        f"<p>Revision {_h(release.revision)}; generated "
        f"{_h(f'{rep.generated_at:%Y-%m-%d %H:%M:%S %Z}')} from {sources}.</p>",
        "<h2>Components</h2>",
        _html_table(
            ("Component", "Version", "Note"),
            [(c.name, c.version, c.note) for c in release.components],
        ),
        "<h2>Use cases</h2>",
        f"<p><strong>{_h(totals_line(rep))}</strong></p>",
        _html_table(
            _UC_HEADER, _usecase_rows(release), [row.status.value for row in rep.usecases]
        ),
    ]
    if rep.requirement_totals is not None:
        parts += html_requirements(rep)
    parts.append("<h2>QA metrics</h2>")
    parts.append(
        _html_table(
            ("Metric", "Value", "Threshold", "Status"),
            [(m.metric, m.value, m.threshold, _ok(m.ok)) for m in release.qa_metrics],
            [_ok(m.ok) for m in release.qa_metrics],
        )
    )
    parts.append("<h2>Known limitations</h2><ul>")
    parts += [f"<li>{_h(item)}</li>" for item in release.limitations] or [
        "<li>none found in this run</li>"
    ]
    parts.append("</ul></body></html>")
    return "\n".join(parts) + "\n"


def release_summary(release: ReleaseReport) -> str:
    """One line for the terminal after the files are written."""
    line = totals_line(release.verification)
    reqs = requirement_totals_line(release.verification)
    return f"dpps {release.version}: {line}" + (f"; {reqs}" if reqs else "")
