"""pytest plugin: a test may only claim to verify a use case or requirement the registries know.

A typo in ``@pytest.mark.verifies_usecase("UC-110-1.2.l")`` would otherwise produce a JUnit
property nobody reads and a use case that looks unverified, or a report row for a use case that
does not exist. So the run stops at collection, listing every unknown id and the tests that use
it. The same holds for ``@pytest.mark.verifies_requirement`` and the requirements registry, and
for a use case of the registry naming a requirement that does not exist: the traceability
chain must not point into nothing. With pytest-xdist the check runs in each worker (workers
collect); a worker that stops makes the whole run fail, which is what we want.

Writing the markers into the JUnit XML is pytest-requirements' job (``-p pytest_requirements``
in the project's addopts). It only does so in the *call* phase, so a test skipped or erroring
in setup would lose its link and vanish from the verification report; the one thing this plugin
adds is the missing ``usecase_id``/``requirement_id`` properties for such tests, never
duplicating the ones pytest-requirements wrote.

Enabled by ``pytest_plugins = ["dpps.verify.pytest_plugin"]`` in ``tests/conftest.py`` or by
``-p dpps.verify.pytest_plugin``.
"""

from __future__ import annotations

import pytest

from dpps.core.errors import DppsError
from dpps.verify.registry import UseCase, load_registry
from dpps.verify.requirements import check_trace, load_requirements

USECASE_MARKER = "verifies_usecase"
REQUIREMENT_MARKER = "verifies_requirement"

_registry_key = pytest.StashKey[tuple[dict[str, UseCase], set[str]]]()


def _registries(config: pytest.Config) -> tuple[dict[str, UseCase], set[str]]:
    """The packaged use cases and requirement ids, loaded and cross-checked once per session.

    A broken registry, or a use case naming an unknown requirement, is a usage error.
    """
    if _registry_key not in config.stash:
        try:
            usecases = load_registry()
            requirements = load_requirements().requirements
            check_trace(usecases, requirements)
        except DppsError as exc:
            raise pytest.UsageError(f"dpps verification registries: {exc}") from exc
        config.stash[_registry_key] = (usecases, set(requirements))
    return config.stash[_registry_key]


def unknown_usecases(
    items: list[pytest.Item],
    known: set[str] | dict[str, UseCase],
    marker_name: str = USECASE_MARKER,
) -> dict[str, list[str]]:
    """Map each id of ``marker_name`` not in ``known`` to the node ids of tests using it.

    A marker without exactly one string argument is reported under its ``repr`` so it is
    caught as well.
    """
    unknown: dict[str, list[str]] = {}
    for item in items:
        for marker in item.iter_markers(name=marker_name):
            if len(marker.args) == 1 and isinstance(marker.args[0], str):
                marked_id = marker.args[0]
            else:
                marked_id = f"<invalid marker arguments {marker.args!r}>"
            if marked_id not in known:
                unknown.setdefault(marked_id, []).append(item.nodeid)
    return unknown


def format_unknown(unknown: dict[str, list[str]], marker_name: str = USECASE_MARKER) -> str:
    """The message that stops the run: every unknown id with the tests naming it."""
    what, registry = (
        ("use-case", "src/dpps/verify/usecases.yaml")
        if marker_name == USECASE_MARKER
        else ("requirement", "src/dpps/verify/requirements.yaml")
    )
    lines = [
        f"{len(unknown)} {what} id(s) in @pytest.mark.{marker_name} are not in the "
        f"registry ({registry}):"
    ]
    for marked_id in sorted(unknown):
        lines.append(f"  {marked_id}:")
        lines.extend(f"    {nodeid}" for nodeid in unknown[marked_id])
    lines.append(f"Fix the id or add the {what} to the registry (see docs/verification.md).")
    return "\n".join(lines)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Stop the run before any test executes if a test names an unknown use case or requirement."""
    usecases, requirements = _registries(config)
    messages = [
        format_unknown(unknown, marker)
        for marker, known in ((USECASE_MARKER, set(usecases)), (REQUIREMENT_MARKER, requirements))
        if (unknown := unknown_usecases(items, known, marker))
    ]
    if not messages:
        return
    message = "\n".join(messages)
    if hasattr(config, "workerinput"):
        # pytest-xdist worker: a UsageError here crashes the worker and the controller shows an
        # INTERNALERROR without our message. A failed collection report is forwarded to the
        # controller, printed once (identical reports from several workers are merged) and
        # fails the run.
        report = pytest.CollectReport(nodeid="", outcome="failed", longrepr=message, result=[])
        config.hook.pytest_collectreport(report=report)
        items.clear()
        return
    raise pytest.UsageError(message)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Add the marker properties a test lost by never reaching its call phase."""
    for kind, marker_name in (("usecase", USECASE_MARKER), ("requirement", REQUIREMENT_MARKER)):
        name = f"{kind}_id"
        present = {value for key, value in item.user_properties if key == name}
        for marker in item.iter_markers(name=marker_name):
            if marker.args and marker.args[0] not in present:
                item.user_properties.append((name, marker.args[0]))
                present.add(marker.args[0])
