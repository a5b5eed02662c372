"""With $DPPS_URL set, every command of the CLI either goes to the server or refuses.

Issue 14: ``dpps night``, ``dpps init`` and the daemons silently ran locally with DPPS_URL set
(a reader's ``dpps night`` wrote 61 files into the live server's catalog). The rule
(docs/operations.md, "The remote CLI"): a command works over REST, or stops with exit 3 "is not
available over REST" before touching anything. The test walks the whole command tree against
a port where nothing listens: a command that goes to the server fails to reach it (exit 9,
"cannot reach the dpps server at URL"); one that cannot refuses (exit 3); a few use no archive
at all and run as they do anywhere. Nothing may appear in the working directory, and no
workspace, catalog or testbed state anywhere else.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpps.cli.lazy import build
from dpps.cli.main import COMMANDS, app
from tests.bdms.helpers import make_fits

DID = "/ctao/dl0/obs_42/tel_001.fits"

#: Arguments per command (``{inputs}``: a directory of input files outside the working
#: directory; relative paths land in the working directory, which must stay empty).
ARGS: dict[str, list[str]] = {
    "ingest": ["{inputs}/a.fits", "--rse", "CTAO-N", "--lfn-prefix", "/ctao/dl0/obs_42"],
    "ls": ["obs_id=42"],
    "show": [DID],
    "locate": [DID],
    "get": [DID, "out"],
    "init": [],
    "demo": [],
    "verify": ["{inputs}/junit.xml", "--no-dependencies"],
    "stage": [DID],
    "audit": ["--limit", "5"],
    "delete": [DID, "--reason", "test"],
    "export": [DID, "bag"],
    "health": [],
    "serve": ["--port", "0"],
    "report": ["--output", "report.md"],
    "night": [],
    "rse list": [],
    "dataset add": ["/ctao/dl0/obs_99"],
    "dataset attach": ["/ctao/dl0/obs_42", DID],
    "dataset detach": ["/ctao/dl0/obs_42", DID],
    "dataset ls": ["/ctao/dl0/obs_42"],
    "dataset close": ["/ctao/dl0/obs_42"],
    "dataset reopen": ["/ctao/dl0/obs_42"],
    "meta set": [DID, "quality=good", "--reason", "test"],
    "meta refresh": ["obs_id=42"],
    "acada simulate": [],
    "acada ingest-daemon": ["--once"],
    "daemon ingest": ["--once"],
    "daemon list": [],
    "daemon wms-manager": ["--once"],
    "daemon evaluator": ["--once"],
    "daemon transfer": ["--once"],
    "daemon stager": ["--once"],
    "daemon reaper": ["--once"],
    "daemon auditor": ["--once"],
    "daemon campaigns": ["--once"],
    "daemon wms-transformer": ["--once"],
    "rule add": [DID, "--copies", "1", "--rses", "PIC"],
    "rule list": [],
    "rule show": ["1"],
    "rule update": ["1", "--priority", "4"],
    "rule delete": ["1", "--reason", "test"],
    "transfer list": [],
    "transfer retry": ["1"],
    "account add": ["carol", "--role", "reader"],
    "account list": [],
    "account show": ["carol"],
    "account disable": ["carol"],
    "role grant": ["carol", "operator"],
    "role revoke": ["carol", "operator"],
    "role list": [],
    "scope grant": ["carol", "ctao"],
    "scope revoke": ["carol", "ctao"],
    "token create": ["carol"],
    "token list": [],
    "token revoke": ["1"],
    "wms submit": ["{inputs}/JOB.yaml"],
    "wms status": ["1"],
    "wms list": [],
    "wms logs": ["1"],
    "wms kill": ["1"],
    "wms retry": ["1"],
    "wms accounting": [],
    "wms daemon": ["wms-manager", "--once"],
    "wms transformation add": ["calib", "{inputs}/copy.cwl", "--filter", "obs_id=42"],
    "wms transformation list": [],
    "wms transformation status": ["calib"],
    "wms transformation retry": ["calib"],
    "wms transformation pause": ["calib"],
    "wms transformation resume": ["calib"],
    "pipeline list": [],
    "pipeline run": ["simpipe-simulate", "-o", "{inputs}/sim", "--set", "n_showers=5"],
    "pipeline production": ["{inputs}/production.yaml"],
    "campaign reprocess": ["obs_id=42", "--software-version", "2.0", "--no-wait"],
    "campaign list": [],
    "campaign show": ["c1"],
    "testbed up": [],
    "testbed status": [],
    "testbed down": [],
    "testbed scenario longhaul": [],
    "testbed scenario night": [],
}

#: Commands that act on this machine's workspace, storage or processes: refused (exit 3).
LOCAL_ONLY = {
    "init",
    "demo",
    "serve",
    "night",
    "acada simulate",
    "acada ingest-daemon",
    "wms daemon",
    "pipeline production",
    *(name for name in ARGS if name.startswith(("daemon ", "testbed "))),
} - {"daemon list"}

#: Commands that use no archive, here or there: they run as they do without DPPS_URL.
NO_ARCHIVE = {
    "verify",  # a report from JUnit files and the packaged use-case registry
    "daemon list",  # the daemons this installation registers
    "role list",  # the role matrix of this version
    "pipeline list",  # the tools this installation has
    "pipeline run",  # one tool on local files into a local directory (like ctapipe-process)
}


def leaf_commands() -> list[str]:
    """Every runnable command of the tree, as space-separated paths."""
    modules = sorted({m for entry in COMMANDS.values() for m in entry.modules})
    root = build(modules)
    found: list[str] = []

    def walk(command: object, path: list[str]) -> None:
        children = getattr(command, "commands", None)
        if children is None:
            found.append(" ".join(path))
            return
        for name, child in children.items():
            walk(child, [*path, name])

    for name in COMMANDS:
        walk(root.commands[name], [name])
    return found


@pytest.fixture(scope="module")
def dead_url() -> Iterator[str]:
    """A 127.0.0.1 port bound but not listening: every connection is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("inputs")
    make_fits(directory, "a.fits", obs_id=42)
    (directory / "JOB.yaml").write_text('name: noop\ncommand: ["true"]\n')
    (directory / "production.yaml").write_text("name: prod\n")
    (directory / "copy.cwl").write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [cp]\n"
        "inputs:\n  raw:\n    type: File\n    inputBinding: {position: 1}\n"
        "outputs:\n  copy:\n    type: File\n    outputBinding: {glob: c.fits}\n"
    )
    (directory / "junit.xml").write_text(
        '<testsuites><testsuite name="t" tests="1"><testcase classname="tests.a" name="t1"/>'
        "</testsuite></testsuites>"
    )
    return directory


def test_the_table_covers_every_command() -> None:
    """A new command needs a line in ARGS (and, if it runs only here, ``local=True``)."""
    assert sorted(leaf_commands()) == sorted(ARGS)
    assert set(LOCAL_ONLY) <= set(ARGS)
    assert set(NO_ARCHIVE) <= set(ARGS)


@pytest.mark.parametrize("name", sorted(ARGS))
def test_remote_or_refused(
    name: str,
    dead_url: str,
    inputs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    testbed_dir = tmp_path / "testbed"
    env = {
        "DPPS_URL": dead_url,
        "DPPS_TOKEN": "not-checked-before-connecting",
        "DPPS_WORKSPACE": None,
        "DPPS_TESTBED_DIR": str(testbed_dir),
        "HOME": str(tmp_path / "home"),
    }
    argv = [*name.split(), *(a.format(inputs=inputs) for a in ARGS[name])]
    result = CliRunner().invoke(app, argv, env=env)
    if name in LOCAL_ONLY:
        assert result.exit_code == 3, (result.exit_code, result.output)
        assert "is not available over REST" in result.stderr
        assert f"dpps {name}" in result.stderr
    elif name in NO_ARCHIVE:
        assert result.exit_code == 0, (result.exit_code, result.output)
        assert dead_url not in result.output
    else:
        assert result.exit_code == 9, (result.exit_code, result.output)
        assert f"cannot reach the dpps server at {dead_url}" in result.stderr
    assert sorted(p.name for p in cwd.iterdir()) == []
    assert not testbed_dir.exists()
    assert not (tmp_path / "home").exists()
