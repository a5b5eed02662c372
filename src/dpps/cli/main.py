"""Entry point of the ``dpps`` command and the one place that maps errors to exit codes."""

from __future__ import annotations

from typing import Annotated

import typer

from dpps.cli import (
    acada_cmds,
    archive_cmds,
    campaign_cmds,
    daemon_cmds,
    meta_cmds,
    night_cmds,
    oms_cmds,
    pipeline_cmds,
    preservation_cmds,
    rule_cmds,
    testbed_cmds,
    verify_cmd,
    wms_cmds,
    workspace_cmds,
)
from dpps.core.errors import EXIT_CODES
from dpps.core.version import __version__

EXIT_HELP = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())


app = typer.Typer(
    name="dpps",
    help="dpps: the Data Processing and Preservation System (bulk archive, workloads, "
    "pipelines, operations).\n\n" + EXIT_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dpps {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace directory (else $DPPS_WORKSPACE, else the current directory or the "
            "nearest parent holding dpps.yaml).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    ctx.obj = {"workspace": workspace}


archive_cmds.register(app)
meta_cmds.register(app)
workspace_cmds.register(app)
verify_cmd.register(app)
preservation_cmds.register(app)
acada_cmds.register(app)
rule_cmds.register(app)
daemon_cmds.register(app)
oms_cmds.register(app)
wms_cmds.register(app)
pipeline_cmds.register(app)
night_cmds.register(app)
campaign_cmds.register(app)
testbed_cmds.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
