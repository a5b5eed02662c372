"""``dpps dataset``: datasets and containers (add, attach, detach, ls, close, reopen).

Each command calls ``archive.datasets`` (``dpps.bdms.datasets_api``, or its REST twin with
``DPPS_URL`` set), so it means the same locally and remotely; the refusals (a closed dataset,
a duplicate, a file into a container, a cycle, an unknown DID) exit with their documented
codes through ``handle_errors``. Retrieval of a whole dataset is ``dpps get``, selection by
membership ``dpps ls --dataset``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dpps.bdms.types import FileInfo
from dpps.cli.common import JsonOpt, command, open_archive, parse_pairs
from dpps.cli.listing import Column, Listing, OutputOpt, emit, output_format
from dpps.cli.output import console, emit_json, human_bytes

DIDArg = Annotated[str, typer.Argument(metavar="DID", help="scope:/name (scope optional).")]
ParentArg = Annotated[
    str, typer.Argument(metavar="PARENT", help="The dataset or container (scope optional).")
]
ChildrenArg = Annotated[list[str], typer.Argument(metavar="DID...", help="Its members to be.")]


def _show(info: FileInfo) -> None:
    state = "open" if info.is_open else "closed"
    console.print(f"{info.did}: {info.did_type.lower()}, {state}")


def add(
    ctx: typer.Context,
    did: DIDArg,
    container: Annotated[
        bool, typer.Option("--container", help="A container (of datasets), not a dataset.")
    ] = False,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="Metadata key=value (repeatable).")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Create an empty, open dataset (or container); a name already taken is refused."""
    datasets = open_archive(ctx).datasets
    pairs = parse_pairs(meta or [])
    made = (
        datasets.add_container(did, meta=pairs)
        if container
        else datasets.add_dataset(did, meta=pairs)
    )
    emit_json(made) if json_ else _show(made)


def attach(
    ctx: typer.Context,
    parent: ParentArg,
    dids: ChildrenArg,
    ignore_duplicates: Annotated[
        bool,
        typer.Option(help="Skip DIDs attached already instead of refusing the whole request."),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Attach files to a dataset, or datasets and containers to a container (all or none).

    Rules on PARENT replicate what is attached. Refused: a closed PARENT, a file into a
    container, a collection into a dataset, a cycle, an unknown DID, a duplicate.
    """
    done = open_archive(ctx).datasets.attach(parent, dids, ignore_duplicates=ignore_duplicates)
    if json_:
        emit_json({"parent": parent, "attached": done})
    else:
        console.print(f"{len(done)} attached to {parent}")


def detach(
    ctx: typer.Context,
    parent: ParentArg,
    dids: ChildrenArg,
    json_: JsonOpt = False,
) -> None:
    """Detach members from a dataset or container (all or none; each must be a member).

    Rules on PARENT stop keeping copies of what is detached.
    """
    done = open_archive(ctx).datasets.detach(parent, dids)
    if json_:
        emit_json({"parent": parent, "detached": done})
    else:
        console.print(f"{len(done)} detached from {parent}")


def content(
    ctx: typer.Context,
    did: DIDArg,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Every file below, at any depth.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="At most this many.")] = 1000,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (paging).")] = 0,
    output: OutputOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List a dataset's or container's members (with -r: every file below it)."""
    fmt = output_format(output, json_)
    page = open_archive(ctx).datasets.content_listing(
        did, recursive=recursive, limit=limit, offset=offset
    )
    items = page.items
    columns = [Column("DID"), Column("type"), Column("size", show=human_bytes), Column("adler32")]
    rows = [[i.did, i.did_type, i.bytes, i.adler32] for i in items]
    emit(Listing(columns, rows, items, total=page.total, offset=offset, limit=limit), fmt)


def close(ctx: typer.Context, did: DIDArg, json_: JsonOpt = False) -> None:
    """Close a dataset or container: it takes no more attachments or detachments."""
    info = open_archive(ctx).datasets.close(did)
    emit_json(info) if json_ else _show(info)


def reopen(ctx: typer.Context, did: DIDArg, json_: JsonOpt = False) -> None:
    """Open a closed dataset or container again."""
    info = open_archive(ctx).datasets.reopen(did)
    emit_json(info) if json_ else _show(info)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Datasets and containers: add, attach, detach, ls, close, reopen.",
        no_args_is_help=True,
    )
    command(group, add)
    command(group, attach)
    command(group, detach)
    command(group, content, "ls")
    command(group, close)
    command(group, reopen)
    app.add_typer(group, name="dataset")
