"""Verification (AIV): link tests to use cases, use cases to requirements, and report it.

``registry`` holds the use cases, ``requirements`` the requirements they trace to (with
``analysis`` for those verified by a figure), ``pytest_plugin`` keeps test markers honest,
``report`` turns JUnit XML into a typed report, ``trace`` joins it with the requirements, ``qa``
adds coverage/lint/typing/duplication/contract/dependency figures and ``render`` prints it.
The CLI entry point is ``dpps verify`` (``dpps.cli.verify_cmd``).
"""

from __future__ import annotations

from dpps.verify.qa import QaFigures, collect_qa
from dpps.verify.registry import UseCase, load_registry
from dpps.verify.report import (
    CaseResult,
    Outcome,
    Status,
    UseCaseResult,
    VerificationReport,
    build_report,
    classify,
    parse_junit,
)
from dpps.verify.requirements import Requirement, RequirementRegistry, load_requirements
from dpps.verify.trace import add_trace

__all__ = [
    "CaseResult",
    "Outcome",
    "QaFigures",
    "Requirement",
    "RequirementRegistry",
    "Status",
    "UseCase",
    "UseCaseResult",
    "VerificationReport",
    "add_trace",
    "build_report",
    "classify",
    "collect_qa",
    "load_registry",
    "load_requirements",
    "parse_junit",
]
