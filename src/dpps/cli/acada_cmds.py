"""ACADA commands: ``dpps acada simulate`` and the ingestion daemon (``dpps daemon ingest``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from dpps.cli.common import JsonOpt, command, open_local_archive
from dpps.cli.output import console, emit_json, err_console, human_bytes, progress_bar
from dpps.core.errors import InvalidInput


def _ints(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise InvalidInput(f"expected comma-separated telescope ids, got {text!r}") from None


def simulate(
    ctx: typer.Context,
    landing: Annotated[
        Path | None,
        typer.Option(help="Landing directory (default: the site's on-site RSE landing area)."),
    ] = None,
    site: Annotated[str, typer.Option(help="north (CTAO-N) or south (CTAO-S).")] = "north",
    telescopes: Annotated[
        str | None, typer.Option(help="Telescope ids, e.g. 1,2 (default: the site's LSTs/MSTs).")
    ] = None,
    blocks: Annotated[int, typer.Option("--blocks", min=1, help="Observation blocks.")] = 1,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds per block.")] = 10.0,
    event_rate: Annotated[float, typer.Option(min=0.01, help="Array triggers per second.")] = 10.0,
    events_per_chunk: Annotated[int, typer.Option(min=1, help="Events per chunk file.")] = 25,
    sdh: Annotated[int, typer.Option(min=1, help="Data handlers (SDH) per telescope.")] = 1,
    streams: Annotated[str, typer.Option(help="Streams: SHOWER,CAL,MUON.")] = "SHOWER,CAL,MUON",
    start: Annotated[
        dt.datetime | None, typer.Option(help="Start of the first block, UTC.")
    ] = None,
    sb_id: Annotated[int, typer.Option(min=0, help="Scheduling block id.")] = 1,
    obs_id: Annotated[int, typer.Option(min=0, help="First observation block id.")] = 1,
    compression: Annotated[str, typer.Option(help="raw, zstd1/3/5, lzo or fact.")] = "zstd3",
    monitoring: Annotated[
        bool, typer.Option(help="Also write pointing and weather tables.")
    ] = True,
    triggers: Annotated[
        bool, typer.Option(help="Write <file>.trigger when a file is complete.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
    json_: JsonOpt = False,
) -> None:
    """Write realistic DL0 files into a landing area the way ACADA does.

    Zfits telescope event files (DL0v1 messages, waveforms from a shower-image model), the
    subarray trigger file and plain-FITS pointing and weather tables per observation block,
    each followed by its trigger file.
    """
    from dpps.acada.simulate import SimulationConfig
    from dpps.acada.simulate import simulate as run_simulation
    from dpps.instrument.dl0 import quiet_native_stdout

    config = SimulationConfig(
        site=site,
        telescopes=_ints(telescopes),
        observation_blocks=blocks,
        duration_s=duration,
        event_rate_hz=event_rate,
        events_per_chunk=events_per_chunk,
        sdh_per_telescope=sdh,
        streams=tuple(s.strip().upper() for s in streams.split(",") if s.strip()),
        start=start or SimulationConfig.start,
        first_sb_id=sb_id,
        first_obs_id=obs_id,
        compression=compression,
        monitoring=monitoring,
        triggers=triggers,
        seed=seed,
    )
    config.validate()
    if landing is None:
        landing = open_local_archive(ctx).acada.queue(config.layout().rse).settings.landing
    with (
        progress_bar(blocks, "simulate", enabled=not json_) as advance,
        quiet_native_stdout(),
    ):
        files = run_simulation(landing, config, on_block=lambda _i: advance(1))
    sizes = [f.stat().st_size for f in files]
    if json_:
        emit_json({"landing": str(landing), "files": [str(f) for f in files], "bytes": sizes})
        return
    for f in files:
        console.print(str(f.relative_to(landing)))
    console.print(f"{len(files)} files, {human_bytes(sum(sizes))} under {landing}")


def ingest_daemon(
    ctx: typer.Context,
    landing: Annotated[
        Path | None,
        typer.Option(help="Landing directory (default: acada.landing under the RSE root)."),
    ] = None,
    rse: Annotated[
        str | None, typer.Option(help="On-site RSE the landing area lies on (default acada.rse).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Processes checksumming files (acada.workers).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Prometheus port on 127.0.0.1 (0: any free one)."),
    ] = None,
    executor: Annotated[
        str, typer.Option(help="process (local pool), inline or dask (wms.dask_scheduler).")
    ] = "process",
    once: Annotated[bool, typer.Option("--once", help="One pass over the triggers.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Run the ACADA ingestion queue: take every triggered landing-area file into the archive.

    Registers files in place on the on-site RSE (checksums verified, metadata extracted),
    datasets per directory with their replication rules, quarantines bad files. One instance
    per landing area; stops on SIGTERM/SIGINT within seconds; safe to kill at any moment.
    """
    from dpps.bdms.ingestion.queue import IngestionQueue
    from dpps.bdms.ingestion.settings import QueueSettings
    from dpps.client.agent import RemoteHeartbeats, RemoteIngestLedger, api_catalog, connect
    from dpps.core.config import load_config
    from dpps.core.daemon import Heartbeats, run_daemon
    from dpps.core.workspace import find_workspace

    workspace = (ctx.obj or {}).get("workspace")
    config = load_config(find_workspace(None if workspace is None else str(workspace)))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("dpps").setLevel(logging.INFO)
    settings = QueueSettings.from_config(
        config,
        rse=rse,
        landing=landing,
        workers=workers,
        metrics_port=metrics_port,
        executor=executor,
    )
    beats: Heartbeats
    with contextlib.ExitStack() as stack:
        if api_catalog(config) is not None:  # a telescope site registering through the API
            remote = stack.enter_context(connect(config))
            queue = IngestionQueue(
                None, settings, config=config, ledger=RemoteIngestLedger(remote)
            )
            beats = RemoteHeartbeats(remote)
        else:
            from dpps.catalog.heartbeats import DatabaseHeartbeats

            archive = open_local_archive(ctx)
            queue = IngestionQueue(archive.context, settings)
            beats = DatabaseHeartbeats(archive.sessions)
        stack.callback(queue.close)
        queue.start()
        if queue.metrics_port is not None:
            err_console.print(f"metrics: http://127.0.0.1:{queue.metrics_port}/metrics")
        run_daemon(
            "ingest",
            queue.run_once,
            beats,
            once=once,
            sleep_s=queue.sleep_s,
            max_sleep_s=queue.max_sleep_s,
            details={"landing": str(settings.landing), "rse": settings.rse},
        )
    summary: dict[str, Any] = {
        "landing": str(queue.settings.landing),
        "rse": queue.settings.rse,
        **{k: int(queue.metrics.value(k)) for k in ("succeeded", "skipped", "quarantined")},
        "failed": int(queue.metrics.value("failed")),
    }
    if json_:
        emit_json(summary)
    else:
        console.print(", ".join(f"{k} {v}" for k, v in summary.items()))


def _group(app: typer.Typer, name: str, help_text: str) -> typer.Typer:
    """The sub-application ``name`` of ``app``, created if no other module made it yet."""
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    group = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


def register(app: typer.Typer) -> None:
    acada_app = _group(app, "acada", "ACADA: simulated telescope-site data and its ingestion.")
    command(acada_app, simulate, local=True)
    command(acada_app, ingest_daemon, "ingest-daemon", local=True)
    daemon_app = _group(app, "daemon", "Run one of the archive's daemons.")
    command(daemon_app, ingest_daemon, "ingest", local=True)
