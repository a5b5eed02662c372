"""The requirements registry: faithful to its sources; no link of the chain points nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dpps.core.errors import InvalidInput, NotFound
from dpps.verify.analysis import Quantity, in_unit_of, margin
from dpps.verify.registry import load_registry
from dpps.verify.requirements import (
    REQUIREMENT_ID_PATTERN,
    Method,
    check_trace,
    load_requirements,
    unknown_requirements,
)

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.verifies_usecase("UC-190-2.1")

#: The seed documents the registry quotes: shared/seeds/ beside the repository (CI lays a copy
#: of shared/ beside its clone, as the worktrees have it).
SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"


def _words(text: str) -> str:
    """Lower-case words only: bullets, emphasis, quotes and line breaks of slides drop out."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def test_packaged_registry_loads() -> None:
    registry = load_requirements()
    reqs = registry.requirements
    assert len(reqs) >= 30
    assert all(REQUIREMENT_ID_PATTERN.fullmatch(rid) for rid in reqs)
    # no official id is known yet, and none may be guessed
    assert all(req.official_id is None for req in reqs.values())
    assert {req.verification for req in reqs.values()} == set(Method)
    assert reqs["REQ-BDMS-005"].text == "Handle increasing data volume of at least 6 PB/yr"


@pytest.mark.skipif(not SEEDS.is_dir(), reason="shared/seeds is not beside the repository")
def test_every_text_is_quoted_from_its_source_document() -> None:
    registry = load_requirements()
    documents = {
        name: _words((SEEDS / name).read_text(encoding="utf-8")) for name in registry.documents
    }
    for req in registry.requirements.values():
        quoted = req.text if req.text is not None else req.name
        assert _words(quoted) in documents[req.source.document], (
            f"{req.id}: {quoted!r} is not in {req.source.document}"
        )


def test_every_packaged_usecase_traces_to_a_known_requirement() -> None:
    usecases = load_registry()
    requirements = load_requirements().requirements
    check_trace(usecases, requirements)
    assert [uc.id for uc in usecases.values() if not uc.requirements] == []


# --- rejected registries ------------------------------------------------------------------------

HEADER = """
documents:
  seed.txt: A seed document
requirements:
"""
ENTRY = """
- id: {id}
  official_id: null
  name: Data volume
  text: Handle increasing data volume of at least 6 PB/yr
  source: {{document: seed.txt, section: Bulk Archive Requirements 1}}
  verification: test
"""
ANALYSIS = """
- id: REQ-BDMS-005
  official_id: null
  name: Data volume
  text: Handle increasing data volume of at least 6 PB/yr
  source: {document: seed.txt}
  verification: analysis
  analysis:
    - figure: ingest
      compare: at_least
      required: {value: 6, unit: PB/yr}
      measured: {value: 612, unit: MEASURED_UNIT}
      recorded: docs/performance.md
"""


def _load(tmp_path: Path, body: str) -> dict[str, object]:
    path = tmp_path / "requirements.yaml"
    path.write_text(HEADER + body, encoding="utf-8")
    return dict(load_requirements(path).requirements)


def test_registry_from_file(tmp_path: Path) -> None:
    reqs = _load(
        tmp_path,
        ENTRY.format(id="REQ-BDMS-005")
        + ANALYSIS.replace("005", "006").replace("MEASURED_UNIT", "MB/s"),
    )
    assert list(reqs) == ["REQ-BDMS-005", "REQ-BDMS-006"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (ENTRY.format(id="REQ-BDMS-1"), "does not match"),
        (ENTRY.format(id="CTA-REQ-001"), "does not match"),
        (ENTRY.format(id="REQ-BDMS-001") * 2, "duplicate requirement id REQ-BDMS-001"),
        (ENTRY.format(id="REQ-BDMS-001").replace("seed.txt", "other.txt"), "other.txt"),
        (ENTRY.format(id="REQ-BDMS-001").replace("test", "demonstration"), "verification"),
        (ENTRY.format(id="REQ-BDMS-001") + "  txet: typo\n", "txet"),
        (ENTRY.format(id="REQ-BDMS-001").replace("test", "analysis"), "analysis"),
        (ENTRY.format(id="REQ-BDMS-001").replace("test", "inspection"), "inspection"),
        (ANALYSIS.replace("analysis\n", "test\n", 1).replace("MEASURED_UNIT", "MB/s"), "analysis"),
        (ANALYSIS.replace("MEASURED_UNIT", "s"), "cannot compare"),
        (ANALYSIS.replace("MEASURED_UNIT", "furlongs"), "unknown unit"),
        (ANALYSIS.replace("MEASURED_UNIT", "images/s"), "cannot compare"),
        (
            ENTRY.format(id="REQ-BDMS-001").replace("null", "A-1")
            + ENTRY.format(id="REQ-BDMS-002").replace("null", "A-1"),
            "official id A-1 given to both REQ-BDMS-001 and REQ-BDMS-002",
        ),
    ],
)
def test_invalid_registry_is_rejected(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        _load(tmp_path, body)


@pytest.mark.parametrize("text", ["[]", "documents: {}\n", "documents: []\nrequirements: []\n"])
def test_not_a_registry_is_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "requirements.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput):
        load_requirements(path)


def test_missing_registry_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_requirements(tmp_path / "absent.yaml")


def test_a_usecase_naming_an_unknown_requirement_fails(tmp_path: Path) -> None:
    usecases = tmp_path / "usecases.yaml"
    usecases.write_text(
        """
- id: UC-110-1.6
  name: Replicate data products
  subsystem: BDMS
  requirements: [REQ-BDMS-005, REQ-BDMS-999]
- id: UC-110-1.7
  name: Verify fixity
  subsystem: BDMS
  requirements: [REQ-BDMS-999]
""",
        encoding="utf-8",
    )
    registry = load_registry(usecases)
    requirements = _load(tmp_path, ENTRY.format(id="REQ-BDMS-005"))
    assert unknown_requirements(registry, requirements) == {
        "REQ-BDMS-999": ["UC-110-1.6", "UC-110-1.7"]
    }
    with pytest.raises(InvalidInput, match=r"REQ-BDMS-999 \(named by UC-110-1\.6, UC-110-1\.7\)"):
        check_trace(registry, requirements)  # type: ignore[arg-type]


# --- the analysis arithmetic ---------------------------------------------------------------------


def test_six_petabytes_a_year_is_190_megabytes_a_second() -> None:
    required = Quantity(value=6, unit="PB/yr")
    measured = Quantity(value=612, unit="MB/s")
    assert in_unit_of(required, measured) == pytest.approx(190.13, abs=0.01)
    assert margin(required, measured, "at_least") == pytest.approx(612 / 190.13, rel=1e-4)
    assert margin(required, Quantity(value=100, unit="MB/s"), "at_least") < 1


def test_durations_compare_the_other_way() -> None:
    required = Quantity(value=1, unit="s")
    assert margin(required, Quantity(value=0.63, unit="ms"), "at_most") == pytest.approx(
        1587.3, 0.01
    )
    assert margin(required, Quantity(value=2, unit="s"), "at_most") == 0.5


def test_a_count_rate_becomes_a_byte_rate_with_its_item_size() -> None:
    required = Quantity(value=6, unit="PB/month")  # 30 days
    measured = Quantity(value=91, unit="images/s", bytes_per_item=148_400)
    needed = 6e15 / (30 * 86400)
    assert margin(required, measured, "at_least") == pytest.approx(91 * 148_400 / needed)
    assert in_unit_of(required, measured) == pytest.approx(needed / 148_400)
    with pytest.raises(InvalidInput, match="cannot compare"):
        margin(required, Quantity(value=91, unit="images/s"), "at_least")
    assert margin(
        Quantity(value=50, unit="files/s"), Quantity(value=61, unit="files/s"), "at_least"
    ) == pytest.approx(1.22)


# --- the pytest plugin ---------------------------------------------------------------------------


def test_plugin_fails_the_run_on_an_unknown_requirement(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sample="""
        import pytest

        @pytest.mark.verifies_requirement("REQ-BDMS-005")
        def test_known():
            pass

        @pytest.mark.verifies_requirement("REQ-BDMS-500")
        def test_typo():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "dpps.verify.pytest_plugin")
    assert result.ret != 0
    result.stderr.fnmatch_lines(
        [
            "*1 requirement id(s)*verifies_requirement*not in the registry*",
            "*REQ-BDMS-500:",
            "*test_sample.py::test_typo",
        ]
    )
    result.stdout.no_fnmatch_line("*passed*")
