"""A pytest plugin: the property layer's count of distinct generated cases per run.

Registered from ``tests/conftest.py`` (``pytest_plugins``) rather than living in this folder's
conftest: under xdist the controller process collects nothing, so a conftest below ``tests/``
never loads there and the workers' counts would have nobody to add them up in a whole-suite run.

Every property test takes the ``cases`` fixture and records each generated input; at the end
of the session the number of distinct inputs per test and in total is printed in pytest's
summary and written to ``reports/property-cases.json``. Under xdist each worker hands its
counts to the controller through ``workeroutput``.

The Hypothesis settings (derandomized, no example database) are in ``tests.property.common``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_SEEN: dict[str, set[str]] = defaultdict(set)
_TOTALS: dict[str, int] = {}


@pytest.fixture
def cases(request: pytest.FixtureRequest) -> Callable[[Any], None]:
    """``cases(x)`` records one generated input of this test (distinct ones are counted)."""
    seen = _SEEN[request.node.nodeid]
    return lambda case: seen.add(repr(case))


def _counts() -> dict[str, int]:
    return {name: len(seen) for name, seen in _SEEN.items()}


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller adds up
        workeroutput["dpps_property_cases"] = json.dumps(_counts())
    else:
        _TOTALS.update(_counts())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", {}) or {}
    _TOTALS.update(json.loads(output.get("dpps_property_cases", "{}")))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TOTALS:
        return
    total = sum(_TOTALS.values())
    terminalreporter.write_sep("-", f"property layer: {total} distinct generated cases")
    for name, count in sorted(_TOTALS.items()):
        terminalreporter.write_line(f"{count:7d}  {name}")
    report = Path("reports") / "property-cases.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"total": total, "tests": _TOTALS}, indent=1) + "\n")
