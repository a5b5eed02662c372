"""The use-case registry loads, and rejects what would make the verification report lie."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpps.core.errors import InvalidInput, NotFound
from dpps.verify.registry import USECASE_ID_PATTERN, UseCase, load_registry

pytest_plugins = ["pytester"]

SEEDED = {
    "UC-110-1.1.1",
    "UC-110-1.1.3",
    "UC-110-1.1.4",
    "UC-110-1.2.1",
    "UC-110-1.2.2",
    "UC-110-1.3.1",
    "UC-110-1.6",
    "UC-000-1",
    "UC-020-1.1",
    "UC-100-2",
    "UC-000-4",
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "usecases.yaml"
    path.write_text(text, encoding="utf-8")
    return path


ENTRY = """
- id: {id}
  name: Query for data product by LFN
  subsystem: BDMS
  requirements: []
  description: test entry
"""


def test_packaged_registry_loads_with_the_seeded_use_cases() -> None:
    registry = load_registry()
    assert set(registry) >= SEEDED
    assert all(isinstance(uc, UseCase) for uc in registry.values())
    assert registry["UC-110-1.2.1"].subsystem == "BDMS"
    assert registry["UC-000-4"].subsystem == "PIPELINES"
    assert all(USECASE_ID_PATTERN.fullmatch(uid) for uid in registry)


def test_use_cases_are_frozen() -> None:
    usecase = load_registry()["UC-110-1.6"]
    with pytest.raises(ValueError, match="frozen"):
        usecase.name = "changed"  # type: ignore[misc]


def test_registry_from_file(tmp_path: Path) -> None:
    path = _write(tmp_path, ENTRY.format(id="UC-110-1.2.1") + ENTRY.format(id="UC-001-2"))
    registry = load_registry(path)
    assert list(registry) == ["UC-110-1.2.1", "UC-001-2"]
    assert registry["UC-001-2"].requirements == ()


def test_duplicate_id_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, ENTRY.format(id="UC-110-1.2.1") * 2)
    with pytest.raises(InvalidInput, match=r"duplicate use-case id UC-110-1\.2\.1"):
        load_registry(path)


@pytest.mark.parametrize(
    "bad_id", ["UC-11-1", "UC-110", "UC-110-1.", "uc-110-1.2", "UC-110-1..2", "UC-110-a"]
)
def test_malformed_id_is_rejected_naming_the_entry(tmp_path: Path, bad_id: str) -> None:
    path = _write(tmp_path, ENTRY.format(id=f'"{bad_id}"'))
    with pytest.raises(InvalidInput, match="does not match") as info:
        load_registry(path)
    assert bad_id in str(info.value)


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, ENTRY.format(id="UC-110-1.2.1") + "  subsytem: BDMS\n")
    with pytest.raises(InvalidInput, match="subsytem"):
        load_registry(path)


def test_unknown_subsystem_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, ENTRY.format(id="UC-110-1.2.1").replace("BDMS", "ARCHIVE"))
    with pytest.raises(InvalidInput, match="subsystem"):
        load_registry(path)


@pytest.mark.parametrize("text", ["id: UC-110-1\n", "- [unclosed\n", "- just a string\n"])
def test_not_a_list_of_use_cases_is_rejected(tmp_path: Path, text: str) -> None:
    with pytest.raises(InvalidInput):
        load_registry(_write(tmp_path, text))


def test_missing_registry_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_registry(tmp_path / "absent.yaml")


# --- the pytest plugin --------------------------------------------------------------------------

SAMPLE = """
import pytest

@pytest.mark.verifies_usecase("UC-110-1.2.1")
def test_known():
    pass

@pytest.mark.verifies_usecase("UC-999-1.2")
def test_typo():
    pass

class TestMore:
    @pytest.mark.verifies_usecase("UC-999-1.2")
    def test_typo_again(self):
        pass
"""


def test_plugin_fails_the_run_on_an_unknown_usecase(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sample=SAMPLE)
    result = pytester.runpytest_subprocess("-p", "dpps.verify.pytest_plugin")
    assert result.ret != 0
    result.stderr.fnmatch_lines(
        [
            "*1 use-case id(s)*not in the registry*",
            "*UC-999-1.2:",
            "*test_sample.py::test_typo",
            "*test_sample.py::TestMore::test_typo_again",
        ]
    )
    result.stdout.no_fnmatch_line("*passed*")


def test_plugin_fails_the_run_under_xdist(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_sample=SAMPLE)
    result = pytester.runpytest_subprocess("-p", "dpps.verify.pytest_plugin", "-n", "2")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*not in the registry*", "*UC-999-1.2:*"])
    result.stdout.no_fnmatch_line("*passed*")


def test_plugin_accepts_known_usecases(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_ok="""
        import pytest

        @pytest.mark.verifies_usecase("UC-110-1.2.1")
        def test_known():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "dpps.verify.pytest_plugin")
    result.assert_outcomes(passed=1)
