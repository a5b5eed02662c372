"""Renderers of a :class:`~dpps.verify.report.VerificationReport`: markdown, HTML, JSON, terminal.

Pure functions from the report to text (or rich renderables), so the CLI only chooses one and
writes the result. Each shows the same content: the totals line, one row per use case, the
tests per use case, unknown use-case ids, the requirements with their evidence (use cases or
analysis figures and margins) when a requirements registry was joined, and the quality figures
that were given.
"""

from __future__ import annotations

import html
import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from dpps.verify.qa import QaFigures
from dpps.verify.report import (
    FigureResult,
    RequirementResult,
    RequirementStatus,
    Status,
    UseCaseResult,
    VerificationReport,
    requirement_totals_line,
    totals_line,
)

_COLUMNS = (
    "Use case",
    "Name",
    "Subsystem",
    "Requirements",
    "Tests",
    "Passed",
    "Failed",
    "Skipped",
    "Status",
)
_RICH_STYLE = {Status.FULL: "green", Status.PARTIAL: "yellow", Status.NONE: "red"}
_REQ_COLUMNS = ("Requirement", "Name", "Method", "Evidence", "Status")
_REQ_STYLE = {
    RequirementStatus.VERIFIED: "green",
    RequirementStatus.INSPECTED: "cyan",
    RequirementStatus.PARTIAL: "yellow",
    RequirementStatus.NOT_MET: "red",
    RequirementStatus.NONE: "red",
}
_REQ_CLASS = {
    RequirementStatus.VERIFIED: "full",
    RequirementStatus.INSPECTED: "inspected",
    RequirementStatus.PARTIAL: "partial",
    RequirementStatus.NOT_MET: "none",
    RequirementStatus.NONE: "none",
}


def number(value: float) -> str:
    """Readable at any scale: ``1,587``, ``3.22``, ``0.00583``; never exponent notation."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.3g}" if value >= 10 else f"{value:.2f}"
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.2e}"


def figure_line(fig: FigureResult) -> str:
    """``612 MB/s measured, at least 6 PB/yr required (190.1 MB/s): margin 3.22x``."""
    bound = "at least" if fig.compare == "at_least" else "at most"
    per_item = (
        f" x {fig.measured.bytes_per_item:,.0f} B"
        if fig.measured.bytes_per_item is not None
        else ""
    )
    return (
        f"{fig.measured}{per_item} measured, {bound} {fig.required} required "
        f"(= {number(fig.required_in_measured_unit)} {fig.measured.unit}): "
        f"margin {number(fig.margin)}x"
    )


def evidence(result: RequirementResult) -> str:
    """One cell: the use cases with their status, the figures' margins, or the finding."""
    parts = [
        f"{number(fig.margin)}x ({'met' if fig.met else 'NOT met'})" for fig in result.figures
    ]
    parts += [f"{uc.id} {uc.status.value} ({uc.tests} tests)" for uc in result.usecases]
    if result.requirement.inspection is not None:
        parts.append("inspection: " + ", ".join(result.requirement.inspection.evidence))
    return "; ".join(parts) or "nothing"


def requirement_cells(result: RequirementResult) -> tuple[str, ...]:
    """The row of the requirements table."""
    req = result.requirement
    return (req.id, req.name, req.verification.value, evidence(result), result.status.value)


def source_line(result: RequirementResult, documents: dict[str, str]) -> str:
    """``<document title> (<file>), <section>``: where the requirement's text comes from."""
    src = result.requirement.source
    title = documents.get(src.document, "")
    where = f"{title} ({src.document})" if title else src.document
    return f"{where}, {src.section}" if src.section else where


def _cells(row: UseCaseResult) -> tuple[str, ...]:
    uc = row.usecase
    return (
        uc.id,
        uc.name,
        uc.subsystem,
        ", ".join(uc.requirements) or "-",
        str(len(row.tests)),
        str(row.passed),
        str(row.failed),
        str(row.skipped),
        row.status.value,
    )


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f} %"


def _qa_lines(qa: QaFigures) -> list[tuple[str, str]]:
    """(label, value) pairs of the quality figures that were given."""
    lines = []
    if qa.coverage is not None:
        cov = qa.coverage
        lines.append(
            (
                "Line coverage",
                f"{_pct(cov.line_rate)} ({cov.lines_covered} of {cov.lines_valid} lines)",
            )
        )
        if cov.branch_rate is not None:
            lines.append(
                (
                    "Branch coverage",
                    f"{_pct(cov.branch_rate)} ({cov.branches_covered} "
                    f"of {cov.branches_valid} branches)",
                )
            )
    if qa.ruff is not None:
        rules = ", ".join(f"{rule}: {n}" for rule, n in qa.ruff.by_rule.items())
        lines.append(("Ruff findings", f"{qa.ruff.total}" + (f" ({rules})" if rules else "")))
    if qa.mypy is not None:
        lines.append(("Mypy errors", f"{qa.mypy.errors} in {qa.mypy.files} files"))
    if qa.duplication is not None:
        dup = qa.duplication
        lines.append(
            (
                "Duplication (symilar)",
                f"{dup.percent:.2f} % ({dup.duplicated_lines:,} of {dup.lines:,} lines, "
                f"{dup.blocks} blocks)",
            )
        )
    if qa.contracts is not None:
        con = qa.contracts
        broken = f": {'; '.join(con.broken_names)}" if con.broken_names else ""
        lines.append(("Import contracts", f"{con.kept} kept, {con.broken} broken{broken}"))
    if qa.test_run is not None:
        run = qa.test_run
        lines.append(
            (
                "Test run",
                f"{run.tests:,} tests ({run.failures} failed, {run.errors} errors, "
                f"{run.skipped} skipped) in {run.time_s:,.0f} s",
            )
        )
    return lines


# --- markdown ---------------------------------------------------------------------------------


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return lines


def markdown_requirements(report: VerificationReport) -> list[str]:
    """The requirements section: table, what nothing verifies, the analyses, then each text."""
    if report.requirement_totals is None:
        return []
    out = ["", "## Requirements", "", f"**{requirement_totals_line(report)}**", ""]
    out += _md_table(_REQ_COLUMNS, [requirement_cells(r) for r in report.requirements])
    nothing = [r for r in report.requirements if r.status is RequirementStatus.NONE]
    if nothing:
        out += ["", "### Verified by nothing", ""]
        out += [f"- **{r.requirement.id}** {_md(r.requirement.name)}: {r.reason}" for r in nothing]
    if report.untraced_usecases:
        out += ["", "Use cases tracing to no requirement: " + ", ".join(report.untraced_usecases)]
    analysed = [r for r in report.requirements if r.figures]
    if analysed:
        out += ["", "### Verification by analysis", ""]
        for r in analysed:
            out.append(f"- **{r.requirement.id}** {_md(r.requirement.name)}: {r.status.value}")
            for fig in r.figures:
                out.append(f"  - {_md(fig.figure)}: {_md(figure_line(fig))}")
                out.append(f"    (measured: {_md(fig.measured_from)})")
    out += ["", "### Requirement texts and sources", ""]
    for r in report.requirements:
        req = r.requirement
        text = f'"{_md(req.text)}"' if req.text else "(the source shows only the name)"
        out.append(f"- **{req.id}** {_md(req.name)}: {text}")
        out.append(f"  Source: {_md(source_line(r, report.documents))}.")
        if req.official_id:
            out.append(f"  Official id: {_md(req.official_id)}.")
        if req.inspection is not None:
            out.append(f"  Inspection finding: {_md(req.inspection.finding)}")
        if req.note:
            out.append(f"  Note: {_md(req.note)}")
    return out


def render_markdown(report: VerificationReport) -> str:
    """GitHub-flavoured markdown, for CI summaries and merge-request comments."""
    out = ["# dpps verification report", ""]
    out.append(
        f"Generated {report.generated_at:%Y-%m-%d %H:%M:%S %Z} from "
        + (", ".join(f"`{s}`" for s in report.sources) or "no file")
        + "."
    )
    out += [
        "",
        f"**{totals_line(report)}** ({report.totals.linked_tests} of "
        f"{report.totals.tests} tests linked to a use case)",
        "",
    ]
    out += _md_table(_COLUMNS, [_cells(row) for row in report.usecases])
    out += ["", "## Tests per use case", ""]
    for row in report.usecases:
        if row.tests:
            out.append(f"- **{_md(row.usecase.id)}** {_md(row.usecase.name)}")
            out += [f"  - `{_md(t.id)}`: {t.outcome.value}" for t in row.tests]
    out += markdown_requirements(report)
    if report.unknown_usecases:
        out += ["", "## Use-case ids not in the registry", ""]
        for usecase_id, tests in report.unknown_usecases.items():
            out.append(f"- **{_md(usecase_id)}**: " + ", ".join(f"`{_md(t)}`" for t in tests))
    qa_lines = _qa_lines(report.qa)
    if qa_lines:
        out += ["", "## Quality", ""] + [f"- {label}: {_md(value)}" for label, value in qa_lines]
    if report.qa.dependencies:
        out += ["", "## Dependencies", ""]
        out += _md_table(
            ("Package", "Version", "License"),
            [(d.name, d.version, d.license) for d in report.qa.dependencies],
        )
    return "\n".join(out) + "\n"


# --- HTML -------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.full { background: #d9f2d9; } .partial { background: #fff3c4; } .none { background: #f8d7da; }
.inspected { background: #d7eef8; }
.passed { color: #1a7f37; } .failed { color: #cf222e; } .skipped { color: #9a6700; }
code { font-size: 90%; }
"""


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(header: tuple[str, ...], rows: list[tuple[str, ...]], classes: list[str]) -> str:
    head = "".join(f"<th>{_h(c)}</th>" for c in header)
    body = "".join(
        f'<tr class="{_h(cls)}">' + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>"
        for row, cls in zip(rows, classes, strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_requirements(report: VerificationReport) -> list[str]:
    """The requirements section in HTML, with the same content as the markdown one."""
    if report.requirement_totals is None:
        return []
    parts = [
        "<h2>Requirements</h2>",
        f"<p><strong>{_h(requirement_totals_line(report))}</strong></p>",
        _html_table(
            _REQ_COLUMNS,
            [requirement_cells(r) for r in report.requirements],
            [_REQ_CLASS[r.status] for r in report.requirements],
        ),
    ]
    nothing = [r for r in report.requirements if r.status is RequirementStatus.NONE]
    if nothing:
        parts.append("<h3>Verified by nothing</h3><ul>")
        parts += [
            f"<li><strong>{_h(r.requirement.id)}</strong> {_h(r.requirement.name)}: "
            f"{_h(r.reason)}</li>"
            for r in nothing
        ]
        parts.append("</ul>")
    if report.untraced_usecases:
        untraced = ", ".join(report.untraced_usecases)
        parts.append(f"<p>Use cases tracing to no requirement: {_h(untraced)}</p>")
    analysed = [r for r in report.requirements if r.figures]
    if analysed:
        parts.append("<h3>Verification by analysis</h3><ul>")
        for r in analysed:
            figures = "".join(
                f"<li>{_h(fig.figure)}: <strong>{_h(figure_line(fig))}</strong> "
                f"(measured: {_h(fig.measured_from)})</li>"
                for fig in r.figures
            )
            parts.append(
                f"<li><strong>{_h(r.requirement.id)}</strong> {_h(r.requirement.name)}: "
                f"{_h(r.status.value)}<ul>{figures}</ul></li>"
            )
        parts.append("</ul>")
    parts.append("<h3>Requirement texts and sources</h3><dl>")
    for r in report.requirements:
        req = r.requirement
        text = f"&ldquo;{_h(req.text)}&rdquo;" if req.text else "(the source shows only the name)"
        parts.append(f"<dt><strong>{_h(req.id)}</strong> {_h(req.name)}</dt><dd>{text}</dd>")
        parts.append(f"<dd>Source: {_h(source_line(r, report.documents))}.</dd>")
        if req.official_id:
            parts.append(f"<dd>Official id: {_h(req.official_id)}.</dd>")
        if req.inspection is not None:
            parts.append(f"<dd>Inspection finding: {_h(req.inspection.finding)}</dd>")
        if req.note:
            parts.append(f"<dd>Note: {_h(req.note)}</dd>")
    parts.append("</dl>")
    return parts


def render_html(report: VerificationReport) -> str:
    """One self-contained HTML page (inline CSS, no scripts), every value escaped."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>dpps verification report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>dpps verification report</h1>",
        f"<p>Generated {_h(f'{report.generated_at:%Y-%m-%d %H:%M:%S %Z}')} from "
        + (", ".join(f"<code>{_h(s)}</code>" for s in report.sources) or "no file")
        + ".</p>",
        f"<p><strong>{_h(totals_line(report))}</strong> ({report.totals.linked_tests} of "
        f"{report.totals.tests} tests linked to a use case)</p>",
        _html_table(
            _COLUMNS,
            [_cells(r) for r in report.usecases],
            [r.status.value for r in report.usecases],
        ),
        "<h2>Tests per use case</h2><dl>",
    ]
    for row in report.usecases:
        if row.tests:
            parts.append(f"<dt><strong>{_h(row.usecase.id)}</strong> {_h(row.usecase.name)}</dt>")
            parts += [
                f'<dd><code>{_h(t.id)}</code>: <span class="{_h(t.outcome.value)}">'
                f"{_h(t.outcome.value)}</span></dd>"
                for t in row.tests
            ]
    parts.append("</dl>")
    parts += html_requirements(report)
    if report.unknown_usecases:
        parts.append("<h2>Use-case ids not in the registry</h2><ul>")
        parts += [
            f"<li><strong>{_h(uid)}</strong>: "
            + ", ".join(f"<code>{_h(t)}</code>" for t in tests)
            + "</li>"
            for uid, tests in report.unknown_usecases.items()
        ]
        parts.append("</ul>")
    qa_lines = _qa_lines(report.qa)
    if qa_lines:
        parts.append("<h2>Quality</h2><ul>")
        parts += [f"<li>{_h(label)}: {_h(value)}</li>" for label, value in qa_lines]
        parts.append("</ul>")
    if report.qa.dependencies:
        deps = report.qa.dependencies
        parts.append("<h2>Dependencies</h2>")
        parts.append(
            _html_table(
                ("Package", "Version", "License"),
                [(d.name, d.version, d.license) for d in deps],
                ["" for _ in deps],
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --- JSON -------------------------------------------------------------------------------------


def render_json(report: VerificationReport) -> str:
    """The report as JSON; ``VerificationReport.model_validate_json`` reads it back."""
    return report.model_dump_json(indent=2) + "\n"


# --- terminal ---------------------------------------------------------------------------------


def rich_report(report: VerificationReport) -> RenderableType:
    """Rich renderables for the terminal: the use-case table, totals and quality figures."""
    # Short headers and unwrapped ids keep the table readable in an 80-column terminal; the
    # requirements column appears only when some use case has requirements.
    with_reqs = any(row.usecase.requirements for row in report.usecases)
    table = Table(title="dpps verification report", title_justify="left")
    table.add_column("Use case", no_wrap=True)
    table.add_column("Name", ratio=1)
    table.add_column("Subsystem", no_wrap=True)
    if with_reqs:
        table.add_column("Requirements")
    for column in ("Tests", "Pass", "Fail", "Skip"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    for row in report.usecases:
        cells = [Text(c) for c in _cells(row)]
        cells[-1].stylize(_RICH_STYLE[row.status])
        if not with_reqs:
            del cells[3]
        table.add_row(*cells)
    items: list[RenderableType] = [table, Text(totals_line(report), style="bold")]
    for usecase_id, tests in report.unknown_usecases.items():
        items.append(Text(f"Unknown use case {usecase_id}: {', '.join(tests)}", style="red"))
    items += _rich_requirements(report)
    qa_lines = _qa_lines(report.qa)
    if qa_lines:
        qa = Table(title="Quality", show_header=False)
        qa.add_column("Figure")
        qa.add_column("Value")
        for label, value in qa_lines:
            qa.add_row(label, Text(value))
        items.append(qa)
    if report.qa.dependencies:
        deps = Table(title="Dependencies")
        for column in ("Package", "Version", "License"):
            deps.add_column(column)
        for d in report.qa.dependencies:
            deps.add_row(Text(d.name), Text(d.version), Text(d.license))
        items.append(deps)
    return Group(*items)


def _rich_requirements(report: VerificationReport) -> list[RenderableType]:
    if report.requirement_totals is None:
        return []
    table = Table(title="Requirements", title_justify="left")
    table.add_column("Requirement", no_wrap=True)
    table.add_column("Name", ratio=1)
    table.add_column("Method", no_wrap=True)
    table.add_column("Evidence", ratio=2)
    table.add_column("Status", no_wrap=True)
    for result in report.requirements:
        cells = [Text(c) for c in requirement_cells(result)]
        cells[-1].stylize(_REQ_STYLE[result.status])
        table.add_row(*cells)
    items: list[RenderableType] = [table, Text(requirement_totals_line(report), style="bold")]
    for result in report.requirements:
        for fig in result.figures:
            items.append(Text(f"{result.requirement.id}: {figure_line(fig)}"))
    for result in report.requirements:
        if result.status is RequirementStatus.NONE:
            items.append(
                Text(
                    f"Verified by nothing: {result.requirement.id} ({result.reason})", style="red"
                )
            )
    if report.untraced_usecases:
        items.append(
            Text(f"Use cases tracing to no requirement: {', '.join(report.untraced_usecases)}")
        )
    return items


def render_text(report: VerificationReport, width: int = 120) -> str:
    """The terminal rendering as plain text (no colours), for writing to a file."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(
        rich_report(report)
    )
    return buffer.getvalue()
