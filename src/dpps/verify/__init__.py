"""Verification (AIV): link tests to use cases and report which use cases are verified.

``registry`` holds the use cases, ``pytest_plugin`` keeps test markers honest, ``report`` turns
JUnit XML into a typed report, ``qa`` adds coverage/lint/typing/dependency figures and
``render`` prints it. The CLI entry point is ``dpps verify`` (``dpps.cli.verify_cmd``).
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

__all__ = [
    "CaseResult",
    "Outcome",
    "QaFigures",
    "Status",
    "UseCase",
    "UseCaseResult",
    "VerificationReport",
    "build_report",
    "classify",
    "collect_qa",
    "load_registry",
    "parse_junit",
]
