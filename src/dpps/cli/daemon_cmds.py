"""Daemons: ``dpps daemon NAME [--once]`` runs one, ``dpps daemon list`` lists them, ``dpps
serve`` runs them all.

The archive's (bdms), the workload manager's (wms) and the pipelines' daemons are one registry,
``dpps.core.daemon.REGISTRY``: each package declares its own in its ``daemons`` module, and this
layer, which combines them, imports those modules (``DECLARING``) so that all are registered
before anything looks a daemon up. The daemons are made from the archive's ``context`` (config,
sessions, account), never from the facade, and beat in the catalog (``DatabaseHeartbeats``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Annotated, Any

import typer

from dpps.bdms import daemons as bdms_daemons
from dpps.bdms.replication import rse_expression
from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.cli.common import JsonOpt, command, open_local_archive
from dpps.cli.listing import Column, Listing, OutputOpt, emit, output_format
from dpps.cli.output import console, emit_json
from dpps.client.agent import api_catalog
from dpps.client.archive import RemoteArchive
from dpps.core import daemon as daemons
from dpps.core.config import Config, load_config
from dpps.core.daemon import DaemonContext, Heartbeats, WorkerSlot
from dpps.core.errors import ConfigError, InvalidInput
from dpps.core.workspace import find_workspace
from dpps.pipelines import daemons as pipeline_daemons
from dpps.wms import daemons as wms_daemons

LogLevel = Annotated[
    str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR (on stderr).")
]
SleepOpt = Annotated[
    float,
    typer.Option(
        "--sleep",
        min=0.0,
        help="Seconds to wait when there was no work (doubles, up to 30 or --max-sleep).",
    ),
]
MaxSleepOpt = Annotated[
    float,
    typer.Option(
        "--max-sleep",
        min=0.0,
        help="The longest wait of an idle site process (its latency to new work).",
    ),
]
OnceOpt = Annotated[bool, typer.Option("--once", help="One pass, then exit.")]
MetricsOpt = Annotated[
    int | None,
    typer.Option(min=1, max=65535, help="Serve Prometheus metrics on 127.0.0.1:PORT."),
]
ExecutorOpt = Annotated[
    str | None, typer.Option("--executor", help="local or dask (default: wms.executor).")
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="Dask scheduler address (default: wms.dask_scheduler)."),
]
SiteOpt = Annotated[
    str | None,
    typer.Option(
        "--site",
        help="Serve only the RSEs of this site (data center): a site's own process.",
    ),
]
RsesOpt = Annotated[
    str | None,
    typer.Option(
        "--rses",
        help="Serve only the RSEs this expression selects (with --site: all at that site).",
    ),
]
#: The modules whose import registers the daemons the CLI runs, one per package.
DECLARING = (bdms_daemons, wms_daemons, pipeline_daemons)
#: The daemons that touch storage, and so take ``--site``/``--rses``: a transfer agent serves
#: the transfers into its RSEs, the others read or delete only their RSEs' storage.
PARTITIONED = ("transfer", "stager", "reaper", "auditor", "ingest")


def partition(
    config: Config, name: str, site: str | None, expression: str | None
) -> frozenset[str] | None:
    """The RSEs a site process of daemon ``name`` serves, or ``None`` (all); refuses, before
    anything is touched, a selection another site's storage is in, one that is empty, or an
    RSE this process's configuration gives no path for."""
    if site is None and expression is None:
        return None
    if name not in PARTITIONED:
        raise InvalidInput(
            f"daemon {name!r} serves the whole archive: --site/--rses apply to "
            f"{', '.join(PARTITIONED)}"
        )
    chosen: set[str] = set(config.rses)
    if site is not None:
        if site not in config.sites:
            known = ", ".join(sorted(config.sites)) or "none"
            raise ConfigError(f"--site {site}: no such site in the configuration (known: {known})")
        chosen = {n for n, r in config.rses.items() if r.site == site}
        if not chosen:
            raise ConfigError(
                f"--site {site}: this configuration has no RSE at {site}; a site process "
                "needs the paths of its own site's storage"
            )
    if expression is not None:
        selected = set(rse_expression.select(config, expression))
        foreign = sorted(selected - chosen)
        if site is not None and foreign:
            where = ", ".join(f"{n} (at {config.rses[n].site})" for n in foreign)
            raise ConfigError(
                f"--site {site} --rses {expression!r} selects {where}: a site process "
                "serves only its own site's storage"
            )
        chosen = selected
        if not chosen:
            raise ConfigError(f"--rses {expression!r} selects no configured RSE")
    for rse in sorted(chosen):
        if not config.rses[rse].url.strip():
            raise ConfigError(f"RSE {rse}: no path or URL in this process's configuration")
    if name == "ingest" and config.acada.rse not in chosen:
        raise ConfigError(
            f"the ACADA landing area is on {config.acada.rse}, which this process does not "
            f"serve ({', '.join(sorted(chosen))}): run ingest at the landing area's own site"
        )
    return frozenset(chosen)


class PartitionHeartbeats:
    """Heartbeats of a site process under ``NAME@RSES``: instances split work (``slot``)
    among the processes of their own partition, not with every site's."""

    def __init__(self, inner: Heartbeats, rses: frozenset[str]) -> None:
        self.inner = inner
        self.suffix = "@" + ",".join(sorted(rses))
        self.rses = sorted(rses)

    def beat(self, daemon: str, instance: str, details: Mapping[str, Any]) -> WorkerSlot:
        return self.inner.beat(daemon + self.suffix, instance, {**details, "rses": self.rses})

    def forget(self, daemon: str, instance: str) -> None:
        self.inner.forget(daemon + self.suffix, instance)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s",
    )


def _summary(contexts: dict[str, DaemonContext], json_: bool) -> None:
    data = {
        name: {"instance": c.instance, "transient_errors": dict(c.errors)}
        for name, c in contexts.items()
    }
    if json_:
        emit_json(data)
        return
    for name, info in data.items():
        errors = info["transient_errors"] or "none"
        console.print(f"{name} ({info['instance']}) stopped; transient errors: {errors}")


def run_named(
    ctx: typer.Context,
    name: str,
    *,
    once: bool,
    sleep: float,
    log_level: str,
    metrics_port: int | None,
    json_: bool,
    executor: str | None = None,
    scheduler: str | None = None,
    site: str | None = None,
    rses: str | None = None,
    max_sleep: float = 30.0,
) -> None:
    """Run the registered daemon ``name`` (``--executor``/``--scheduler`` override the WMS
    configuration of this process: the job manager's executor; ``--site``/``--rses`` make it
    a site process, serving only those RSEs)."""
    daemons.spec(name)
    _logging(log_level)
    config = load_config(find_workspace(_workspace(ctx)))
    served = partition(config, name, site, rses)  # refused before the catalog is opened
    if api_catalog(config) is not None:
        agent = _run_agent(
            config,
            name,
            served,
            once=once,
            sleep=sleep,
            max_sleep=max_sleep,
            metrics_port=metrics_port,
        )
        _summary({name: agent}, json_)
        return
    archive = open_local_archive(ctx)
    if executor is not None or scheduler is not None:
        wms = archive.config.wms.model_copy(
            update={
                k: v
                for k, v in (("executor", executor), ("dask_scheduler", scheduler))
                if v is not None
            }
        )
        archive.config = archive.config.model_copy(update={"wms": wms})
    from dpps.oms.server import daemon_metrics  # prometheus only when asked for

    deps = archive.context
    beats: Heartbeats = DatabaseHeartbeats(archive.sessions)
    if served is not None:
        deps = replace(deps, rses=served)
        beats = PartitionHeartbeats(beats, served)
    with daemon_metrics(metrics_port) as wrap:
        context = daemons.run_registered(
            name,
            deps,
            beats,
            once=once,
            sleep_s=sleep,
            max_sleep_s=max_sleep,
            wrap=wrap,
        )
    _summary({name: context}, json_)


def _run_agent(
    config: Config,
    name: str,
    served: frozenset[str] | None,
    *,
    once: bool,
    sleep: float,
    max_sleep: float,
    metrics_port: int | None,
) -> DaemonContext:
    """A site process whose workspace names the central API as its catalog
    (``dpps.client.agent``): a transfer agent copies into its own RSEs and asks the API what
    to copy; a reaper asks what its RSEs may delete and reports what went; an auditor asks
    which replicas are due, reads them and reports what it found; a stager asks which stage
    requests of its tapes are due, copies them to its buffer and reports. (The ingestion
    queue, ``dpps daemon ingest``, does the same in ``acada_cmds``.) The other daemons work
    on the catalog's tables and need the database."""
    if name not in ("transfer", "reaper", "auditor", "stager"):
        raise ConfigError(
            f"catalog.url is the API at {config.catalog.url}: only the transfer agent, the "
            f"reaper, the auditor, the stager and the ingestion queue run against the API; "
            f"daemon {name!r} needs the catalog database"
        )
    if served is None:
        raise ConfigError(
            f"a {name} process reaching the catalog through the API serves one site: "
            "give --site or --rses"
        )
    from dpps.client.agent import RemoteHeartbeats, connect
    from dpps.oms.server import daemon_metrics

    with connect(config) as remote, daemon_metrics(metrics_port) as wrap:
        process = _site_process(config, name, served, remote)
        beats = PartitionHeartbeats(RemoteHeartbeats(remote), served)
        return daemons.run(
            process, name, beats, once=once, sleep_s=sleep, max_sleep_s=max_sleep, wrap=wrap
        )


def _site_process(
    config: Config, name: str, served: frozenset[str], remote: RemoteArchive
) -> daemons.Daemon:
    from dpps.client.agent import RemoteAuditLedger, RemoteLedger, RemoteReaperLedger

    if name == "transfer":
        from dpps.bdms.transfer.daemon import TransferDaemon

        return TransferDaemon(config=config, ledger=RemoteLedger(remote, served))
    if name == "stager":
        from dpps.bdms.staging.stager import SiteStager
        from dpps.client.agent import RemoteStageLedger

        return SiteStager(config, RemoteStageLedger(remote, served), served)
    if name == "auditor":
        from dpps.bdms.preservation.auditor import SiteAuditor

        return SiteAuditor(config, RemoteAuditLedger(remote, served), served)
    from dpps.bdms.preservation.reaper import SiteReaper

    return SiteReaper(config, RemoteReaperLedger(remote, served), served)


def _doc(summary: str) -> str:
    return (
        f"{summary}\n\nRuns until SIGTERM/SIGINT (or once). Any number of instances may run: "
        "work is claimed from the catalog with leases, so an instance may be killed at any "
        "moment and another one (or the same, restarted) finishes its work."
    )


def _workspace(ctx: typer.Context) -> str | None:
    workspace = (ctx.obj or {}).get("workspace") if ctx is not None else None
    return None if workspace is None else str(workspace)


def _daemon_command(name: str, summary: str) -> Callable[..., None]:
    if name in PARTITIONED:
        return _site_command(name, summary)

    def run_one(
        ctx: typer.Context,
        once: OnceOpt = False,
        sleep: SleepOpt = 1.0,
        log_level: LogLevel = "INFO",
        metrics_port: MetricsOpt = None,
        json_: JsonOpt = False,
    ) -> None:
        run_named(
            ctx,
            name,
            once=once,
            sleep=sleep,
            log_level=log_level,
            metrics_port=metrics_port,
            json_=json_,
        )

    run_one.__name__ = f"daemon_{name}"
    run_one.__doc__ = _doc(summary)
    return run_one


def _site_command(name: str, summary: str) -> Callable[..., None]:
    def run_one(
        ctx: typer.Context,
        once: OnceOpt = False,
        site: SiteOpt = None,
        rses: RsesOpt = None,
        sleep: SleepOpt = 1.0,
        max_sleep: MaxSleepOpt = 30.0,
        log_level: LogLevel = "INFO",
        metrics_port: MetricsOpt = None,
        json_: JsonOpt = False,
    ) -> None:
        run_named(
            ctx,
            name,
            once=once,
            sleep=sleep,
            log_level=log_level,
            metrics_port=metrics_port,
            json_=json_,
            site=site,
            rses=rses,
            max_sleep=max_sleep,
        )

    run_one.__name__ = f"daemon_{name}"
    run_one.__doc__ = _doc(summary) + (
        "\n\nWith --site/--rses it is a site's own process: "
        + (
            "it claims only the transfers into those RSEs."
            if name == "transfer"
            else "it reads, writes and deletes only those RSEs' storage."
        )
    )
    return run_one


def wms_manager(
    ctx: typer.Context,
    once: OnceOpt = False,
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
    sleep: SleepOpt = 1.0,
    log_level: LogLevel = "INFO",
    metrics_port: MetricsOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Match and dispatch jobs to the executor, reschedule stalled ones, advance workflows.

    Runs until SIGTERM/SIGINT. With --once, one pass and then the work it queued (and the
    workflow steps that become ready) runs to the end before the command returns. Any number
    of managers may run, and any may be killed at any moment: the jobs it held are found again
    when their leases expire.
    """
    run_named(
        ctx,
        "wms-manager",
        once=once,
        sleep=sleep,
        log_level=log_level,
        metrics_port=metrics_port,
        json_=json_,
        executor=executor,
        scheduler=scheduler,
    )


def list_daemons(output: OutputOpt = None, json_: JsonOpt = False) -> None:
    """List the daemons: `dpps daemon NAME` runs one, `dpps serve` runs them all."""
    fmt = output_format(output, json_)
    rows = [
        {"name": s.name, "package": s.package, "summary": s.summary}
        for s in sorted(daemons.REGISTRY.values(), key=lambda s: s.name)
    ]
    columns = [Column("daemon"), Column("package"), Column("what it does", whole=False)]
    emit(Listing(columns, [[r["name"], r["package"], r["summary"]] for r in rows], rows), fmt)


def serve(
    ctx: typer.Context,
    only: Annotated[
        str | None, typer.Option(help="Comma-separated daemon names (default: all).")
    ] = None,
    sleep: SleepOpt = 1.0,
    log_level: LogLevel = "INFO",
    host: Annotated[
        str, typer.Option(help="Address the REST API and dashboard bind to.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the REST API.")] = 8000,
    api: Annotated[
        bool, typer.Option("--api/--no-api", help="Serve the REST API, dashboard and /metrics.")
    ] = True,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes (one per core to use; default 1).")
    ] = 1,
    json_: JsonOpt = False,
) -> None:
    """Run every registered daemon in this process, one thread each, and serve the REST API,
    the web dashboard (/ui/) and /metrics (127.0.0.1:8000), until SIGTERM/SIGINT.

    The embedded default: one command keeps the archive working (rules, transfers, the WMS job
    manager and transformations, and the other registered daemons; `dpps daemon list`).
    Production runs each daemon as its own process instead.
    """
    _logging(log_level)
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    for name in names or []:
        daemons.spec(name)
    archive = open_local_archive(ctx)
    from dpps.oms.server import serve as serve_all  # the API stack only when serving

    announce = None if json_ else console.print
    contexts = serve_all(
        archive,
        names,
        sleep_s=sleep,
        host=host,
        port=port,
        api=api,
        announce=announce,
        workers=workers,
    )
    _summary(contexts, json_)


def _group(app: typer.Typer, name: str, help_text: str) -> typer.Typer:
    """The sub-application ``name`` of ``app``, created if no other module made it yet."""
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    group = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


def register(app: typer.Typer) -> None:
    """``dpps daemon NAME`` for every registered daemon, bdms and wms (a module may have put
    its own command there already, with options of its own: it is kept), ``dpps daemon
    list`` and ``dpps serve``."""
    group = _group(app, "daemon", "Run one of the archive's daemons (dpps daemon list).")
    present = {c.name for c in group.registered_commands}
    command(group, list_daemons, "list")
    if "wms-manager" not in present:
        command(group, wms_manager, "wms-manager", local=True)
        present.add("wms-manager")
    for spec in daemons.REGISTRY.values():
        if spec.name not in present:
            command(group, _daemon_command(spec.name, spec.summary), spec.name, local=True)
    command(app, serve, local=True)
