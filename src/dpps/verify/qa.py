"""Quality figures for the verification report: coverage, lint, typing, duplication, layers.

The report should say not only which use cases pass but how much of the code the tests ran,
how clean it is and what third-party software (with which licenses) ships with it, because that
is what a verification review asks next. Each figure is read from the tool's own output file,
so ``dpps verify`` never runs coverage, ruff, mypy, symilar or import-linter itself and works on
CI artefacts; the test count and time come from the JUnit XML the report reads anyway.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from dpps.core.errors import InvalidInput, NotFound


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CoverageSummary(_Frozen):
    """Totals of a Cobertura ``coverage.xml`` (rates are fractions, 0..1)."""

    line_rate: float
    lines_covered: int | None = None
    lines_valid: int | None = None
    branch_rate: float | None = None
    branches_covered: int | None = None
    branches_valid: int | None = None


class RuffSummary(_Frozen):
    """Ruff findings, total and per rule code."""

    total: int
    by_rule: dict[str, int]


class MypySummary(_Frozen):
    """Mypy errors, total, number of files with errors and per error code."""

    errors: int
    files: int
    by_code: dict[str, int]


class DuplicationSummary(_Frozen):
    """Copy-pasted blocks found by pylint's ``symilar``: totals and the largest blocks."""

    lines: int
    duplicated_lines: int
    percent: float
    blocks: int
    largest: tuple[str, ...] = ()


class ContractsSummary(_Frozen):
    """The import-linter layer contracts: how many kept, and the names of the broken ones."""

    kept: int
    broken: int
    broken_names: tuple[str, ...] = ()


class TestRunSummary(_Frozen):
    """What the JUnit XML says of the run as a whole."""

    __test__ = False  # a pydantic model, not a pytest test class

    tests: int
    failures: int
    errors: int
    skipped: int
    time_s: float


class Dependency(_Frozen):
    """One installed distribution dpps depends on, directly or not."""

    name: str
    version: str
    license: str


class QaFigures(_Frozen):
    """All quality figures; each is ``None`` (or empty) when its input was not given."""

    coverage: CoverageSummary | None = None
    ruff: RuffSummary | None = None
    mypy: MypySummary | None = None
    duplication: DuplicationSummary | None = None
    contracts: ContractsSummary | None = None
    test_run: TestRunSummary | None = None
    dependencies: tuple[Dependency, ...] = ()


def _read(path: Path, what: str) -> str:
    if not path.exists():
        raise NotFound(f"{what} file {path} does not exist")
    if not path.is_file():
        raise InvalidInput(f"{what} path {path} is not a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} file {path} is not UTF-8 text") from exc


def _attr(root: ET.Element, name: str, kind: type[int] | type[float], path: Path) -> float | None:
    raw = root.get(name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError as exc:
        raise InvalidInput(f"{path}: attribute {name}={raw!r} is not a number") from exc


def read_coverage(path: Path) -> CoverageSummary:
    """Line and branch coverage from a Cobertura XML file (``coverage xml``, ``--cov-report``).

    Branch figures are ``None`` when branch coverage was not measured (no valid branches).
    """
    text = _read(path, "coverage")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InvalidInput(f"{path} is not valid XML: {exc}") from exc
    line_rate = _attr(root, "line-rate", float, path)
    if root.tag != "coverage" or line_rate is None:
        raise InvalidInput(f"{path} is not a Cobertura coverage report")

    def count(name: str) -> int | None:
        value = _attr(root, name, int, path)
        return None if value is None else int(value)

    branches_valid = count("branches-valid")
    measured = bool(branches_valid)
    return CoverageSummary(
        line_rate=line_rate,
        lines_covered=count("lines-covered"),
        lines_valid=count("lines-valid"),
        branch_rate=_attr(root, "branch-rate", float, path) if measured else None,
        branches_covered=count("branches-covered") if measured else None,
        branches_valid=branches_valid if measured else None,
    )


def read_ruff(path: Path) -> RuffSummary:
    """Findings per rule from ``ruff check --output-format json`` (a JSON list).

    A finding without a rule code (a syntax error) is counted under ``syntax-error``.
    """
    try:
        findings = json.loads(_read(path, "ruff"))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(findings, list) or not all(isinstance(f, dict) for f in findings):
        raise InvalidInput(f"{path} is not ruff JSON output (expected a list of findings)")
    by_rule = Counter(str(f.get("code") or "syntax-error") for f in findings)
    return RuffSummary(total=len(findings), by_rule=dict(sorted(by_rule.items())))


_MYPY_ERROR = re.compile(r"^(?P<file>[^:\n]+):\d+(?::\d+)?(?::\d+:\d+)?: error: (?P<msg>.*)$")
_MYPY_CODE = re.compile(r"\[(?P<code>[a-z0-9-]+)\]\s*$")
_MYPY_FOUND = re.compile(r"^Found (?P<n>\d+) errors? in (?P<files>\d+) files?", re.MULTILINE)
_MYPY_SUCCESS = re.compile(r"^Success: no issues found", re.MULTILINE)


def read_mypy(path: Path) -> MypySummary:
    """Error count from mypy's text output (``mypy ... > mypy.txt``).

    The ``Found N errors in M files`` summary is authoritative when present; error lines are
    counted per ``[error-code]``. Text with neither errors nor a summary is rejected, so the
    wrong file is not reported as "0 errors".
    """
    text = _read(path, "mypy")
    files: set[str] = set()
    codes: Counter[str] = Counter()
    for line in text.splitlines():
        match = _MYPY_ERROR.match(line)
        if match:
            files.add(match["file"])
            code = _MYPY_CODE.search(match["msg"])
            codes[code["code"] if code else "misc"] += 1
    found = _MYPY_FOUND.search(text)
    if found:
        errors, nfiles = int(found["n"]), int(found["files"])
    elif codes or _MYPY_SUCCESS.search(text):
        errors, nfiles = codes.total(), len(files)
    else:
        raise InvalidInput(f"{path} does not look like mypy output (no errors, no summary)")
    return MypySummary(errors=errors, files=nfiles, by_code=dict(sorted(codes.items())))


_SYMILAR_TOTAL = re.compile(
    r"^TOTAL lines=(?P<lines>\d+) duplicates=(?P<dup>\d+) percent=(?P<pct>[\d.]+)", re.MULTILINE
)
_SYMILAR_BLOCK = re.compile(r"^(?P<n>\d+) similar lines in (?P<files>\d+) files$")
_SYMILAR_PLACE = re.compile(r"^==(?P<place>\S+)$")


def read_duplication(path: Path, largest: int = 5) -> DuplicationSummary:
    """Duplication from the text output of pylint's ``symilar`` (``symilar -d 6 FILES``).

    The ``TOTAL`` line is required, so the wrong file is never reported as 0 % duplicated;
    the ``largest`` biggest blocks are kept with the places they occur.
    """
    text = _read(path, "symilar")
    total = _SYMILAR_TOTAL.search(text)
    if total is None:
        raise InvalidInput(f"{path} does not look like symilar output (no TOTAL line)")
    blocks: list[tuple[int, list[str]]] = []
    for line in text.splitlines():
        block = _SYMILAR_BLOCK.match(line)
        place = _SYMILAR_PLACE.match(line)
        if block:
            blocks.append((int(block["n"]), []))
        elif place and blocks:
            blocks[-1][1].append(place["place"])
    blocks.sort(key=lambda b: -b[0])
    return DuplicationSummary(
        lines=int(total["lines"]),
        duplicated_lines=int(total["dup"]),
        percent=float(total["pct"]),
        blocks=len(blocks),
        largest=tuple(f"{n} lines: {', '.join(places)}" for n, places in blocks[:largest]),
    )


_CONTRACTS = re.compile(r"^Contracts: (?P<kept>\d+) kept, (?P<broken>\d+) broken\.", re.MULTILINE)
_CONTRACT_END = re.compile(r"\s(?P<verdict>KEPT|BROKEN)(?: \(.*\))?$")


def read_contracts(path: Path) -> ContractsSummary:
    """Kept and broken contracts from the text output of ``lint-imports``.

    lint-imports wraps long contract names over several lines; a name runs until the line
    that ends in KEPT or BROKEN.
    """
    text = _read(path, "lint-imports")
    summary = _CONTRACTS.search(text)
    if summary is None:
        raise InvalidInput(f"{path} does not look like lint-imports output (no summary line)")
    broken: list[str] = []
    pending: list[str] = []
    for line in text[: summary.start()].splitlines():
        stripped = line.strip()
        if not stripped or set(stripped) == {"-"} or stripped.startswith("Analyzed "):
            pending = []
            continue
        end = _CONTRACT_END.search(stripped)
        if end is None:
            pending.append(stripped)
            continue
        if end["verdict"] == "BROKEN":
            broken.append(" ".join([*pending, stripped[: end.start()]]))
        pending = []
    return ContractsSummary(
        kept=int(summary["kept"]), broken=int(summary["broken"]), broken_names=tuple(broken)
    )


def read_test_run(paths: list[Path]) -> TestRunSummary:
    """Test count and wall time from the ``testsuite`` elements of JUnit XML files.

    Several files (several runs) add up: their tests ran one after another.
    """
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    time_s = 0.0
    for path in paths:
        try:
            root = ET.fromstring(_read(path, "JUnit XML"))
        except ET.ParseError as exc:
            raise InvalidInput(f"{path} is not valid XML: {exc}") from exc
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        for suite in suites:
            for key in totals:
                totals[key] += int(_attr(suite, key, int, path) or 0)
            time_s += float(_attr(suite, "time", float, path) or 0.0)
    return TestRunSummary(time_s=time_s, **totals)


_REQ_NAME = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?")
_REQ_EXTRA = re.compile(r"""extra\s*==\s*["'](?P<extra>[^"']+)["']""")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _license(meta: metadata.PackageMetadata) -> str:
    """SPDX ``License-Expression``, else a short ``License`` field, else the classifiers."""
    expressions: list[str] = meta.get_all("License-Expression") or []
    for value in expressions:
        if value.strip():
            return value.strip()
    fields: list[str] = meta.get_all("License") or []
    field = next((v.strip() for v in fields if v.strip()), "")
    if field.upper() == "UNKNOWN":
        field = ""
    if field and "\n" not in field and len(field) <= 80:
        return field
    classifiers = [
        c.split("::")[-1].strip()
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::")
    ]
    if classifiers:
        return "; ".join(classifiers)
    if field:  # a whole license text pasted into the field: its first line names it
        first = field.splitlines()[0].strip()
        return first if len(first) <= 80 else first[:77] + "..."
    return "unknown"


def _requirements(dist: metadata.Distribution, extras: set[str]) -> list[tuple[str, set[str]]]:
    """(name, extras) of the requirements of ``dist`` that apply with the given extras.

    Stdlib only, so environment markers are not evaluated in full: a requirement behind
    ``extra == "x"`` applies only when ``x`` is requested, any other marker is left to the
    installed-or-not test in :func:`installed_dependencies`.
    """
    result = []
    for requirement in dist.requires or []:
        spec, _, marker = requirement.partition(";")
        wanted = {_normalise(e) for e in _REQ_EXTRA.findall(marker)}
        if wanted and not wanted & extras:
            continue
        match = _REQ_NAME.match(spec)
        if match:
            sub_extras = {_normalise(e) for e in (match["extras"] or "").split(",") if e.strip()}
            result.append((match["name"], sub_extras))
    return result


def installed_dependencies(
    root: str = "dpps", extras: tuple[str, ...] = ()
) -> tuple[Dependency, ...]:
    """Every installed distribution ``root`` requires, recursively, with version and license.

    Only runtime requirements by default (pass ``extras=("test",)`` to add the test tools).
    Requirements that are not installed (other platform, other Python) are skipped.
    """
    try:
        start = metadata.distribution(root)
    except metadata.PackageNotFoundError as exc:
        raise NotFound(f"distribution {root} is not installed") from exc
    found: dict[str, Dependency] = {}
    visited: set[tuple[str, frozenset[str]]] = set()
    queue = [(start, {_normalise(e) for e in extras})]
    while queue:
        dist, dist_extras = queue.pop()
        for name, sub_extras in _requirements(dist, dist_extras):
            key = (_normalise(name), frozenset(sub_extras))
            if key in visited:
                continue
            visited.add(key)
            try:
                dep = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                continue
            dep_name = dep.metadata["Name"] or name
            found[_normalise(dep_name)] = Dependency(
                name=dep_name, version=dep.version, license=_license(dep.metadata)
            )
            queue.append((dep, sub_extras))
    found.pop(_normalise(root), None)
    return tuple(sorted(found.values(), key=lambda d: _normalise(d.name)))


def collect_qa(
    coverage: Path | None = None,
    ruff: Path | None = None,
    mypy: Path | None = None,
    dependencies: bool = True,
    duplication: Path | None = None,
    contracts: Path | None = None,
    junit: list[Path] | None = None,
) -> QaFigures:
    """Read whichever QA inputs were given into one :class:`QaFigures`."""
    return QaFigures(
        coverage=read_coverage(coverage) if coverage is not None else None,
        ruff=read_ruff(ruff) if ruff is not None else None,
        mypy=read_mypy(mypy) if mypy is not None else None,
        duplication=read_duplication(duplication) if duplication is not None else None,
        contracts=read_contracts(contracts) if contracts is not None else None,
        test_run=read_test_run(junit) if junit else None,
        dependencies=installed_dependencies() if dependencies else (),
    )
