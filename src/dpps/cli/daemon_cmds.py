"""Daemons: ``dpps daemon NAME [--once]`` runs one, ``dpps serve`` runs them all."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from dpps.bdms import daemons
from dpps.cli.common import JsonOpt, command, open_local_archive
from dpps.cli.output import console, emit_json
from dpps.core.daemon import DaemonContext

LogLevel = Annotated[
    str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR (on stderr).")
]
SleepOpt = Annotated[
    float,
    typer.Option(
        "--sleep", min=0.0, help="Seconds to wait when there was no work (doubles, up to 30)."
    ),
]


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


def _daemon_command(name: str, summary: str) -> Callable[..., None]:
    def run_one(
        ctx: typer.Context,
        once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
        sleep: SleepOpt = 1.0,
        log_level: LogLevel = "INFO",
        metrics_port: Annotated[
            int | None,
            typer.Option(min=1, max=65535, help="Serve Prometheus metrics on 127.0.0.1:PORT."),
        ] = None,
        json_: JsonOpt = False,
    ) -> None:
        _logging(log_level)
        archive = open_local_archive(ctx)
        from dpps.oms.server import daemon_metrics  # prometheus only when asked for

        with daemon_metrics(metrics_port) as wrap:
            context = daemons.run(archive, name, once=once, sleep_s=sleep, wrap=wrap)
        _summary({name: context}, json_)

    run_one.__name__ = f"daemon_{name}"
    run_one.__doc__ = (
        f"{summary}\n\nRuns until SIGTERM/SIGINT (or once). Any number of instances may run: "
        "work is claimed from the catalog with leases, so an instance may be killed at any "
        "moment and another one (or the same, restarted) finishes its work."
    )
    return run_one


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
    json_: JsonOpt = False,
) -> None:
    """Run every registered daemon in this process, one thread each, and serve the REST API,
    the web dashboard (/ui/) and /metrics (127.0.0.1:8000), until SIGTERM/SIGINT.

    The embedded default: one command keeps the archive working (rules, transfers, and the
    other registered daemons). Production runs each daemon as its own process instead.
    """
    _logging(log_level)
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    for name in names or []:
        daemons.spec(name)
    archive = open_local_archive(ctx)
    from dpps.oms.server import serve as serve_all  # the API stack only when serving

    announce = None if json_ else console.print
    contexts = serve_all(
        archive, names, sleep_s=sleep, host=host, port=port, api=api, announce=announce
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
    """``dpps daemon NAME`` for every registered daemon (a module may have put its own
    command there already, with options of its own: it is kept), and ``dpps serve``."""
    group = _group(app, "daemon", "Run one of the archive's daemons.")
    present = {c.name for c in group.registered_commands}
    for spec in daemons.REGISTRY.values():
        if spec.name not in present:
            command(group, _daemon_command(spec.name, spec.summary), spec.name)
    command(app, serve)
