"""``dpps night`` on bad input: a clear error before anything is written (UC-000-4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpps.cli.main import app

pytestmark = pytest.mark.verifies_usecase("UC-000-4")


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(app, ["night", "--help"])
    assert result.exit_code == 0
    for option in ("--dir", "--blocks", "--block-seconds", "--json"):
        assert option in result.output


def test_a_directory_that_is_not_a_workspace_is_refused_untouched(tmp_path: Path) -> None:
    keep = tmp_path / "thesis.tex"
    keep.write_text("precious\n")
    result = CliRunner().invoke(app, ["night", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 3, result.output
    assert "neither empty nor a workspace" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]
    assert keep.read_text() == "precious\n"


@pytest.mark.parametrize("args", [["--blocks", "0"], ["--block-seconds", "1"]])
def test_out_of_range_options_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(app, ["night", "--dir", str(tmp_path / "ws"), *args])
    assert result.exit_code == 2
    assert not (tmp_path / "ws").exists()
