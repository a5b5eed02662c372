"""Preservation commands: stage, audit, delete, export, health."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from dpps.bdms.records import HealthReport
from dpps.bdms.types import to_jsonable
from dpps.cli.common import JsonOpt, command, open_archive
from dpps.cli.listing import (
    Column,
    Listing,
    OutputFormat,
    OutputOpt,
    emit,
    output_format,
    show_table,
)
from dpps.cli.output import (
    console,
    emit_json,
    err_console,
    human_bytes,
    progress_bar,
    styled,
)
from dpps.core.errors import IntegrityFailure, Unavailable

AUDIT_BAD_EXIT = IntegrityFailure.exit_code


@contextmanager
def status_line(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A one-line, self-updating status on a terminal (never with --json or when piped)."""
    if not enabled or not err_console.is_terminal:
        yield lambda _text: None
        return
    with err_console.status("waiting") as status:
        yield lambda text: status.update(text)


def stage(
    ctx: typer.Context,
    dids: Annotated[list[str] | None, typer.Argument(help="Files to stage from tape.")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until every file is in the disk buffer.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(min=0.1, help="Seconds to wait at most (with --wait).")
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List recent stage requests instead.")
    ] = False,
    state: Annotated[
        str | None, typer.Option(help="With --list: only QUEUED, READY, EXPIRED or FAILED.")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="With --list: at most this many, newest first.")
    ] = 100,
    offset: Annotated[
        int, typer.Option(min=0, help="With --list: skip this many (the next page).")
    ] = 0,
    output: OutputOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Request staging of tape-only files into the disk buffer, or list stage requests.

    A file already staged or queued joins its open request. 'dpps get' stages by itself; this
    command prepares files ahead of time (e.g. before a processing campaign).
    """
    fmt = output_format(output, json_)
    pres = open_archive(ctx).preservation
    total: int | None = None
    if list_ or not dids:
        page = pres.stage_listing(state=state, limit=limit, offset=offset)
        infos, total = page.items, page.total
    else:
        with status_line(fmt is OutputFormat.TABLE) as show:
            infos = pres.stage(dids, wait=wait, timeout_s=timeout, status=show)
    if fmt is OutputFormat.JSON and not (list_ or not dids):
        emit_json(infos)  # the requests just made: a list, as before (not a listing's page)
        return
    columns = [
        *(Column(c) for c in ("id", "DID", "from", "state", "ready in (s)", "expires")),
        Column("error", whole=False),
    ]
    rows = [
        [
            i.id,
            i.did,
            i.rse,
            i.state,
            None if i.eta_seconds is None else f"{i.eta_seconds:.0f}",
            i.expires_at,
            i.error,
        ]
        for i in infos
    ]
    if total is None:  # the requests just made: all of them
        emit(Listing(columns, rows, infos, key=1), fmt)
    else:
        emit(Listing(columns, rows, infos, key=1, total=total, offset=offset, limit=limit), fmt)


def audit(
    ctx: typer.Context,
    rse: Annotated[str | None, typer.Option(help="Audit only this RSE.")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many replicas (oldest first).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=1.0, help="Read at most this many bytes per second.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Re-read replicas and compare them with the catalog's checksums (fixity audit).

    Replicas verified longest ago go first. A missing or damaged replica is marked BAD (the
    rule evaluator repairs it); a file left without a good copy is reported lost. Exits 7 when
    a replica was found BAD, 9 when a storage element could not be read.
    """
    pres = open_archive(ctx).preservation
    ids = pres.plan_audit(rse=rse, limit=limit)
    with progress_bar(len(ids), "audit", enabled=not json_) as advance:
        report = pres.audit(replica_ids=ids, progress=advance, bytes_per_s=rate)
    if json_:
        emit_json(report)
    else:
        if report.bad:
            show_table(
                "BAD replicas",
                ["DID", "RSE", "path", "reason"],
                [[b.did, b.rse, b.path, b.reason] for b in report.bad],
            )
        for did in report.lost:
            err_console.print(styled("[red]LOST:[/red] {} has no good copy left", did))
        for error in report.errors[:20]:
            err_console.print(styled("[yellow]skipped:[/yellow] {}", error))
        console.print(
            f"{report.examined} replicas read, {report.good} good, {len(report.bad)} BAD, "
            f"{report.skipped} skipped; {human_bytes(report.bytes)} in {report.seconds:.1f} s"
        )
    if report.bad:
        raise typer.Exit(AUDIT_BAD_EXIT)
    if report.skipped:
        raise typer.Exit(Unavailable.exit_code)


def delete(
    ctx: typer.Context,
    did: Annotated[str, typer.Argument(help="File, dataset or container to delete.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the preservation record).")
    ],
    json_: JsonOpt = False,
) -> None:
    """Deliberately remove a data product: its rules, and its replicas on every RSE.

    The catalog keeps the DID's record (marked deleted) and the events saying who deleted it,
    when and why. For a dataset, files that also belong to another live dataset are kept.
    Replicas on unreachable storage are finished later by the reaper (exit 9).
    """
    report = open_archive(ctx).preservation.delete(did, reason=reason)
    if json_:
        emit_json(report)
    else:
        console.print(
            f"{report.did}: deleted {report.files} file(s), {report.rules_removed} rule(s), "
            f"{report.replicas_deleted} replica(s)"
            + (f"; {report.replicas_pending} pending" if report.replicas_pending else "")
        )
        for kept in report.kept:
            err_console.print(f"kept files also in {kept}")
        for error in report.errors:
            err_console.print(styled("[yellow]pending:[/yellow] {}", error))
    if report.replicas_pending:
        raise typer.Exit(Unavailable.exit_code)


def export(
    ctx: typer.Context,
    did: Annotated[str, typer.Argument(help="File, dataset or container to export.")],
    dest: Annotated[Path, typer.Argument(help="Directory to create (must not exist).")],
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Do not wait for tape staging: fail, but request it."),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Export a data product as an archival information package (a BagIt bag).

    The bag holds the data, its metadata, fixity (the archive's checksums and the bag's own
    manifests), provenance and the event history; any BagIt validator can check it later.
    """
    pres = open_archive(ctx).preservation
    total = pres.export_size(did)
    with progress_bar(total, "export", enabled=not json_) as advance:
        report = pres.export(did, dest, progress=advance, wait=not no_wait)
    if json_:
        emit_json(report)
    else:
        console.print(
            f"{report.did}: {report.files} file(s), {human_bytes(report.bytes)} -> {report.dest} "
            f"(BagIt) in {report.seconds:.1f} s"
        )


def _print_health(report: HealthReport) -> None:
    show_table(
        "daemons",
        ["daemon", "instances", "last heartbeat", "state"],
        [
            [
                d.name,
                d.instances,
                d.last_seen,
                "STALE" if d.stale else ("running" if d.instances else "not running"),
            ]
            for d in report.daemons
        ],
    )
    for check in report.checks:
        if check.ok:
            console.print(styled("[green]ok[/green]     {}", check.name))
            continue
        console.print(styled("[red]ALARM[/red]  {}: {}", check.name, check.reason))
        for item in check.items:
            console.print(styled("  {}", item))
    console.print(
        f"BAD replicas: {report.bad_replicas}; being deleted: {report.being_deleted}; "
        f"stage requests queued: {report.stage_queued}; file.lost alarms ever: "
        f"{report.lost_events}"
    )
    for note in report.notes:
        err_console.print(styled("[yellow]note:[/yellow] {}", note))
    console.print(styled("[green]healthy[/green]" if report.ok else "[red]problems found[/red]"))


def health(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """An operator's alarm: does the archive keep its promises right now?

    Checks, each ok or ALARM with its reason: lost_files (live files without any good copy),
    under_replicated (files with fewer good copies than their rules want), stuck_rules,
    daemons (every daemon in health.required_daemons has a live heartbeat; none silent too
    long) and rses (every configured RSE available, local roots present). --json lists every
    check with its status. Exit codes: 0 healthy; 7 a file is lost; 9 any other alarm.
    Locally and over REST the answer and the exit code are the same.
    """
    report = open_archive(ctx).preservation.health()
    if json_:
        emit_json({**_jsonable(report), "ok": report.ok, "alarms": report.alarms})
    else:
        _print_health(report)
    if report.lost:
        raise typer.Exit(IntegrityFailure.exit_code)
    if not report.ok:
        raise typer.Exit(Unavailable.exit_code)


def _jsonable(report: HealthReport) -> dict[str, object]:
    data: dict[str, object] = to_jsonable(report)
    return data


def register(app: typer.Typer) -> None:
    command(app, stage)
    command(app, audit)
    command(app, delete)
    command(app, export)
    command(app, health)
