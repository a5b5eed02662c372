"""The verification report from real JUnit XML, the QA parsers, the renderers and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dpps.cli.verify_cmd import register
from dpps.core.errors import InvalidInput, NotFound
from dpps.verify.qa import (
    QaFigures,
    collect_qa,
    installed_dependencies,
    read_coverage,
    read_mypy,
    read_ruff,
)
from dpps.verify.registry import load_registry
from dpps.verify.render import render_html, render_json, render_markdown, render_text
from dpps.verify.report import (
    CaseResult,
    Outcome,
    Status,
    VerificationReport,
    build_report,
    classify,
    parse_junit,
)

SAMPLE_TESTS = """
import pytest

@pytest.mark.verifies_usecase("UC-110-1.2.1")
def test_query_ok():
    pass

@pytest.mark.verifies_usecase("UC-110-1.2.1")
@pytest.mark.verifies_requirement("REQ-BDMS-010")
def test_query_ok_too():
    pass

@pytest.mark.verifies_usecase("UC-110-1.6")
def test_replicate_ok():
    pass

@pytest.mark.verifies_usecase("UC-110-1.6")
def test_replicate_fails():
    assert False

@pytest.mark.verifies_usecase("UC-110-1.2.2")
@pytest.mark.skip(reason="needs PostgreSQL")
def test_metadata_skipped():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("setup breaks")

@pytest.mark.verifies_usecase("UC-110-1.3.1")
def test_retrieve_setup_error(broken):
    pass

@pytest.mark.verifies_usecase("UC-000-1")
class TestWorkflow:
    def test_runs(self):
        pass

    @pytest.mark.skip(reason="later")
    def test_later(self):
        pass

@pytest.mark.verifies_usecase("UC-100-2")
@pytest.mark.parametrize("tag", ["<b>bold</b>"])
def test_escaping(tag):
    pass

def test_unlinked():
    pass
"""

EXPECTED = {
    "UC-110-1.2.1": (Status.FULL, 2, 0, 0),
    "UC-110-1.6": (Status.PARTIAL, 1, 1, 0),
    "UC-110-1.2.2": (Status.PARTIAL, 0, 0, 1),
    "UC-110-1.3.1": (Status.PARTIAL, 0, 1, 0),
    "UC-000-1": (Status.FULL, 1, 0, 1),
    "UC-100-2": (Status.FULL, 1, 0, 0),
    "UC-110-1.1.1": (Status.NONE, 0, 0, 0),
}


def _run_pytest(directory: Path, junit: Path, *extra: str) -> None:
    """Run the sample tests in a real pytest subprocess, writing JUnit XML."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "dpps.verify.pytest_plugin",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "-q",
            *extra,
        ],
        cwd=directory,
        check=False,
        capture_output=True,
        timeout=120,
    )
    assert junit.is_file(), "pytest did not write the JUnit XML"


@pytest.fixture(scope="module")
def junit_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """JUnit XML of the sample tests: a plain run and a pytest-xdist run."""
    directory = tmp_path_factory.mktemp("sample")
    (directory / "test_sample.py").write_text(SAMPLE_TESTS, encoding="utf-8")
    files = {"plain": directory / "plain.xml", "xdist": directory / "xdist.xml"}
    _run_pytest(directory, files["plain"])
    _run_pytest(directory, files["xdist"], "-n", "2")
    return files


def _rows(report: VerificationReport) -> dict[str, tuple[Status, int, int, int]]:
    return {r.usecase.id: (r.status, r.passed, r.failed, r.skipped) for r in report.usecases}


@pytest.mark.parametrize("run", ["plain", "xdist"])
def test_classification_from_real_junit(junit_files: dict[str, Path], run: str) -> None:
    cases = parse_junit([junit_files[run]])
    assert len(cases) == 10
    report = build_report(load_registry(), cases, sources=[junit_files[run]])
    rows = _rows(report)
    for usecase_id, expected in EXPECTED.items():
        assert rows[usecase_id] == expected, usecase_id
    assert report.totals.usecases == len(load_registry())
    assert (report.totals.full, report.totals.partial) == (3, 3)
    assert report.totals.none == report.totals.usecases - 6
    assert report.totals.tests == 10
    assert report.totals.linked_tests == 9
    assert report.unknown_usecases == {}


def test_test_ids_and_requirements_are_read(junit_files: dict[str, Path]) -> None:
    cases = {c.id: c for c in parse_junit([junit_files["plain"]])}
    assert cases["test_sample::test_query_ok_too"].requirement_ids == ("REQ-BDMS-010",)
    assert cases["test_sample.TestWorkflow::test_later"].outcome is Outcome.SKIPPED
    # a test skipped before its call phase keeps its link (added by dpps.verify.pytest_plugin)
    assert cases["test_sample::test_metadata_skipped"].usecase_ids == ("UC-110-1.2.2",)
    assert cases["test_sample::test_retrieve_setup_error"].outcome is Outcome.FAILED


def test_runs_are_merged_worst_outcome_wins(junit_files: dict[str, Path], tmp_path: Path) -> None:
    rerun = tmp_path / "rerun.xml"
    rerun.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="test_sample" name="test_replicate_fails"/>'
        '<testcase classname="test_sample" name="test_metadata_skipped"/>'
        "</testsuite></testsuites>",
        encoding="utf-8",
    )
    cases = parse_junit([junit_files["plain"], rerun])
    rows = _rows(build_report(load_registry(), cases))
    assert rows["UC-110-1.6"] == (Status.PARTIAL, 1, 1, 0)  # failed once: stays failed
    assert rows["UC-110-1.2.2"] == (Status.FULL, 1, 0, 0)  # skipped, then passed


def test_classify_rules() -> None:
    assert classify(0, 0, 0) is Status.NONE
    assert classify(3, 0, 0) is Status.FULL
    assert classify(1, 0, 2) is Status.FULL
    assert classify(0, 0, 2) is Status.PARTIAL
    assert classify(2, 1, 0) is Status.PARTIAL
    assert classify(0, 1, 0) is Status.PARTIAL


def test_unknown_usecases_in_results_are_listed() -> None:
    case = CaseResult(id="t::x", outcome=Outcome.PASSED, usecase_ids=("UC-999-9",))
    report = build_report(load_registry(), [case])
    assert report.unknown_usecases == {"UC-999-9": ("t::x",)}
    assert "UC-999-9" in render_markdown(report)


def test_bad_junit_input(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        parse_junit([tmp_path / "absent.xml"])
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuites><testcase>", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not valid XML"):
        parse_junit([broken])
    other = tmp_path / "other.xml"
    other.write_text("<coverage/>", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not JUnit XML"):
        parse_junit([other])
    with pytest.raises(InvalidInput):
        parse_junit([tmp_path])
    with pytest.raises(InvalidInput):
        parse_junit([])


def _totals_line() -> str:
    """The sample run proves 3 use cases fully and 3 partly; the rest of the registry: none."""
    n = len(load_registry())
    return f"{n} use cases: 3 full, 3 partial, {n - 6} none"


# --- renderers ----------------------------------------------------------------------------------


@pytest.fixture
def report(junit_files: dict[str, Path]) -> VerificationReport:
    qa = QaFigures(ruff=None, mypy=None, dependencies=installed_dependencies())
    return build_report(
        load_registry(), parse_junit([junit_files["plain"]]), qa=qa, sources=["junit.xml"]
    )


def test_markdown_has_one_row_per_use_case(report: VerificationReport) -> None:
    text = render_markdown(report)
    rows = [line for line in text.splitlines() if line.startswith("| UC-")]
    assert len(rows) == len(report.usecases)
    assert any(r.startswith("| UC-110-1.6 |") and r.endswith("| partial |") for r in rows)
    assert any(r.startswith("| UC-110-1.2.1 |") and r.endswith("| full |") for r in rows)
    assert _totals_line() in text
    assert "`test_sample::test_replicate_fails`: failed" in text
    assert "| pydantic |" in text  # dependencies table


def test_html_is_escaped_and_self_contained(report: VerificationReport) -> None:
    text = render_html(report)
    assert text.startswith("<!DOCTYPE html>")
    assert "<b>bold</b>" not in text
    assert "test_escaping[&lt;b&gt;bold&lt;/b&gt;]" in text
    assert '<tr class="partial"><td>UC-110-1.6</td>' in text
    assert "<script" not in text
    page = text.lower()
    assert "http://" not in page  # nothing loads from outside
    assert "https://" not in page


def test_json_round_trips(report: VerificationReport) -> None:
    text = render_json(report)
    assert VerificationReport.model_validate_json(text) == report
    data = json.loads(text)
    assert data["totals"]["full"] == 3


def test_terminal_table(report: VerificationReport) -> None:
    text = render_text(report, width=160)
    assert "UC-110-1.3.1" in text
    assert _totals_line() in text
    assert "\x1b[" not in text


# --- QA parsers ---------------------------------------------------------------------------------

COVERAGE_XML = """<?xml version="1.0" ?>
<coverage version="7.6" timestamp="1" lines-valid="200" lines-covered="150" line-rate="0.75"
 branches-covered="30" branches-valid="60" branch-rate="0.5" complexity="0">
 <packages/>
</coverage>
"""

RUFF_JSON = [
    {"code": "F401", "filename": "a.py", "message": "unused import"},
    {"code": "F401", "filename": "b.py", "message": "unused import"},
    {"code": "E501", "filename": "a.py", "message": "line too long"},
    {"code": None, "filename": "c.py", "message": "SyntaxError: invalid syntax"},
]

MYPY_TEXT = """\
src/dpps/a.py:12: error: Incompatible types in assignment  [assignment]
src/dpps/a.py:14:5: error: Missing return statement  [return]
src/dpps/a.py:14: note: See https://mypy.readthedocs.io
src/dpps/b.py:3: error: Name "x" is not defined  [name-defined]
Found 3 errors in 2 files (checked 40 source files)
"""


def test_read_coverage(tmp_path: Path) -> None:
    path = tmp_path / "coverage.xml"
    path.write_text(COVERAGE_XML, encoding="utf-8")
    cov = read_coverage(path)
    assert (cov.line_rate, cov.lines_covered, cov.lines_valid) == (0.75, 150, 200)
    assert (cov.branch_rate, cov.branches_covered, cov.branches_valid) == (0.5, 30, 60)
    path.write_text(COVERAGE_XML.replace('branches-valid="60"', 'branches-valid="0"'))
    assert read_coverage(path).branch_rate is None
    path.write_text("<testsuites/>")
    with pytest.raises(InvalidInput, match="Cobertura"):
        read_coverage(path)


def test_read_ruff(tmp_path: Path) -> None:
    path = tmp_path / "ruff.json"
    path.write_text(json.dumps(RUFF_JSON), encoding="utf-8")
    ruff = read_ruff(path)
    assert ruff.total == 4
    assert ruff.by_rule == {"E501": 1, "F401": 2, "syntax-error": 1}
    path.write_text("[]")
    assert read_ruff(path).total == 0
    path.write_text('{"not": "a list"}')
    with pytest.raises(InvalidInput):
        read_ruff(path)


def test_read_mypy(tmp_path: Path) -> None:
    path = tmp_path / "mypy.txt"
    path.write_text(MYPY_TEXT, encoding="utf-8")
    mypy = read_mypy(path)
    assert (mypy.errors, mypy.files) == (3, 2)
    assert mypy.by_code == {"assignment": 1, "name-defined": 1, "return": 1}
    path.write_text("Success: no issues found in 40 source files\n")
    assert read_mypy(path).errors == 0
    path.write_text("hello\n")
    with pytest.raises(InvalidInput, match="mypy"):
        read_mypy(path)


def test_dependencies_have_versions_and_licenses() -> None:
    deps = {d.name.lower(): d for d in installed_dependencies()}
    assert {"pydantic", "typer", "sqlalchemy", "pyyaml"} <= set(deps)
    assert "pytest" not in deps  # test extra not included by default
    assert "dpps" not in deps
    assert deps["pydantic"].license == "MIT"
    assert all(d.version and d.license for d in deps.values())
    with_test = {d.name.lower() for d in installed_dependencies(extras=("test",))}
    assert "pytest" in with_test


def test_collect_qa_reads_all_inputs(tmp_path: Path) -> None:
    (tmp_path / "c.xml").write_text(COVERAGE_XML)
    (tmp_path / "r.json").write_text(json.dumps(RUFF_JSON))
    (tmp_path / "m.txt").write_text(MYPY_TEXT)
    qa = collect_qa(tmp_path / "c.xml", tmp_path / "r.json", tmp_path / "m.txt", False)
    assert qa.coverage is not None
    assert qa.ruff is not None
    assert qa.mypy is not None
    assert qa.dependencies == ()
    with pytest.raises(NotFound):
        collect_qa(coverage=tmp_path / "absent.xml", dependencies=False)


# --- CLI ----------------------------------------------------------------------------------------


@pytest.fixture
def app() -> typer.Typer:
    """A small app holding only ``verify``, as the main CLI registers it."""
    application = typer.Typer()
    register(application)

    @application.callback()
    def _root() -> None:
        """Keep ``verify`` a subcommand."""

    return application


def test_cli_json(app: typer.Typer, junit_files: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["verify", str(junit_files["plain"]), "--json"])
    assert result.exit_code == 0, result.output
    report = VerificationReport.model_validate_json(result.stdout)
    assert _rows(report)["UC-110-1.6"] == EXPECTED["UC-110-1.6"]
    assert report.qa.dependencies


def test_cli_html_to_file_with_qa(
    app: typer.Typer, junit_files: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "coverage.xml").write_text(COVERAGE_XML)
    out = tmp_path / "reports" / "verification.html"
    args = [
        "verify",
        str(junit_files["plain"]),
        str(junit_files["xdist"]),
        "--format",
        "html",
        "--coverage",
        str(tmp_path / "coverage.xml"),
        "-o",
        str(out),
        "--no-dependencies",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert "Line coverage: 75.0 %" in text
    assert _totals_line() in text
    assert "report written to" in result.stderr


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_cli_fail_under_full(app: typer.Typer, junit_files: dict[str, Path], fmt: str) -> None:
    args = ["verify", str(junit_files["plain"]), "-f", fmt, "--no-dependencies"]
    assert CliRunner().invoke(app, args).exit_code == 0
    result = CliRunner().invoke(app, [*args, "--fail-under-full"])
    assert result.exit_code == 10
    assert "UC-110-1.6" in result.stdout
    assert "not fully verified" in result.stderr


def test_cli_errors_map_to_exit_codes(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["verify", str(tmp_path / "absent.xml")])
    assert result.exit_code == NotFound.exit_code
    (tmp_path / "bad.xml").write_text("not xml")
    result = CliRunner().invoke(app, ["verify", str(tmp_path / "bad.xml")])
    assert result.exit_code == InvalidInput.exit_code


def test_main_cli_maps_errors_to_exit_codes(tmp_path: Path) -> None:
    from dpps.cli.main import app as main_app

    result = CliRunner().invoke(main_app, ["verify", str(tmp_path / "absent.xml")])
    assert result.exit_code == NotFound.exit_code
    assert "does not exist" in result.stderr
    (tmp_path / "bad.xml").write_text("not xml")
    result = CliRunner().invoke(main_app, ["verify", str(tmp_path / "bad.xml")])
    assert result.exit_code == InvalidInput.exit_code
