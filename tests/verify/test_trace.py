"""The chain requirement -> use cases -> tests (or -> analysis), its QA figures, and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dpps.cli.verify_cmd import register
from dpps.core.errors import InvalidInput, NotFound
from dpps.verify.qa import read_contracts, read_duplication, read_test_run
from dpps.verify.registry import UseCase, load_registry
from dpps.verify.render import render_html, render_json, render_markdown, render_text
from dpps.verify.report import (
    CaseResult,
    Outcome,
    RequirementStatus,
    VerificationReport,
    build_report,
)
from dpps.verify.requirements import RequirementRegistry, load_requirements
from dpps.verify.trace import add_trace, benchmark_value, read_benchmarks

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.verifies_usecase("UC-190-2.1")

USECASES = """
- id: UC-001-1
  name: Fully tested
  subsystem: BDMS
  requirements: [REQ-T-001, REQ-T-002]
- id: UC-001-2
  name: One test fails
  subsystem: BDMS
  requirements: [REQ-T-002, REQ-T-005]
- id: UC-001-3
  name: Untested
  subsystem: BDMS
  requirements: [REQ-T-003]
- id: UC-001-4
  name: Traces to nothing
  subsystem: BDMS
"""

REQUIREMENTS = """
documents:
  seed.txt: The seed
requirements:
- id: REQ-T-001
  official_id: null
  name: Verified by one full use case
  text: one
  source: {document: seed.txt}
  verification: test
- id: REQ-T-002
  official_id: null
  name: One use case full, one not
  text: two
  source: {document: seed.txt}
  verification: test
- id: REQ-T-003
  official_id: null
  name: Its use case has no test
  text: three
  source: {document: seed.txt}
  verification: test
- id: REQ-T-004
  official_id: null
  name: Nothing traces to it
  text: null
  source: {document: seed.txt, section: a tree of names}
  verification: test
- id: REQ-T-005
  official_id: null
  name: Met by analysis
  text: Handle increasing data volume of at least 6 PB/yr
  source: {document: seed.txt}
  verification: analysis
  analysis:
    - figure: ingest
      compare: at_least
      required: {value: 6, unit: PB/yr}
      measured: {value: 612, unit: MB/s}
      recorded: docs/performance.md
      benchmark: acada.big.ingest_mb_s
- id: REQ-T-006
  official_id: null
  name: Not met by analysis
  text: annual reprocessing of all data within one month
  source: {document: seed.txt}
  verification: analysis
  analysis:
    - figure: DL0 to DL1
      compare: at_least
      required: {value: 6, unit: PB/month}
      measured: {value: 91, unit: images/s, bytes_per_item: 148400}
      recorded: docs/performance.md
    - figure: latency
      compare: at_most
      required: {value: 1, unit: s}
      measured: {value: 0.63, unit: ms}
      recorded: docs/performance.md
- id: REQ-T-007
  official_id: null
  name: By inspection
  text: Located at least at two sites with 300 km distance
  source: {document: seed.txt}
  verification: inspection
  inspection: {evidence: [src/dpps/core/defaults.py], finding: Four off-site centers.}
"""

CASES = [
    CaseResult(id="t::a", outcome=Outcome.PASSED, usecase_ids=("UC-001-1",)),
    CaseResult(id="t::b", outcome=Outcome.PASSED, usecase_ids=("UC-001-2",)),
    CaseResult(id="t::c", outcome=Outcome.FAILED, usecase_ids=("UC-001-2",)),
]


@pytest.fixture
def registries(tmp_path: Path) -> tuple[dict[str, UseCase], RequirementRegistry]:
    (tmp_path / "usecases.yaml").write_text(USECASES, encoding="utf-8")
    (tmp_path / "requirements.yaml").write_text(REQUIREMENTS, encoding="utf-8")
    return (
        load_registry(tmp_path / "usecases.yaml"),
        load_requirements(tmp_path / "requirements.yaml"),
    )


def _traced(
    registries: tuple[dict[str, UseCase], RequirementRegistry],
    benchmarks: dict[str, object] | None = None,
) -> VerificationReport:
    usecases, requirements = registries
    return add_trace(build_report(usecases, CASES), requirements, usecases, benchmarks, "b.json")


def test_status_of_each_requirement(
    registries: tuple[dict[str, UseCase], RequirementRegistry],
) -> None:
    report = _traced(registries)
    rows = {r.requirement.id: r for r in report.requirements}
    assert {rid: r.status for rid, r in rows.items()} == {
        "REQ-T-001": RequirementStatus.VERIFIED,
        "REQ-T-002": RequirementStatus.PARTIAL,
        "REQ-T-003": RequirementStatus.NONE,
        "REQ-T-004": RequirementStatus.NONE,
        "REQ-T-005": RequirementStatus.VERIFIED,
        "REQ-T-006": RequirementStatus.NOT_MET,
        "REQ-T-007": RequirementStatus.INSPECTED,
    }
    assert [uc.id for uc in rows["REQ-T-002"].usecases] == ["UC-001-1", "UC-001-2"]
    assert rows["REQ-T-002"].usecases[1].failed == 1
    assert rows["REQ-T-003"].reason == "its 1 use case(s) have no test"
    assert rows["REQ-T-004"].reason == "no use case traces to it"
    # the analysis shows both figures: 6 PB/yr is 190 MB/s, 612 MB/s meets it 3.2 times
    (ingest,) = rows["REQ-T-005"].figures
    assert ingest.required_in_measured_unit == pytest.approx(190.13, abs=0.01)
    assert ingest.margin == pytest.approx(3.219, abs=0.001)
    assert ingest.met
    assert ingest.measured_from == "docs/performance.md"
    # one figure short is enough to fail; the reason says by how much
    slow, fast = rows["REQ-T-006"].figures
    assert (slow.met, fast.met) == (False, True)
    assert "172 times the measured capacity" in rows["REQ-T-006"].reason
    assert report.untraced_usecases == ("UC-001-4",)
    totals = report.requirement_totals
    assert totals is not None
    assert (totals.verified, totals.inspected, totals.partial, totals.not_met, totals.none) == (
        2,
        1,
        1,
        1,
        2,
    )


def test_a_benchmark_run_replaces_the_recorded_figure(
    registries: tuple[dict[str, UseCase], RequirementRegistry],
) -> None:
    report = _traced(registries, {"acada": {"big": {"ingest_mb_s": 95.0}}})
    row = next(r for r in report.requirements if r.requirement.id == "REQ-T-005")
    assert row.figures[0].measured.value == 95.0
    assert row.figures[0].measured_from == "b.json: acada.big.ingest_mb_s"
    assert row.status is RequirementStatus.NOT_MET
    # a run without that benchmark leaves the recorded figure standing
    report = _traced(registries, {"catalog": {}})
    row = next(r for r in report.requirements if r.requirement.id == "REQ-T-005")
    assert (row.figures[0].measured.value, row.status) == (612, RequirementStatus.VERIFIED)


@pytest.mark.parametrize("value", ["fast", -1, 0, True, {"x": 1}])
def test_a_benchmark_figure_must_be_a_positive_number(value: object) -> None:
    with pytest.raises(InvalidInput, match=r"acada\.big\.ingest_mb_s"):
        benchmark_value({"acada": {"big": {"ingest_mb_s": value}}}, "acada.big.ingest_mb_s")
    assert benchmark_value({"acada": {"big": None}}, "acada.big.ingest_mb_s") is None


def test_read_benchmarks(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"acada": {"big": {"ingest_mb_s": 700.5}}}), encoding="utf-8")
    assert benchmark_value(read_benchmarks(path), "acada.big.ingest_mb_s") == 700.5
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InvalidInput):
        read_benchmarks(path)
    with pytest.raises(NotFound):
        read_benchmarks(tmp_path / "absent.json")


def test_renderers_show_the_chain(
    registries: tuple[dict[str, UseCase], RequirementRegistry],
) -> None:
    report = _traced(registries)
    md = render_markdown(report)
    assert "**7 requirements: 2 verified, 1 by inspection, 1 partial, 1 not met, 2 verified" in md
    assert "| REQ-T-002 | One use case full, one not | test | UC-001-1 full (1 tests); " in md
    assert "- **REQ-T-004** Nothing traces to it: no use case traces to it" in md
    assert "612 MB/s measured, at least 6 PB/yr required (= 190 MB/s): margin 3.22x" in md
    assert "Use cases tracing to no requirement: UC-001-4" in md
    assert "(the source shows only the name)" in md
    html = render_html(report)
    assert '<tr class="none"><td>REQ-T-006</td>' in html
    assert "Inspection finding: Four off-site centers." in html
    text = render_text(report, width=200)
    assert "Verified by nothing: REQ-T-004" in text
    assert "margin 0.00583x" in text
    assert VerificationReport.model_validate_json(render_json(report)) == report


def test_an_unknown_requirement_stops_the_trace(
    registries: tuple[dict[str, UseCase], RequirementRegistry],
) -> None:
    usecases, requirements = registries
    usecases["UC-001-4"] = usecases["UC-001-4"].model_copy(update={"requirements": ("REQ-X-001",)})
    with pytest.raises(InvalidInput, match="REQ-X-001"):
        add_trace(build_report(usecases, CASES), requirements, usecases)


# --- QA figures from the real tools --------------------------------------------------------------

DUPLICATED = """
def total(values):
    result = 0
    for value in values:
        if value > 0:
            result += value * 2
        else:
            result -= value
    return result
"""


def test_duplication_from_symilar(tmp_path: Path) -> None:
    symilar = shutil.which("symilar") or shutil.which(
        "symilar", path=str(Path(sys.executable).parent)
    )
    if symilar is None:
        pytest.skip("pylint's symilar is not installed")
    (tmp_path / "a.py").write_text(DUPLICATED, encoding="utf-8")
    (tmp_path / "b.py").write_text("x = 1\n" + DUPLICATED, encoding="utf-8")
    out = subprocess.run(
        [symilar, "-d", "4", str(tmp_path / "a.py"), str(tmp_path / "b.py")],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    (tmp_path / "dup.txt").write_text(out, encoding="utf-8")
    dup = read_duplication(tmp_path / "dup.txt")
    assert dup.blocks == 1
    assert dup.duplicated_lines >= 8
    assert dup.percent > 30
    assert "a.py" in dup.largest[0]
    assert "b.py" in dup.largest[0]


SYMILAR_OUTPUT = """
16 similar lines in 2 files
==src/dpps/bdms/types.py:[28:44]
==src/dpps/oms/api/schemas.py:[69:85]
       did: str

9 similar lines in 3 files
==src/a.py:[1:10]
==src/b.py:[1:10]
==src/c.py:[1:10]
       x = 1
TOTAL lines=48782 duplicates=38 percent=0.08
"""


def test_read_duplication(tmp_path: Path) -> None:
    path = tmp_path / "dup.txt"
    path.write_text(SYMILAR_OUTPUT, encoding="utf-8")
    dup = read_duplication(path)
    assert (dup.lines, dup.duplicated_lines, dup.percent, dup.blocks) == (48782, 38, 0.08, 2)
    assert dup.largest[0].startswith("16 lines: src/dpps/bdms/types.py:[28:44], src/dpps/oms")
    path.write_text("Found 0 errors\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="symilar"):
        read_duplication(path)


CONTRACTS = """
[importlinter]
root_package = pkg

[importlinter:contract:layers]
name = The layers of this small package point down, a name long enough to wrap over lines
type = layers
layers =
    pkg.high
    pkg.low

[importlinter:contract:forbid]
name = Low never imports other
type = forbidden
source_modules = pkg.low
forbidden_modules = pkg.other
"""


def test_contracts_from_lint_imports(tmp_path: Path) -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.skip("import-linter is not installed")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "pkg" / "high.py").write_text("", encoding="utf-8")
    (tmp_path / "pkg" / "other.py").write_text("", encoding="utf-8")
    (tmp_path / "pkg" / "low.py").write_text("import pkg.high\n", encoding="utf-8")
    (tmp_path / ".importlinter").write_text(CONTRACTS, encoding="utf-8")
    out = subprocess.run(
        [lint_imports, "--no-cache"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    (tmp_path / "contracts.txt").write_text(out, encoding="utf-8")
    contracts = read_contracts(tmp_path / "contracts.txt")
    assert (contracts.kept, contracts.broken) == (1, 1), out
    assert contracts.broken_names == (
        "The layers of this small package point down, a name long enough to wrap over lines",
    )
    (tmp_path / "contracts.txt").write_text("Success: no issues found\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="lint-imports"):
        read_contracts(tmp_path / "contracts.txt")


def test_test_run_from_junit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sample="""
        import pytest

        def test_ok():
            pass

        def test_fails():
            assert False

        @pytest.mark.skip(reason="later")
        def test_later():
            pass
        """
    )
    pytester.runpytest_subprocess("--junitxml=junit.xml", "-p", "no:cacheprovider")
    run = read_test_run([pytester.path / "junit.xml"])
    assert (run.tests, run.failures, run.errors, run.skipped) == (3, 1, 0, 1)
    assert 0 < run.time_s < 60
    twice = read_test_run([pytester.path / "junit.xml"] * 2)
    assert twice.tests == 6


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_reports_the_packaged_chain(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(
        test_sample="""
        import pytest

        @pytest.mark.verifies_usecase("UC-160-1.2")
        def test_roles():
            pass
        """
    )
    pytester.runpytest_subprocess(
        "--junitxml=junit.xml", "-p", "dpps.verify.pytest_plugin", "-p", "no:cacheprovider"
    )
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"acada": {"big": {"ingest_mb_s": 150.0}}}), encoding="utf-8")
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Keep ``verify`` a subcommand."""

    args = ["verify", str(pytester.path / "junit.xml"), "-f", "markdown", "--no-dependencies"]
    result = CliRunner().invoke(app, [*args, "--benchmarks", str(bench)])
    assert result.exit_code == 0, result.output
    md = result.stdout
    # REQ-BDMS-009 (roles) traces only to UC-160-1.2, which the one test verifies
    assert "| REQ-BDMS-009 | Access rights and roles | test | UC-160-1.2 full (1 tests) |" in md
    assert "| REQ-DPPS-112 | Backward Compatibility: Data Format | test | nothing | none |" in md
    assert "150 MB/s measured, at least 6 PB/yr required (= 190 MB/s): margin 0.789x" in md
    assert f"(measured: {bench}: acada.big.ingest_mb_s)" in md
    assert "- Test run: 1 tests (0 failed, 0 errors, 0 skipped)" in md
