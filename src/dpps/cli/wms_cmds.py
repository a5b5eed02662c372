"""Workload commands: ``dpps wms submit/status/list/logs/kill/retry/accounting/daemon`` and
``dpps wms transformation add/list/status/retry/pause/resume``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dpps.cli.common import JsonOpt, command, open_wms
from dpps.cli.listing import Column, Listing, OutputOpt, emit, output_format, show_table
from dpps.cli.output import console, emit_json, err_console, human_bytes, styled
from dpps.core import priority as scale
from dpps.core.errors import EXIT_CODES

FAILED_EXIT = 10
assert FAILED_EXIT in EXIT_CODES

ExecutorOpt = Annotated[
    str | None, typer.Option("--executor", help="local or dask (default: wms.executor).")
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="Dask scheduler address (default: wms.dask_scheduler)."),
]
SiteOpt = Annotated[str | None, typer.Option("--site", help="Run only at this site.")]
PriorityOpt = Annotated[
    int,
    typer.Option("--priority", min=scale.LOWEST, max=scale.HIGHEST, help=scale.HELP),
]
ActivityOpt = Annotated[
    str, typer.Option("--activity", help="Activity (wms.activities ranks them), e.g. cat-b.")
]
WorkflowFlag = Annotated[
    bool, typer.Option("--workflow", "-W", help="ID is a workflow, not a job.")
]


@contextmanager
def _bar(enabled: bool) -> Iterator[Callable[[int, int], None]]:
    if not enabled or not err_console.is_terminal:
        yield lambda _done, _total: None
        return
    with Progress(
        TextColumn("[bold]jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("jobs", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=max(total, 1))


def submit(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="JOB.yaml, or a CWL v1.2 WORKFLOW.cwl.")],
    inputs: Annotated[
        Path | None, typer.Option("--inputs", help="YAML with the workflow's input values.")
    ] = None,
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
    site: SiteOpt = None,
    name: Annotated[str | None, typer.Option(help="Name shown in listings.")] = None,
    priority: PriorityOpt = 3,
    activity: ActivityOpt = "default",
    max_attempts: Annotated[
        int | None, typer.Option(min=1, help="Attempts per job before FAILED.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Run the jobs here (local) or wait (dask) until done.")
    ] = False,
    timeout: Annotated[float, typer.Option(min=1, help="--wait gives up after this (s).")] = 3600,
    json_: JsonOpt = False,
) -> None:
    """Submit a job or a CWL workflow; with --wait, run it to the end.

    Archive inputs are written as lfn:/path locations. With --wait the command drives a job
    manager in this process and exits 0 when everything is DONE, 10 when something FAILED or
    was KILLED.
    """
    from dpps.wms.types import SubmitOptions

    wms = open_wms(ctx)
    opts = SubmitOptions(name, priority, activity, site, executor, max_attempts)
    sub = wms.submit(path, inputs, opts=opts)
    state = None
    if wait:
        with _bar(not json_) as tick:
            state = wms.wait(
                sub, executor=executor, scheduler=scheduler, timeout_s=timeout, progress=tick
            )
    result = {"kind": sub.kind, "id": sub.id, "name": sub.name, "state": state}
    if json_:
        detail = wms.job(sub.id) if sub.kind == "job" else wms.workflow(sub.id)
        emit_json({**result, "detail": detail})
    else:
        console.print(
            f"{sub.kind} {sub.id} ({sub.name}) submitted" + (f": {state}" if state else "")
        )
    if state in ("FAILED", "KILLED"):
        raise typer.Exit(FAILED_EXIT)


def _job_rows(jobs: list[Any]) -> list[list[Any]]:
    return [
        [
            j.id,
            j.name,
            j.state,
            j.run_site or j.site,
            j.activity,
            j.priority,
            f"{j.attempts}/{j.max_attempts}",
            j.reason or "",
        ]
        for j in jobs
    ]


JOB_COLUMNS = ["id", "name", "state", "site", "activity", "prio", "attempts", "reason"]
#: The job list's columns: the reason is free text, the rest stay whole.
JOB_LISTING = [Column(c, whole=c != "reason") for c in JOB_COLUMNS]


def status(
    ctx: typer.Context,
    ident: Annotated[int, typer.Argument(metavar="ID", help="Job id (or workflow id with -W).")],
    workflow: WorkflowFlag = False,
    json_: JsonOpt = False,
) -> None:
    """State of a job (history, inputs, outputs, accounting) or of a workflow (steps, jobs)."""
    wms = open_wms(ctx)
    if workflow:
        info = wms.workflow(ident)
        if json_:
            emit_json(info)
            return
        console.print(
            styled("workflow {} {}: [bold]{}[/bold]", info.id, info.name, info.state)
            + (f" ({info.reason})" if info.reason else "")
        )
        for step, st in info.steps.items():
            console.print(f"  step {step}: {st['state']} ({st['jobs']} jobs)")
        show_table(None, JOB_COLUMNS, _job_rows(info.jobs))
        for key, value in info.outputs.items():
            console.print(f"  output {key}: {value}")
        return
    job = wms.job(ident)
    if json_:
        emit_json(job)
        return
    console.print(
        styled("job {} {}: [bold]{}[/bold]", job.id, job.name, job.state)
        + (f" ({job.reason})" if job.reason else "")
    )
    console.print(
        f"  tool {job.tool}; site {job.run_site or job.site or '-'}; host "
        f"{job.host or '-'}; attempts {job.attempts}/{job.max_attempts}"
    )
    console.print(
        f"  cpu {job.cpu_s:.2f} s, wall {job.wall_s:.2f} s, peak {job.max_rss_mb:.0f} "
        f"MB, read {human_bytes(job.bytes_read)}, wrote "
        f"{human_bytes(job.bytes_written)}"
    )
    for label, dids in (("input", job.inputs), ("output", job.outputs)):
        for did in dids:
            console.print(f"  {label} {did}")
    rows = [
        [e.ts.isoformat(timespec="seconds"), e.state, e.attempt, e.reason or ""]
        for e in job.events
    ]
    show_table("history", ["time", "state", "attempt", "reason"], rows)


def list_jobs(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    workflow: Annotated[int | None, typer.Option(help="Only jobs of this workflow.")] = None,
    site: Annotated[str | None, typer.Option(help="Only jobs that ran at this site.")] = None,
    activity: Annotated[str | None, typer.Option(help="Only jobs of this activity.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (paging).")] = 0,
    output: OutputOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    fmt = output_format(output, json_)
    page = open_wms(ctx).job_listing(
        state=state, workflow_id=workflow, site=site, activity=activity, limit=limit, offset=offset
    )
    emit(Listing(JOB_LISTING, _job_rows(page.items), page.items, page.total, offset, limit), fmt)


def logs(
    ctx: typer.Context,
    ident: Annotated[int, typer.Argument(metavar="JOB", help="Job id.")],
    json_: JsonOpt = False,
) -> None:
    """The output (stdout and stderr) of a job's last attempt."""
    text = open_wms(ctx).logs(ident)
    if json_:
        emit_json({"job": ident, "log": text})
    else:
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def kill(
    ctx: typer.Context,
    ident: Annotated[int, typer.Argument(metavar="ID", help="Job id (or workflow id with -W).")],
    workflow: WorkflowFlag = False,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Kill a job or a workflow; nothing of a killed attempt is registered.

    A running tool is stopped when its worker next renews its lease.
    """
    wms = open_wms(ctx)
    killed = wms.kill_workflow(ident, reason) if workflow else (wms.kill(ident, reason) and 1)
    if json_:
        emit_json({"id": ident, "workflow": workflow, "jobs_killed": killed})
    else:
        console.print(f"{'workflow' if workflow else 'job'} {ident} killed ({killed} job(s))")


def retry(
    ctx: typer.Context,
    ident: Annotated[int, typer.Argument(metavar="ID", help="Job id (or workflow id with -W).")],
    workflow: WorkflowFlag = False,
    json_: JsonOpt = False,
) -> None:
    """Run FAILED or KILLED jobs again (attempts start over); reopens their workflow."""
    wms = open_wms(ctx)
    if workflow:
        n = wms.retry_workflow(ident)
    else:
        wms.retry(ident)
        n = 1
    if json_:
        emit_json({"id": ident, "workflow": workflow, "jobs_retried": n})
    else:
        console.print(f"{n} job(s) resubmitted")


def accounting(
    ctx: typer.Context,
    by: Annotated[
        str,
        typer.Option(
            help="Group by (comma-separated): site, activity, software_version, executor, tool."
        ),
    ] = "site,activity,software_version",
    json_: JsonOpt = False,
) -> None:
    """CPU time, wall time, peak memory and bytes read/written of jobs that ran."""
    keys = [k.strip() for k in by.split(",") if k.strip()]
    rows = open_wms(ctx).accounting(keys)
    if json_:
        emit_json(rows)
        return
    show_table(
        None,
        [*keys, "jobs", "done", "failed", "cpu h", "wall h", "peak MB", "read", "written"],
        [
            [
                *(r.key[k] for k in keys),
                r.jobs,
                r.done,
                r.failed,
                f"{r.cpu_hours:.4f}",
                f"{r.wall_hours:.4f}",
                f"{r.max_rss_mb:.0f}",
                human_bytes(r.bytes_read),
                human_bytes(r.bytes_written),
            ]
            for r in rows
        ],
    )


def daemon(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="wms-manager or wms-transformer.")],
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    executor: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="Logging level.")] = "INFO",
    json_: JsonOpt = False,
) -> None:
    """Run a WMS daemon (wms-manager, wms-transformer): the same as `dpps daemon NAME`.

    Kept for scripts written before the daemons were merged into `dpps daemon`.
    """
    from dpps.cli.daemon_cmds import run_named
    from dpps.core.errors import NotFound
    from dpps.wms import daemons

    if name not in daemons.NAMES:
        raise NotFound(f"no WMS daemon {name!r} (known: {', '.join(daemons.NAMES)})")
    run_named(
        ctx,
        name,
        once=once,
        sleep=0.2,
        log_level=log_level,
        metrics_port=None,
        json_=json_,
        executor=executor,
        scheduler=scheduler,
    )


# -- transformations ---------------------------------------------------------------------------


def _tr_info(info: Any, json_: bool) -> None:
    if json_:
        emit_json(info)
        return
    console.print(f"transformation {info.name} ({info.state}): {info.filter}")
    console.print(
        f"  grouping {info.grouping} -> input {info.input_port}; activity "
        f"{info.activity}, priority {info.priority}; outputs: "
        f"{info.output_query}"
    )
    console.print("  files: " + ", ".join(f"{k} {v}" for k, v in info.files.items()))
    console.print("  tasks: " + (", ".join(f"{k} {v}" for k, v in info.tasks.items()) or "none"))
    for p in info.problematic:
        console.print(styled("  [red]problematic[/red] {}: {}", p.did, p.reason))


def tr_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Unique name (also tags its outputs).")],
    template: Annotated[Path, typer.Argument(help="CWL v1.2 Workflow or CommandLineTool.")],
    filter_text: Annotated[
        str, typer.Option("--filter", help="Files to process (query language).")
    ] = "",
    input_from: Annotated[
        str | None, typer.Option(help="Process the outputs of this transformation.")
    ] = None,
    input_port: Annotated[
        str | None, typer.Option(help="The File/File[] input the files go to.")
    ] = None,
    grouping: Annotated[
        str, typer.Option(help="file, files:N or by:FIELD[,FIELD] (e.g. by:obs_id).")
    ] = "file",
    inputs: Annotated[
        Path | None, typer.Option("--inputs", help="YAML with the template's other inputs.")
    ] = None,
    settle: Annotated[
        float, typer.Option(min=0, help="Seconds without new files before a partial group runs.")
    ] = 0.0,
    max_task_attempts: Annotated[
        int, typer.Option(min=1, help="Tasks per file before it is PROBLEMATIC.")
    ] = 2,
    executor: ExecutorOpt = None,
    site: SiteOpt = None,
    priority: PriorityOpt = 3,
    activity: ActivityOpt = "default",
    json_: JsonOpt = False,
) -> None:
    """Define a production: files matching the filter (now and later) become tasks."""
    from dpps.wms.builder import read_yaml
    from dpps.wms.types import SubmitOptions

    wms = open_wms(ctx)
    given = read_yaml(inputs, "inputs") if inputs is not None else {}
    info = wms.add_transformation(
        name,
        template,
        filter_text=filter_text,
        input_from=input_from,
        input_port=input_port,
        grouping=grouping,
        inputs=given,
        settle_s=settle,
        max_task_attempts=max_task_attempts,
        opts=SubmitOptions(None, priority, activity, site, executor),
    )
    _tr_info(info, json_)


def tr_list(ctx: typer.Context, output: OutputOpt = None, json_: JsonOpt = False) -> None:
    """List transformations with their file counts."""
    fmt = output_format(output, json_)
    infos = open_wms(ctx).transformations()
    rows = [
        [
            t.name,
            t.state,
            t.activity,
            t.priority,
            t.grouping,
            " ".join(f"{k}={v}" for k, v in t.files.items() if v),
            t.filter,
        ]
        for t in infos
    ]
    columns = [
        *(Column(c) for c in ("name", "state", "activity", "prio", "grouping")),
        Column("files", whole=False),
        Column("filter", whole=False),
    ]
    emit(Listing(columns, rows, infos), fmt)


def tr_status(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Transformation name.")],
    json_: JsonOpt = False,
) -> None:
    """A transformation's files by status, tasks by state, and its problematic files."""
    _tr_info(open_wms(ctx).transformation(name), json_)


def tr_retry(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Transformation name.")],
    json_: JsonOpt = False,
) -> None:
    """Send a transformation's PROBLEMATIC files through again."""
    n = open_wms(ctx).retry_problematic(name)
    emit_json({"retried": n}) if json_ else console.print(f"{n} file(s) will be processed again")


def _set_state(state: str) -> Callable[..., None]:
    def fn(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Name.")]) -> None:
        from dpps.wms.states import TransformationState

        open_wms(ctx).set_transformation_state(name, TransformationState(state))
        console.print(f"transformation {name} {state}")

    fn.__doc__ = (
        "Pause a transformation: no new tasks until resumed."
        if state == "PAUSED"
        else "Resume a paused transformation."
    )
    return fn


def register(app: typer.Typer) -> None:
    wms_app = typer.Typer(
        help="Workload management: jobs, CWL workflows, transformations.", no_args_is_help=True
    )
    tr_app = typer.Typer(help="Transformations: data-driven productions.", no_args_is_help=True)
    command(wms_app, submit, "submit")
    command(wms_app, status, "status")
    command(wms_app, list_jobs, "list")
    command(wms_app, logs, "logs")
    command(wms_app, kill, "kill")
    command(wms_app, retry, "retry")
    command(wms_app, accounting, "accounting")
    command(wms_app, daemon, "daemon", local=True)
    command(tr_app, tr_add, "add")
    command(tr_app, tr_list, "list")
    command(tr_app, tr_status, "status")
    command(tr_app, tr_retry, "retry")
    command(tr_app, _set_state("PAUSED"), "pause")
    command(tr_app, _set_state("ACTIVE"), "resume")
    wms_app.add_typer(tr_app, name="transformation")
    app.add_typer(wms_app, name="wms")
