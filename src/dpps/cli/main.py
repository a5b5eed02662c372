"""Entry point of the ``dpps`` command: the table of its commands and ``--version``.

The command modules are imported only for the command being run (``dpps.cli.lazy``): the
table below names, per top-level command, the modules that register it and the summary
``dpps --help`` shows (tests/cli/test_cli_start.py holds it to what the modules register).
"""

from __future__ import annotations

from typing import Annotated

import typer

from dpps.cli.lazy import LazyCommand, LazyGroup
from dpps.core.errors import EXIT_CODES
from dpps.core.version import __version__

EXIT_HELP = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())


def _cmd(module: str, summary: str, *more: str) -> LazyCommand:
    return LazyCommand((module, *more), summary)


#: Every top-level command, in the order of ``dpps --help``: name -> modules, summary.
COMMANDS: dict[str, LazyCommand] = {
    "ingest": _cmd(
        "archive_cmds",
        "Ingest data products: verify, extract metadata, copy into an RSE and register them.",
    ),
    "ls": _cmd(
        "archive_cmds",
        "Query data products by metadata or LFN (and by dataset or container membership).",
    ),
    "show": _cmd(
        "archive_cmds",
        "Show a data product: metadata, checksums, replicas with states, versions, events.",
    ),
    "locate": _cmd(
        "archive_cmds",
        "Confirm a product is available and estimate how long retrieving it takes.",
    ),
    "get": _cmd(
        "archive_cmds", "Retrieve data products from the best replica, verifying checksums."
    ),
    "init": _cmd(
        "workspace_cmds",
        "Create a workspace: dpps.yaml with the reference topology, RSE directories, catalog.",
    ),
    "demo": _cmd(
        "workspace_cmds",
        "Run the main job on the embedded default: init, ingest a sample night, query, retrieve.",
    ),
    "verify": _cmd(
        "verify_cmd",
        "Report per use case its tests (full/partial/none), per requirement its evidence.",
    ),
    "stage": _cmd(
        "preservation_cmds",
        "Request staging of tape-only files into the disk buffer, or list stage requests.",
    ),
    "audit": _cmd(
        "preservation_cmds",
        "Re-read replicas and compare them with the catalog's checksums (fixity audit).",
    ),
    "delete": _cmd(
        "preservation_cmds",
        "Deliberately remove a data product: its rules, and its replicas on every RSE.",
    ),
    "export": _cmd(
        "preservation_cmds",
        "Export a data product as an archival information package (a BagIt bag).",
    ),
    "health": _cmd(
        "preservation_cmds", "An operator's alarm: does the archive keep its promises right now?"
    ),
    "serve": _cmd(
        "daemon_cmds",
        "Run every registered daemon in this process, one thread each, and serve the REST "
        "API, the web dashboard (/ui/) and /metrics (127.0.0.1:8000), until SIGTERM/SIGINT.",
    ),
    "report": _cmd(
        "oms_cmds",
        "Operations report: volumes ingested and replicated per site, failures, repairs, jobs.",
    ),
    "night": _cmd(
        "night_cmds",
        "Run an observing night: simulate, ingest, replicate, process to DL3 (category B), "
        "analyse with gammapy, report (UC-000-4); with --reprocess, reprocess it "
        "(UC-130-3.1.1).",
    ),
    "dataset": _cmd(
        "dataset_cmds", "Datasets and containers: add, attach, detach, ls, close, reopen."
    ),
    "rse": _cmd("archive_cmds", "Storage elements (RSEs)."),
    "meta": _cmd("meta_cmds", "Metadata care."),
    "acada": _cmd("acada_cmds", "ACADA: simulated telescope-site data and its ingestion."),
    "daemon": _cmd("acada_cmds", "Run one of the archive's daemons.", "daemon_cmds"),
    "rule": _cmd("rule_cmds", "Replication rules."),
    "transfer": _cmd("rule_cmds", "Transfers between RSEs."),
    "account": _cmd("oms_cmds", "Accounts: who may act on the archive."),
    "role": _cmd("oms_cmds", "Roles of accounts and the role matrix."),
    "scope": _cmd("oms_cmds", "Scopes an account may write."),
    "token": _cmd("oms_cmds", "Bearer tokens for the REST API."),
    "wms": _cmd("wms_cmds", "Workload management: jobs, CWL workflows, transformations."),
    "pipeline": _cmd(
        "pipeline_cmds",
        "Pipelines: list and run tools (SimPipe, CalibPipe, DataPipe, QualPipe), simulation "
        "productions.",
    ),
    "campaign": _cmd(
        "campaign_cmds",
        "Reprocessing campaigns (select, stage, reprocess, verify, archive as new versions).",
    ),
    "testbed": _cmd(
        "testbed_cmds",
        "The multi-site testbed: one network namespace per data center of the topology plus "
        "a central one, a WAN bridge with a bandwidth cap and round-trip latency per link, and "
        "real storage servers (XRootD, S3, tape, POSIX) per center. Needs root.",
    ),
}


class DppsGroup(LazyGroup):
    """The ``dpps`` root: the commands of ``COMMANDS``, each imported when run."""

    table = COMMANDS


app = typer.Typer(
    name="dpps",
    cls=DppsGroup,
    help="dpps: the Data Processing and Preservation System (bulk archive, workloads, "
    "pipelines, operations).\n\n" + EXIT_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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


def main() -> None:
    """Console-script entry point."""
    app()
