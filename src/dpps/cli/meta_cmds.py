"""Metadata care: ``dpps meta set`` and ``dpps meta refresh``."""

from __future__ import annotations

from typing import Annotated

import typer

from dpps.cli.common import JsonOpt, command, open_archive, parse_pairs
from dpps.cli.listing import show_table
from dpps.cli.output import console, emit_json, err_console, progress_bar, styled


def meta_set(
    ctx: typer.Context,
    did: Annotated[str, typer.Argument(help="scope:/lfn[@vN] (scope optional).")],
    pairs: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...", help="Values to set.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the event log).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Set metadata of a product; the old values stay in its event history."""
    changes = open_archive(ctx).set_meta(did, parse_pairs(pairs), reason=reason)
    if json_:
        emit_json(changes)
    elif changes:
        show_table(None, ["key", "old", "new"], [[c.key, c.old, c.new] for c in changes])
    else:
        console.print("no change")


def meta_refresh(
    ctx: typer.Context,
    filter_text: Annotated[str, typer.Argument(metavar="FILTER", help="Which files.")] = "",
    dry_run: Annotated[bool, typer.Option(help="Report changes without writing them.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Re-extract metadata from the stored bytes (e.g. after the extractor improved)."""
    archive = open_archive(ctx)
    total = archive.count(filter_text)
    with progress_bar(total, "refresh", enabled=not json_) as advance:
        report = archive.refresh_meta(filter_text, progress=advance, dry_run=dry_run)
    if json_:
        emit_json(report)
    else:
        if report.changes:
            show_table(
                None,
                ["DID", "key", "old", "new"],
                [[c.did, c.key, c.old, c.new] for c in report.changes[:200]],
            )
        verb = "would change" if dry_run else "changed"
        console.print(
            f"{report.examined} examined, {report.changed} {verb}, "
            f"{len(report.failed)} failed in {report.seconds:.2f} s"
        )
    for item in report.failed:
        err_console.print(styled("[red]failed:[/red] {}", item.error))
    if report.failed:
        raise typer.Exit(10)


def register(app: typer.Typer) -> None:
    meta_app = typer.Typer(help="Metadata care.", no_args_is_help=True)
    command(meta_app, meta_set, "set")
    command(meta_app, meta_refresh, "refresh")
    app.add_typer(meta_app, name="meta")
