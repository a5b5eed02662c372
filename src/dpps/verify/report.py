"""The verification report: which use cases the test results show to be verified.

Input is what a pytest run already writes: JUnit XML whose test cases carry ``usecase_id``
properties (put there by pytest-requirements from ``@pytest.mark.verifies_usecase``). Output is a
typed :class:`VerificationReport` with one row per use case of the registry, so a use case no
test covers is as visible as one whose tests fail. Rendering lives in
:mod:`dpps.verify.render`; quality figures (coverage, ruff, mypy, dependencies) in
:mod:`dpps.verify.qa`.

Status of a use case, from the tests that name it:

* ``full``: at least one test passed and none failed (skipped tests are listed but do not
  demote: a PostgreSQL-only variant skipped on a laptop does not undo the SQLite pass);
* ``partial``: it has tests, but at least one failed, or all of them were skipped;
* ``none``: no test names it.

A test counts as failed when its JUnit ``testcase`` has a ``failure`` or ``error`` element
(errors in setup or teardown included), as skipped when it has ``skipped`` (xfail included), and
as passed otherwise. When several JUnit files are given (several runs, or a rerun), a test
appearing more than once is merged: failed if any run failed it, else passed if any run passed
it, else skipped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from dpps.core.errors import InvalidInput, NotFound
from dpps.verify.analysis import Compare, Quantity
from dpps.verify.qa import QaFigures
from dpps.verify.registry import UseCase
from dpps.verify.requirements import Requirement

USECASE_PROPERTY = "usecase_id"
REQUIREMENT_PROPERTY = "requirement_id"


class Outcome(StrEnum):
    """What happened to one test."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Status(StrEnum):
    """How well a use case is verified (see the module docstring for the rules)."""

    FULL = "full"
    PARTIAL = "partial"
    NONE = "none"


#: Merge order for a test seen in several runs: the higher rank wins.
_RANK = {Outcome.SKIPPED: 0, Outcome.PASSED: 1, Outcome.FAILED: 2}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CaseResult(_Frozen):
    """One JUnit test case, with the use cases and requirements it claims to verify."""

    id: str = Field(description="classname::name, as in the JUnit XML.")
    outcome: Outcome
    usecase_ids: tuple[str, ...] = ()
    requirement_ids: tuple[str, ...] = ()


class LinkedTest(_Frozen):
    """A test as listed under a use case."""

    id: str
    outcome: Outcome


class UseCaseResult(_Frozen):
    """One row of the report: a registry use case and the tests that verify it."""

    usecase: UseCase
    tests: tuple[LinkedTest, ...] = ()
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    status: Status = Status.NONE


class Totals(_Frozen):
    """The summary line: how many use cases in each status."""

    usecases: int
    full: int
    partial: int
    none: int
    tests: int = Field(description="Test cases read from the JUnit files.")
    linked_tests: int = Field(description="Test cases naming at least one use case.")


class RequirementStatus(StrEnum):
    """How well a requirement is verified (rules in :mod:`dpps.verify.trace`)."""

    VERIFIED = "verified"
    INSPECTED = "inspected"
    PARTIAL = "partial"
    NOT_MET = "not met"
    NONE = "none"


class FigureResult(_Frozen):
    """One analysis figure as the report shows it: both values, their source and the margin."""

    figure: str
    compare: Compare
    required: Quantity
    measured: Quantity
    measured_from: str = Field(description="The recorded source, or the benchmark file read.")
    required_in_measured_unit: float
    margin: float = Field(description="Times the measured value meets the required (>= 1: met).")
    met: bool


class TracedUseCase(_Frozen):
    """A use case under a requirement: its status and test counts (tests: see its row)."""

    id: str
    status: Status
    tests: int
    failed: int


class RequirementResult(_Frozen):
    """One requirement with the evidence that verifies it, or the lack of it."""

    requirement: Requirement
    usecases: tuple[TracedUseCase, ...] = ()
    figures: tuple[FigureResult, ...] = ()
    status: RequirementStatus
    reason: str = Field(description="One line: why this status.")


class RequirementTotals(_Frozen):
    """How many requirements in each status."""

    requirements: int
    verified: int
    inspected: int
    partial: int
    not_met: int
    none: int


class VerificationReport(_Frozen):
    """Everything ``dpps verify`` prints, in one serialisable value."""

    generated_at: datetime
    sources: tuple[str, ...] = Field(description="The JUnit XML files read.")
    usecases: tuple[UseCaseResult, ...]
    unknown_usecases: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Use-case ids found in the results but not in the registry, with tests.",
    )
    totals: Totals
    qa: QaFigures = Field(default_factory=QaFigures)
    requirements: tuple[RequirementResult, ...] = ()
    requirement_totals: RequirementTotals | None = None
    untraced_usecases: tuple[str, ...] = Field(
        default=(), description="Use cases that name no requirement."
    )
    documents: dict[str, str] = Field(
        default_factory=dict, description="Source documents of the requirements, by file name."
    )


def _outcome(case: ET.Element) -> Outcome:
    if case.find("failure") is not None or case.find("error") is not None:
        return Outcome.FAILED
    if case.find("skipped") is not None:
        return Outcome.SKIPPED
    return Outcome.PASSED


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _read_cases(path: Path) -> list[CaseResult]:
    """The test cases of one JUnit XML file (pytest, also as merged by pytest-xdist)."""
    if not path.exists():
        raise NotFound(f"JUnit XML file {path} does not exist")
    if not path.is_file():
        raise InvalidInput(f"JUnit XML path {path} is not a file")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InvalidInput(f"{path} is not valid XML: {exc}") from exc
    if root.tag not in ("testsuites", "testsuite"):
        raise InvalidInput(f"{path} is not JUnit XML (root element <{root.tag}>)")
    cases = []
    for case in root.iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        props = [(p.get("name"), p.get("value", "")) for p in case.iter("property")]
        cases.append(
            CaseResult(
                id=f"{classname}::{name}" if classname else name,
                outcome=_outcome(case),
                usecase_ids=_unique(v for k, v in props if k == USECASE_PROPERTY),
                requirement_ids=_unique(v for k, v in props if k == REQUIREMENT_PROPERTY),
            )
        )
    return cases


def merge_cases(cases: Iterable[CaseResult]) -> list[CaseResult]:
    """One result per test id: worst outcome wins (failed > passed > skipped), links united."""
    merged: dict[str, CaseResult] = {}
    for case in cases:
        seen = merged.get(case.id)
        if seen is None:
            merged[case.id] = case
            continue
        outcome = max(seen.outcome, case.outcome, key=_RANK.__getitem__)
        merged[case.id] = CaseResult(
            id=case.id,
            outcome=outcome,
            usecase_ids=_unique((*seen.usecase_ids, *case.usecase_ids)),
            requirement_ids=_unique((*seen.requirement_ids, *case.requirement_ids)),
        )
    return list(merged.values())


def parse_junit(paths: Sequence[Path]) -> list[CaseResult]:
    """Read and merge the test cases of one or more JUnit XML files.

    Raises :class:`NotFound` for a missing file and :class:`InvalidInput` for one that is not
    JUnit XML, naming the file; an empty list of paths is invalid too.
    """
    if not paths:
        raise InvalidInput("no JUnit XML file given")
    return merge_cases(case for path in paths for case in _read_cases(path))


def classify(passed: int, failed: int, skipped: int) -> Status:
    """The status of a use case from the outcomes of its tests."""
    if passed + failed + skipped == 0:
        return Status.NONE
    if failed == 0 and passed > 0:
        return Status.FULL
    return Status.PARTIAL


def build_report(
    registry: Mapping[str, UseCase],
    cases: Sequence[CaseResult],
    qa: QaFigures | None = None,
    sources: Sequence[Path | str] = (),
) -> VerificationReport:
    """Join test results with the registry: one row per use case, in registry order."""
    by_usecase: dict[str, list[CaseResult]] = {}
    for case in cases:
        for usecase_id in case.usecase_ids:
            by_usecase.setdefault(usecase_id, []).append(case)
    rows = []
    for usecase_id, usecase in registry.items():
        linked = sorted(by_usecase.get(usecase_id, []), key=lambda c: c.id)
        counts = {outcome: sum(c.outcome is outcome for c in linked) for outcome in Outcome}
        rows.append(
            UseCaseResult(
                usecase=usecase,
                tests=tuple(LinkedTest(id=c.id, outcome=c.outcome) for c in linked),
                passed=counts[Outcome.PASSED],
                failed=counts[Outcome.FAILED],
                skipped=counts[Outcome.SKIPPED],
                status=classify(
                    counts[Outcome.PASSED], counts[Outcome.FAILED], counts[Outcome.SKIPPED]
                ),
            )
        )
    unknown = {
        usecase_id: tuple(c.id for c in linked)
        for usecase_id, linked in sorted(by_usecase.items())
        if usecase_id not in registry
    }
    totals = Totals(
        usecases=len(rows),
        full=sum(row.status is Status.FULL for row in rows),
        partial=sum(row.status is Status.PARTIAL for row in rows),
        none=sum(row.status is Status.NONE for row in rows),
        tests=len(cases),
        linked_tests=sum(bool(c.usecase_ids) for c in cases),
    )
    return VerificationReport(
        generated_at=datetime.now(UTC),
        sources=tuple(str(s) for s in sources),
        usecases=tuple(rows),
        unknown_usecases=unknown,
        totals=totals,
        qa=qa if qa is not None else QaFigures(),
    )


def totals_line(report: VerificationReport) -> str:
    """``N use cases: a full, b partial, c none`` — the line every renderer shows."""
    t = report.totals
    return f"{t.usecases} use cases: {t.full} full, {t.partial} partial, {t.none} none"


def requirement_totals_line(report: VerificationReport) -> str:
    """``N requirements: a verified, ...`` — empty when the report has no requirements."""
    t = report.requirement_totals
    if t is None:
        return ""
    return (
        f"{t.requirements} requirements: {t.verified} verified, {t.inspected} by inspection, "
        f"{t.partial} partial, {t.not_met} not met, {t.none} verified by nothing"
    )
