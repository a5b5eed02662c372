"""Workspace commands: ``dpps init`` and ``dpps demo`` (the end-to-end main job)."""

from __future__ import annotations

import shutil
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from dpps.cli.common import command
from dpps.cli.listing import show_table
from dpps.cli.output import console, emit_json, human_bytes, progress_bar, styled
from dpps.core.errors import Conflict, IntegrityFailure

DEMO_MARKER = ".dpps-demo"


def init(
    directory: Annotated[Path, typer.Argument(help="Workspace directory to create.")] = Path("."),
    catalog_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the catalog (default: SQLite file).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing dpps.yaml.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Create a workspace: dpps.yaml with the reference topology, RSE directories, catalog."""
    from dpps.bdms.archive import Archive

    with Archive.init(directory, catalog_url=catalog_url, force=force) as archive:
        infos = archive.rses()
        if json_:
            emit_json({"workspace": str(archive.config.workspace), "rses": infos})
            return
        console.print(f"workspace ready at {archive.config.workspace}")
        show_table(
            None,
            ["RSE", "site", "kind", "onsite"],
            [[i.name, i.site, i.kind, i.onsite] for i in infos],
        )


def demo(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to build the demo workspace (recreated).")
    ] = Path("demo-workspace"),
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Run the main job on the embedded default: init, ingest a sample night, query, retrieve."""
    started = time.perf_counter()
    directory = directory.resolve()
    if directory.exists():
        if not (directory / DEMO_MARKER).exists():
            raise Conflict(f"{directory} exists and is not a demo workspace; choose another --dir")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / DEMO_MARKER).write_text("created by 'dpps demo'; safe to delete\n")
    summary: dict[str, Any] = {"workspace": str(directory)}

    def say(label: str, message: str) -> None:
        if not json_:
            console.print(styled("[bold]{}[/bold] {}", label, message))

    from dpps.bdms.archive import Archive
    from dpps.bdms.samples import generate_sample_night
    from dpps.storage.checksums import checksum_file

    with Archive.init(directory) as archive:
        say("1. workspace", f"{directory} ({len(archive.config.rses)} RSEs)")
        night = date(2026, 11, 21)
        landing = directory / "landing"
        files = generate_sample_night(landing, night=night)
        say("2. generated", f"{len(files)} sample data products (FITS DL0, HDF5 DL1)")

        with progress_bar(len(files), "ingest", enabled=not json_) as advance:
            report = archive.ingest(
                [landing],
                "CTAO-N",
                lfn_prefix="/ctao",
                recursive=True,
                dataset=f"/ctao/night/{night.isoformat()}",
                progress=advance,
            )
        summary["ingest"] = {
            "registered": report.count("registered"),
            "failed": len(report.failed),
            "bytes": report.bytes,
            "seconds": round(report.seconds, 3),
        }
        say(
            "3. ingested",
            f"{report.count('registered')} files "
            f"({human_bytes(report.bytes)}) into CTAO-N in {report.seconds:.2f} s",
        )
        if report.failed:
            raise IntegrityFailure(f"demo ingest failed: {report.failed[0].error}")

        query = "data_level=DL0 and tel_id=1 and observing_night=2026-11-21"
        found = archive.list_files(query)
        summary["query"] = {"filter": query, "matches": [f.did for f in found]}
        say("4. query", f"'{query}': {len(found)} matches")
        if not json_:
            show_table(
                None,
                ["DID", "obs", "tel", "size"],
                [[f.did, f.obs_id, f.tel_id, human_bytes(f.bytes)] for f in found],
            )

        target = found[0]
        loc = archive.locate(target.did)
        retrieved = directory / "retrieved"
        got = archive.get([target.did], retrieved / Path(target.name).name)
        out = Path(got.results[0].path or "")
        _, sums = checksum_file(out, ("adler32",))
        if sums["adler32"] != target.adler32:
            raise IntegrityFailure(f"retrieved {out} does not match the catalog's checksum")
        summary["retrieve"] = {
            "did": target.did,
            "from": loc.best_rse,
            "estimated_seconds": loc.estimated_seconds,
            "path": str(out),
            "adler32": sums["adler32"],
        }
        say(
            "5. retrieved",
            f"{target.did} from {loc.best_rse} to {out} "
            f"(estimate {loc.estimated_seconds:.3f} s, adler32 {sums['adler32']} verified)",
        )
    summary["seconds"] = round(time.perf_counter() - started, 3)
    if json_:
        emit_json(summary)
    else:
        console.print(
            styled(
                "[green]demo finished in {} s[/green]; try: {}",
                f"{summary['seconds']:.1f}",
                f"dpps -w {directory} ls 'obs_id={target.obs_id}'",
            )
        )


def register(app: typer.Typer) -> None:
    command(app, init, local=True)
    command(app, demo, local=True)
