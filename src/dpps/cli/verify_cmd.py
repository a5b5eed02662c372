"""``dpps verify``: turn JUnit XML from a test run into the verification report.

The report joins the use cases (and their tests) with the requirements registry, so it shows
the chain requirement -> use cases -> tests, or requirement -> analysis figure and margin.
The command only parses options, calls :mod:`dpps.verify` and writes the rendering; errors are
dpps exceptions (:class:`~dpps.core.errors.NotFound` for a missing file,
:class:`~dpps.core.errors.InvalidInput` for a malformed one) that the main CLI maps to exit
codes. ``--fail-under-full`` makes it a CI gate.
"""

from __future__ import annotations

import subprocess
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dpps.cli.common import command
from dpps.core.errors import InvalidInput
from dpps.core.version import __version__
from dpps.verify.pdf import html_to_pdf
from dpps.verify.qa import collect_qa
from dpps.verify.registry import load_registry
from dpps.verify.release import (
    build_release,
    expected_failures,
    release_summary,
    render_release_html,
    render_release_markdown,
)
from dpps.verify.render import (
    render_html,
    render_json,
    render_markdown,
    render_text,
    rich_report,
)
from dpps.verify.report import (
    Status,
    VerificationReport,
    build_report,
    parse_junit,
    totals_line,
)
from dpps.verify.requirements import load_requirements
from dpps.verify.trace import add_trace, read_benchmarks

#: Exit code of ``--fail-under-full`` when a use case is not fully verified.
EXIT_NOT_FULL = 10


class ReportFormat(StrEnum):
    """Output formats of the report."""

    TABLE = "table"
    MARKDOWN = "markdown"
    HTML = "html"
    JSON = "json"


def _render(report_format: ReportFormat, report: VerificationReport) -> str:
    renderers = {
        ReportFormat.TABLE: render_text,
        ReportFormat.MARKDOWN: render_markdown,
        ReportFormat.HTML: render_html,
        ReportFormat.JSON: render_json,
    }
    return renderers[report_format](report)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        raise InvalidInput(f"cannot write the report to {path}: {exc.strerror}") from exc


def _git_revision() -> str:
    """``git describe --always --dirty`` of the working directory, or ``unknown``."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def verify(
    junit: Annotated[
        list[Path],
        typer.Argument(
            help="JUnit XML file(s) written by pytest --junitxml; several files (runs) are "
            "merged, a test failing in any of them counts as failed.",
            show_default=False,
        ),
    ],
    report_format: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            "-f",
            help="Output format: table (terminal), markdown, html (self-contained page) or json.",
            case_sensitive=False,
        ),
    ] = ReportFormat.TABLE,
    coverage: Annotated[
        Path | None,
        typer.Option(help="Cobertura coverage.xml (pytest --cov-report=xml) to add coverage."),
    ] = None,
    ruff: Annotated[
        Path | None,
        typer.Option(help="Output of 'ruff check --output-format json' to add lint findings."),
    ] = None,
    mypy: Annotated[
        Path | None,
        typer.Option(help="Text output of mypy to add the type-error count."),
    ] = None,
    dependencies: Annotated[
        bool,
        typer.Option(
            "--dependencies/--no-dependencies",
            help="List installed dependencies of dpps with version and license.",
        ),
    ] = True,
    duplication: Annotated[
        Path | None,
        typer.Option(help="Text output of pylint's 'symilar' to add the duplication figure."),
    ] = None,
    contracts: Annotated[
        Path | None,
        typer.Option(help="Text output of 'lint-imports' to add the import-contract status."),
    ] = None,
    benchmarks: Annotated[
        Path | None,
        typer.Option(
            help="Output of 'benchmarks/run_all.py --json': its figures replace the recorded "
            "ones in the analyses of the requirements."
        ),
    ] = None,
    registry: Annotated[
        Path | None,
        typer.Option(help="Use-case registry YAML to report against (default: the packaged one)."),
    ] = None,
    requirements: Annotated[
        Path | None,
        typer.Option(help="Requirements registry YAML to trace to (default: the packaged one)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to this file instead of stdout."),
    ] = None,
    release: Annotated[
        bool,
        typer.Option(
            "--release",
            help="Write the release report (components and versions, use cases, requirement "
            "coverage, QA metrics, known limitations) as release-<version>.html and .md into "
            "--release-dir, instead of the verification report.",
        ),
    ] = False,
    pdf: Annotated[
        bool,
        typer.Option(
            "--pdf",
            help="With --release, also print the HTML to release-<version>.pdf with headless "
            "Chromium ($DPPS_CHROMIUM or chromium on the PATH); an error if there is none.",
        ),
    ] = False,
    release_dir: Annotated[
        Path, typer.Option(help="Directory of the release report files.")
    ] = Path("reports"),
    revision: Annotated[
        str | None,
        typer.Option(help="Source revision named in the release report (default: git describe)."),
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Same as --format json: machine-readable output.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--fail-under-full",
            help=f"Exit with code {EXIT_NOT_FULL} unless every use case is fully verified "
            "(after writing the report).",
        ),
    ] = False,
) -> None:
    """Report per use case its tests (full/partial/none), per requirement its evidence.

    Evidence is the use cases tracing to the requirement, or its analysis figures and margins,
    or its inspection; requirements verified by nothing are flagged. --release writes the
    release document instead.
    """
    if json_:
        report_format = ReportFormat.JSON
    if pdf and not release:
        raise InvalidInput("--pdf prints the release report: give --release too")
    usecases = load_registry(registry)
    reqs = load_requirements(requirements)
    cases = parse_junit(junit)
    qa = collect_qa(
        coverage=coverage,
        ruff=ruff,
        mypy=mypy,
        dependencies=dependencies,
        duplication=duplication,
        contracts=contracts,
        junit=junit,
    )
    bench = read_benchmarks(benchmarks) if benchmarks is not None else None
    report = add_trace(
        build_report(usecases, cases, qa=qa, sources=junit),
        reqs,
        usecases,
        bench,
        str(benchmarks) if benchmarks is not None else "",
    )

    if release:
        document = build_release(
            report, __version__, revision or _git_revision(), expected_failures(junit)
        )
        stem = release_dir / f"release-{__version__}"  # the version's dots are no suffix
        _write(Path(f"{stem}.html"), render_release_html(document))
        _write(Path(f"{stem}.md"), render_release_markdown(document))
        written = f"{stem}.html and {stem}.md"
        if pdf:
            html_to_pdf(Path(f"{stem}.html"), Path(f"{stem}.pdf"))
            written = f"{stem}.html, {stem}.md and {stem}.pdf"
        typer.echo(f"{release_summary(document)}; release report written to {written}", err=True)
    elif output is not None:
        _write(output, _render(report_format, report))
        typer.echo(f"{totals_line(report)}; report written to {output}", err=True)
    elif report_format is ReportFormat.TABLE:
        Console(highlight=False).print(rich_report(report))
    else:
        typer.echo(_render(report_format, report), nl=False)

    if strict and any(row.status is not Status.FULL for row in report.usecases):
        not_full = [row.usecase.id for row in report.usecases if row.status is not Status.FULL]
        typer.echo(f"not fully verified ({len(not_full)}): {', '.join(not_full)}", err=True)
        raise typer.Exit(EXIT_NOT_FULL)


def register(app: typer.Typer) -> None:
    """Add ``verify`` to the main ``dpps`` application."""
    command(app, verify, "verify")
