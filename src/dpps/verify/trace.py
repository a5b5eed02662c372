"""The traceability chain: requirement -> use cases -> tests, or requirement -> analysis.

Joins the requirements registry with a use-case report, so a reader sees for each requirement
what verifies it and whether that evidence holds, and sees as plainly the requirements that
nothing verifies. Status of a requirement, by its verification method:

* ``test``: ``verified`` when every use case tracing to it is fully verified; ``partial`` when
  some are and others are not (a failed or skipped-only test, or no test); ``none`` when no
  use case traces to it or none of them has a test.
* ``analysis``: ``verified`` when every figure meets the requirement (margin >= 1), else
  ``not met``. Use cases tracing to it are listed but do not change the verdict.
* ``inspection``: ``inspected``: the registry records what was inspected and found.

The measured value of a figure is the one recorded in the registry, unless a benchmark JSON
file (``benchmarks/run_all.py --json``) holds the figure's ``benchmark`` path: then the fresh
measurement replaces it and the report names the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dpps.core.errors import InvalidInput, NotFound
from dpps.verify.analysis import Quantity, in_unit_of, margin
from dpps.verify.registry import UseCase
from dpps.verify.report import (
    FigureResult,
    RequirementResult,
    RequirementStatus,
    RequirementTotals,
    Status,
    TracedUseCase,
    UseCaseResult,
    VerificationReport,
)
from dpps.verify.requirements import (
    AnalysisFigure,
    Method,
    Requirement,
    RequirementRegistry,
    check_trace,
    usecases_of,
)


def read_benchmarks(path: Path) -> dict[str, Any]:
    """The JSON object written by ``benchmarks/run_all.py --json`` (results by benchmark name)."""
    if not path.is_file():
        raise NotFound(f"benchmark results {path} do not exist")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(content, dict):
        raise InvalidInput(f"{path}: expected run_all.py --json output (an object by benchmark)")
    return content


def benchmark_value(results: Mapping[str, Any], dotted: str) -> float | None:
    """The number at ``dotted`` (``acada.big.ingest_mb_s``), or None if the run lacks it.

    A benchmark that did not run (``run_all.py --only``) is not an error, the recorded figure
    stands; a path that leads to something other than a positive number is.
    """
    node: Any = results
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    if isinstance(node, bool) or not isinstance(node, int | float) or not node > 0:
        raise InvalidInput(f"benchmark figure {dotted} is {node!r}, not a positive number")
    if not math.isfinite(node):
        raise InvalidInput(f"benchmark figure {dotted} is {node!r}, not a finite number")
    return float(node)


def figure_result(
    figure: AnalysisFigure,
    benchmarks: Mapping[str, Any] | None = None,
    benchmarks_source: str = "benchmark results",
) -> FigureResult:
    """The figure with its margin, measured value from the benchmarks when they hold it."""
    measured, measured_from = figure.measured, figure.recorded
    if benchmarks is not None and figure.benchmark is not None:
        fresh = benchmark_value(benchmarks, figure.benchmark)
        if fresh is not None:
            measured = Quantity(
                value=fresh, unit=measured.unit, bytes_per_item=measured.bytes_per_item
            )
            measured_from = f"{benchmarks_source}: {figure.benchmark}"
    value = margin(figure.required, measured, figure.compare)
    return FigureResult(
        figure=figure.figure,
        compare=figure.compare,
        required=figure.required,
        measured=measured,
        measured_from=measured_from,
        required_in_measured_unit=in_unit_of(figure.required, measured),
        margin=value,
        met=value >= 1.0,
    )


def _by_test(traced: tuple[TracedUseCase, ...]) -> tuple[RequirementStatus, str]:
    if not traced:
        return RequirementStatus.NONE, "no use case traces to it"
    tested = [uc for uc in traced if uc.status is not Status.NONE]
    if not tested:
        return RequirementStatus.NONE, f"its {len(traced)} use case(s) have no test"
    full = [uc for uc in traced if uc.status is Status.FULL]
    if len(full) == len(traced):
        return RequirementStatus.VERIFIED, f"all {len(traced)} use case(s) fully verified"
    short = ", ".join(
        f"{uc.id} {uc.status.value}" for uc in traced if uc.status is not Status.FULL
    )
    return RequirementStatus.PARTIAL, f"{len(full)} of {len(traced)} use cases full ({short})"


def _by_analysis(figures: tuple[FigureResult, ...]) -> tuple[RequirementStatus, str]:
    worst = min(figures, key=lambda f: f.margin)
    if worst.met:
        return (
            RequirementStatus.VERIFIED,
            f"every figure meets it (smallest margin {worst.margin:.3g}x)",
        )
    short = sum(not f.met for f in figures)
    return (
        RequirementStatus.NOT_MET,
        f"{short} of {len(figures)} figure(s) below it (smallest margin {worst.margin:.3g}: "
        f"{math.ceil(1 / worst.margin)} times the measured capacity needed)",
    )


def requirement_result(
    requirement: Requirement,
    traced: tuple[TracedUseCase, ...],
    benchmarks: Mapping[str, Any] | None = None,
    benchmarks_source: str = "benchmark results",
) -> RequirementResult:
    """One requirement's row: its evidence and status (rules in the module docstring)."""
    figures = tuple(figure_result(f, benchmarks, benchmarks_source) for f in requirement.analysis)
    if requirement.verification is Method.TEST:
        status, reason = _by_test(traced)
    elif requirement.verification is Method.ANALYSIS:
        status, reason = _by_analysis(figures)
    else:
        status, reason = RequirementStatus.INSPECTED, "inspected (see the finding)"
    return RequirementResult(
        requirement=requirement, usecases=traced, figures=figures, status=status, reason=reason
    )


def add_trace(
    report: VerificationReport,
    registry: RequirementRegistry,
    usecases: Mapping[str, UseCase],
    benchmarks: Mapping[str, Any] | None = None,
    benchmarks_source: str = "benchmark results",
) -> VerificationReport:
    """The report with one row per requirement, the totals and the use cases tracing to none.

    Raises :class:`InvalidInput` if a use case names a requirement the registry lacks.
    """
    check_trace(usecases, registry.requirements)
    rows: dict[str, UseCaseResult] = {row.usecase.id: row for row in report.usecases}
    results = []
    for requirement_id, requirement in registry.requirements.items():
        traced = tuple(
            TracedUseCase(
                id=uid,
                status=rows[uid].status,
                tests=len(rows[uid].tests),
                failed=rows[uid].failed,
            )
            for uid in usecases_of(usecases, requirement_id)
            if uid in rows
        )
        results.append(requirement_result(requirement, traced, benchmarks, benchmarks_source))
    count = {status: sum(r.status is status for r in results) for status in RequirementStatus}
    totals = RequirementTotals(
        requirements=len(results),
        verified=count[RequirementStatus.VERIFIED],
        inspected=count[RequirementStatus.INSPECTED],
        partial=count[RequirementStatus.PARTIAL],
        not_met=count[RequirementStatus.NOT_MET],
        none=count[RequirementStatus.NONE],
    )
    return report.model_copy(
        update={
            "requirements": tuple(results),
            "requirement_totals": totals,
            "untraced_usecases": tuple(uc.id for uc in usecases.values() if not uc.requirements),
            "documents": dict(registry.documents),
        }
    )
