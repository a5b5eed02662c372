"""The CLI starts fast: the root imports a command's modules only when that command runs.

No timing here (the benchmark measures, benchmarks/bench_cli_start.py): these tests check the
cause of a slow start, the heavy libraries in ``sys.modules``, and that the table the root
lists is what the command modules really register.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpps.cli.lazy import build, summary_of
from dpps.cli.main import COMMANDS, app

#: Libraries that a command needs but ``--version``, ``--help`` and completion must not load.
HEAVY = ("sqlalchemy", "astropy", "numpy", "h5py", "pydantic", "httpx", "protozfits", "alembic")

SRC = Path(__file__).resolve().parents[2] / "src"


def loaded_after(*argv: str, env: dict[str, str] | None = None) -> list[str]:
    """The heavy top-level packages in ``sys.modules`` after ``dpps ARGV`` in a fresh process."""
    script = (
        "import json, sys\n"
        "from dpps.cli.main import app\n"
        f"try:\n    app({list(argv)!r})\n"
        "except SystemExit:\n    pass\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    environ = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environ, check=True
    )
    last: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return last


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []], ids=str)
def test_version_and_help_import_no_heavy_library(argv: list[str]) -> None:
    assert loaded_after(*argv) == []


def test_top_level_completion_imports_no_command_module() -> None:
    env = {"_DPPS_COMPLETE": "complete_bash", "COMP_WORDS": "dpps ru", "COMP_CWORD": "1"}
    assert loaded_after(env=env) == []


def test_a_query_loads_no_reader_migration_or_client_library(tmp_path: Path) -> None:
    """``dpps ls`` on the embedded catalog needs SQLAlchemy, not the FITS/HDF5 readers (astropy,
    h5py, numpy: loaded by ingestion only), Alembic (migrations only) or httpx (remote only)."""
    ws = tmp_path / "ws"
    assert CliRunner().invoke(app, ["init", str(ws)], env={"DPPS_URL": ""}).exit_code == 0
    loaded = loaded_after("-w", str(ws), "ls", "obs_id=42", env={"DPPS_URL": ""})
    assert "sqlalchemy" in loaded  # the query did run against the catalog
    assert set(loaded) & {"astropy", "numpy", "h5py", "alembic", "httpx", "protozfits"} == set()


def test_a_remote_query_loads_the_client_not_the_catalog() -> None:
    """With DPPS_URL set, ``dpps ls`` needs httpx, not SQLAlchemy, astropy or Alembic (the
    server is unreachable here: the command fails, having loaded what it would use)."""
    env = {"DPPS_URL": "http://127.0.0.1:9", "DPPS_TOKEN": "x"}
    loaded = loaded_after("ls", "obs_id=42", env=env)
    assert "httpx" in loaded
    assert set(loaded) & {"sqlalchemy", "astropy", "numpy", "h5py", "alembic"} == set()


def test_one_command_loads_its_modules_only() -> None:
    """``dpps rule --help`` builds the rule group, not the night's simulation stack."""
    script = (
        "import sys\nfrom dpps.cli.main import app\n"
        "try:\n    app(['rule', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('dpps.cli.')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
    )
    modules = proc.stdout.strip().splitlines()[-1]
    assert "dpps.cli.rule_cmds" in modules
    for other in ("night_cmds", "testbed_cmds", "wms_cmds", "campaign_cmds", "daemon_cmds"):
        assert f"dpps.cli.{other}" not in modules


def test_table_is_what_the_modules_register() -> None:
    """Each module set of the table registers exactly the names the table gives it, with the
    summaries the table shows: a command added to a module without its line here fails."""
    by_modules: dict[tuple[str, ...], set[str]] = {}
    for name, entry in COMMANDS.items():
        by_modules.setdefault(entry.modules, set()).add(name)
    every_module = {m for entry in COMMANDS.values() for m in entry.modules}
    registered_anywhere = set(build(sorted(every_module)).commands)
    assert registered_anywhere == set(COMMANDS), "add the missing names to dpps.cli.main"
    for modules, names in by_modules.items():
        group = build(modules)
        for name in names:
            assert name in group.commands, f"{modules} do not register {name!r}"
            assert COMMANDS[name].summary == summary_of(group.commands[name]), name


def test_help_lists_every_command_with_its_summary() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for name, entry in COMMANDS.items():
        assert name in result.stdout
        assert entry.summary[:60] in result.stdout


def test_typo_suggests_the_command() -> None:
    result = CliRunner().invoke(app, ["rulle"])
    assert result.exit_code == 2
    assert "Did you mean 'rule'" in result.stderr


def test_shell_completion_script_for_bash_and_zsh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Typer's completion: ``dpps --show-completion`` prints, for the shell it runs under, a
    script that calls back into dpps. The shell is Typer's detection (a flag, not an
    argument), so the test names it: its own parent may be no shell at all (a background job
    found none and the script came out empty)."""
    import typer.completion

    for shell, marker in (("bash", "complete -o default -F"), ("zsh", "compdef")):
        monkeypatch.setattr(typer.completion, "_get_shell_name", lambda shell=shell: shell)
        result = CliRunner().invoke(app, ["--show-completion"])
        assert result.exit_code == 0, result.output
        assert "_DPPS_COMPLETE" in result.stdout
        assert marker in result.stdout, (shell, result.stdout)
