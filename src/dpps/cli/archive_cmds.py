"""Archive commands: ingest, ls, show, locate, get, rse."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dpps.bdms.types import BulkReport, FileInfo
from dpps.cli.common import JsonOpt, command, open_archive, parse_pairs
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
from dpps.cli.preservation_cmds import status_line
from dpps.core.errors import EXIT_CODES, InvalidInput, Unavailable

PARTIAL_EXIT = 10
assert PARTIAL_EXIT in EXIT_CODES


def report_exit(report: BulkReport) -> None:
    """Exit code of a bulk command: the error's own code when one item failed alone."""
    failed = report.failed
    if not failed:
        return
    for item in failed:
        err_console.print(styled("[red]failed:[/red] {}: {}", item.source, item.error))
    code = failed[0].exit_code if len(report.results) == 1 else PARTIAL_EXIT
    raise typer.Exit(code)


def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files (or directories with -r) to ingest.")],
    rse: Annotated[str, typer.Option("--rse", help="Storage element that receives the files.")],
    scope: Annotated[str | None, typer.Option(help="Scope of the new DIDs.")] = None,
    lfn: Annotated[str | None, typer.Option(help="Logical file name (one file only).")] = None,
    lfn_prefix: Annotated[
        str | None, typer.Option(help="LFN directory; each file keeps its (relative) name.")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Attach the files to this dataset.")] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="Metadata key=value (repeatable).")
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Ingest the files under directories.")
    ] = False,
    new_version: Annotated[
        bool, typer.Option(help="Same LFN with other content becomes the next version.")
    ] = False,
    acada: Annotated[
        bool,
        typer.Option(
            "--acada",
            help="Files in the RSE's ACADA landing area: the ingestion queue's logic, once "
            "(in place, dataset per directory with its rules, quarantine; see docs/acada.md).",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Ingest data products: verify, extract metadata, copy into an RSE and register them.

    A file already under the RSE's root is registered in place. Same LFN and same content is
    reported as present; other content is a conflict unless --new-version is given.
    """
    archive = open_archive(ctx)
    total = archive.plan_size(paths, recursive)
    if acada:
        if scope or lfn or lfn_prefix or dataset or meta or recursive or new_version:
            raise InvalidInput("--acada takes no naming or metadata options: the LFN is the path")
        report = archive.acada.ingest(paths, rse)
    else:
        with progress_bar(total, "ingest", enabled=not json_) as advance:
            report = archive.ingest(
                paths,
                rse,
                scope=scope,
                lfn=lfn,
                lfn_prefix=lfn_prefix,
                dataset=dataset,
                meta=parse_pairs(meta or []),
                recursive=recursive,
                new_version=new_version,
                progress=advance,
            )
    if json_:
        emit_json(report)
    else:
        rows = [
            [r.did or r.source, r.status, r.version, human_bytes(r.bytes), r.error or ""]
            for r in report.results
        ]
        if len(rows) <= 50:
            show_table(None, ["DID", "status", "version", "size", "error"], rows)
        console.print(
            f"{report.count('registered')} registered, {report.count('present')} already present, "
            f"{len(report.failed)} failed; {human_bytes(report.bytes)} in {report.seconds:.2f} s"
        )
    report_exit(report)


FILE_COLUMNS = [
    Column("DID"),
    Column("level"),
    Column("cat"),
    Column("obs"),
    Column("tel"),
    Column("night"),
    Column("size", show=human_bytes),
]


def _file_rows(files: list[FileInfo]) -> list[list[object]]:
    return [
        [f.did, f.data_level, f.category, f.obs_id, f.tel_id, f.observing_night, f.bytes]
        for f in files
    ]


def ls(
    ctx: typer.Context,
    filter_text: Annotated[
        str,
        typer.Argument(
            metavar="FILTER",
            help="Filter, e.g. 'obs_id>=100 and data_level=DL0'"
            " (see docs/query-language.md). Empty: everything.",
        ),
    ] = "",
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many rows.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many rows (paging).")] = 0,
    all_versions: Annotated[
        bool, typer.Option(help="List every version, not the latest.")
    ] = False,
    did_type: Annotated[str, typer.Option("--type", help="FILE, DATASET or CONTAINER.")] = "FILE",
    count: Annotated[
        bool, typer.Option("--count", help="Print only the number of matches.")
    ] = False,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            metavar="DID",
            help="Only DIDs attached below this dataset or container (at any depth).",
        ),
    ] = None,
    output: OutputOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Query data products by metadata or LFN (and by dataset or container membership).

    -o plain prints one DID a line (for xargs); -o json and -o csv carry every column, and
    the JSON its total, so a script sees when there are more pages (--offset).
    """
    fmt = output_format(output, json_)
    archive = open_archive(ctx)
    kind = did_type.upper()

    def matches() -> int:
        return archive.count(
            filter_text, all_versions=all_versions, did_type=kind, dataset=dataset
        )

    if count:
        n = matches()
        emit_json({"count": n}) if fmt is OutputFormat.JSON else console.print(n)
        return
    files = archive.list_files(
        filter_text,
        limit=limit,
        offset=offset,
        all_versions=all_versions,
        did_type=kind,
        dataset=dataset,
    )
    # A short first page is everything; otherwise the catalog counts the matches.
    total = len(files) if offset == 0 and len(files) < limit else matches()
    emit(
        Listing(FILE_COLUMNS, _file_rows(files), files, total=total, offset=offset, limit=limit),
        fmt,
    )


def show(
    ctx: typer.Context,
    did: Annotated[str, typer.Argument(help="scope:/lfn[@vN] (scope optional).")],
    json_: JsonOpt = False,
) -> None:
    """Show a data product: metadata, checksums, replicas with states, versions, events."""
    details = open_archive(ctx).show(did)
    if json_:
        emit_json(details)
        return
    f = details.file
    base_fields: list[list[Any]] = [
        ["DID", f.did],
        ["type", f.did_type],
        ["version", f"{f.version} of {details.versions}"],
        ["size", f"{f.bytes} ({human_bytes(f.bytes)})"],
        ["adler32", f.adler32],
        ["blake3", f.blake3],
        ["data level", f.data_level],
        ["category", f.category],
        ["obs_id", f.obs_id],
        ["tel_id", f.tel_id],
        ["observing night", f.observing_night],
        ["time", f"{f.time_start} .. {f.time_end}"],
        ["product type", f.product_type],
        ["datasets", ", ".join(details.parents)],
        ["created", f.created_at],
    ]
    if f.is_open is not None:  # a dataset or container: its state and members
        shown = ", ".join(details.children[:20])
        more = len(details.children) - 20
        base_fields += [
            ["state", "open" if f.is_open else "closed"],
            ["members", shown + (f" ... ({more} more; dpps dataset ls)" if more > 0 else "")],
        ]
    fields: list[list[Any]] = [
        *base_fields,
        *([f"meta.{k}", v] for k, v in sorted(f.meta.items())),
    ]
    show_table(None, ["field", "value"], fields)
    show_table(
        "replicas",
        ["RSE", "site", "kind", "state", "path", "verified"],
        [[r.rse, r.site, r.kind, r.state, r.path, r.last_verified_at] for r in details.replicas],
    )
    show_table(
        "events",
        ["when", "account", "action", "RSE", "reason"],
        [[e.ts, e.account, e.action, e.rse, e.reason] for e in details.events],
    )


def locate(
    ctx: typer.Context,
    did: Annotated[str, typer.Argument(help="scope:/lfn[@vN] (scope optional).")],
    json_: JsonOpt = False,
) -> None:
    """Confirm a product is available and estimate how long retrieving it takes."""
    loc = open_archive(ctx).locate(did)
    if json_:
        emit_json(loc)
    else:
        state = "available" if loc.available else "NOT available"
        est = f"{loc.estimated_seconds:.3f} s from {loc.best_rse}" if loc.available else "-"
        console.print(f"{loc.did}: {state}; estimated retrieval {est}")
        show_table(
            None,
            ["RSE", "kind", "state", "estimate (s)"],
            [[r.rse, r.kind, r.state, r.estimated_seconds] for r in loc.replicas],
        )
    if not loc.available:
        raise typer.Exit(9)


def get(
    ctx: typer.Context,
    args: Annotated[
        list[str],
        typer.Argument(metavar="DID... DEST", help="DIDs to retrieve, then the destination."),
    ],
    overwrite: Annotated[bool, typer.Option(help="Replace existing local files.")] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Only request staging of tape-only files; do not wait."),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(min=0.1, help="Seconds to wait for tape staging at most.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Retrieve data products from the best replica, verifying checksums.

    DEST is a directory (created for several DIDs) or, for one DID, a file name. A dataset or
    container stands for every file below it (DEST is then a directory). A file already at its
    target with the catalog's checksums is kept ("present"), so rerunning an interrupted get
    fetches only what is missing; other content there is refused unless --overwrite. Files
    only on tape are staged to the disk buffer first (all together), then read from there.
    """
    if len(args) < 2:
        raise typer.BadParameter("give at least one DID and a destination")
    *dids, dest = args
    archive = open_archive(ctx)
    if dest.endswith("/"):
        # "out/" names a directory even before it exists (Path() drops the slash).
        Path(dest).mkdir(parents=True, exist_ok=True)
    with (
        progress_bar(len(dids), "get", enabled=not json_) as advance,
        status_line(not json_) as show,
    ):
        report = archive.get(
            dids,
            Path(dest),
            overwrite=overwrite,
            progress=advance,
            wait=not no_wait,
            timeout_s=timeout,
            status=show,
        )
    if json_:
        emit_json(report)
    else:
        for r in report.results:
            if r.status == "retrieved":
                console.print(f"{r.did} -> {r.path} ({human_bytes(r.bytes)} from {r.rse})")
            elif r.status == "present":
                console.print(f"{r.did}: already at {r.path}, identical (checksums match)")
            elif r.status == "staging":
                console.print(
                    f"{r.did}: staging requested ({r.source}); run the same command again "
                    "once it is staged ('dpps stage --list' shows progress)"
                )
    report_exit(report)
    waiting = report.count("staging")
    if waiting:
        # A script must not take "requested" for "fetched": nothing of these is at DEST yet.
        err_console.print(f"{waiting} not retrieved yet: staging from tape")
        raise typer.Exit(Unavailable.exit_code)


def rse_list(
    ctx: typer.Context,
    expression: Annotated[
        str | None,
        typer.Argument(
            metavar="[EXPR]",
            help="Only the RSEs this RSE expression selects, e.g. 'offsite&type=tape', "
            "'CTAO-N|PIC', 'offsite\\PIC', 'country=ES' (see docs/replication.md).",
        ),
    ] = None,
    output: OutputOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List storage elements with their site, kind, availability and usage."""
    fmt = output_format(output, json_)
    archive = open_archive(ctx)
    infos = archive.rses()
    if expression is not None:
        selected = set(archive.rse_select(expression))
        infos = [i for i in infos if i.name in selected]
    columns = [
        Column("RSE"),
        Column("site"),
        Column("kind"),
        Column("onsite"),
        Column("available"),
        Column("files"),
        Column("bytes", show=human_bytes),
        Column("URL"),
    ]
    rows = [
        [i.name, i.site, i.kind, i.onsite, i.available, i.files, i.bytes, i.url] for i in infos
    ]
    emit(Listing(columns, rows, infos), fmt)


def register(app: typer.Typer) -> None:
    command(app, ingest)
    command(app, ls)
    command(app, show)
    command(app, locate)
    command(app, get)
    rse_app = typer.Typer(help="Storage elements (RSEs).", no_args_is_help=True)
    command(rse_app, rse_list, "list")
    app.add_typer(rse_app, name="rse")
