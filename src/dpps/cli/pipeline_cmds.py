"""Pipeline commands: ``dpps pipeline list | run | production``.

``run`` exits with the tool's documented code (``dpps.pipelines.tool``): 0 success, 1 the tool
failed (bad or corrupt input data included), 2 configuration error (unknown tool, bad
option, misspelled key), 130 interrupted; a provenance record is written in every case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dpps.cli.common import JsonOpt, command, open_local_archive, parse_pairs
from dpps.cli.listing import Column, Listing, OutputOpt, emit, output_format
from dpps.cli.output import console, emit_json, err_console, progress_bar, styled
from dpps.core.errors import ConfigError, InvalidInput

FAILED_EXIT = 10  # a production with failed runs (the CLI's "partial failure")


def list_tools(output: OutputOpt = None, json_: JsonOpt = False) -> None:
    """List the registered pipeline tools and their configuration options."""
    from dpps.pipelines.tool import load_tools

    fmt = output_format(output, json_)
    tools = load_tools()
    rows = []
    for name in sorted(tools):
        cls = tools[name]
        fields = {
            key: {"type": str(f.annotation), "default": _default(f), "help": f.description or ""}
            for key, f in cls.config_class.model_fields.items()
        }
        rows.append({"name": name, "description": cls.description, "options": fields})
    columns = [
        Column("tool"),
        Column("description", whole=False),
        Column("options", whole=False),
    ]
    body = [[r["name"], r["description"], ", ".join(r["options"])] for r in rows]
    emit(Listing(columns, body, rows, title="pipeline tools"), fmt)


def _default(field: Any) -> Any:
    from pydantic import BaseModel

    if field.is_required():
        return None
    value = field.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _inputs(pairs: list[str]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"--input expects NAME=PATH, got {pair!r}")
        out.setdefault(name.strip(), []).append(Path(value))
    return out


def run(
    name: Annotated[str, typer.Argument(help="Tool name (see 'dpps pipeline list').")],
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="Where outputs and provenance go.")
    ],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML file with the tool's options.")
    ] = None,
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="NAME=PATH; repeat for several files or inputs."),
    ] = None,
    options: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE overriding a top-level option (YAML value)."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Run one pipeline tool on local files; exit code 0, 1 (failed), 2 (config), 130.

    Example: dpps pipeline run datapipe-dl1 -i dl0=tel001.fits.fz -i dl0=tel002.fits.fz
    -o out/
    """
    import yaml

    from dpps.pipelines.tool import EXIT_CONFIG, EXIT_OK, get_tool

    try:
        tool = get_tool(name)
        data: dict[str, Any] = {}
        if config is not None:
            try:
                loaded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read tool configuration {config}: {exc}") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"{config}: a tool configuration is a mapping of options")
            data.update(loaded)
        for key, text in parse_pairs(options or []).items():
            data[key] = yaml.safe_load(text)
        files = _inputs(inputs or [])
        missing = [str(p) for ps in files.values() for p in ps if not p.exists()]
        if missing:
            raise ConfigError(f"input files do not exist: {', '.join(missing)}")
        instance = tool.from_mapping(data, files, output_dir)
    except (ConfigError, InvalidInput) as exc:
        err_console.print(styled("[red]error:[/red] {}", exc), highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    result = instance.run()
    if json_:
        emit_json(
            {
                "tool": name,
                "exit_code": result.exit_code,
                "error": result.error,
                "outputs": [
                    {
                        "path": str(o.path),
                        "data_level": o.data_level,
                        "product_type": o.product_type,
                        "metadata": o.metadata,
                    }
                    for o in result.outputs
                ],
                "provenance": str(output_dir / "provenance.json"),
            }
        )
    elif result.exit_code == EXIT_OK:
        for o in result.outputs:
            console.print(f"{o.path} ({o.data_level}, {o.product_type})", soft_wrap=True)
        console.print(
            f"{name}: {len(result.outputs)} outputs, provenance in "
            f"{output_dir / 'provenance.json'}"
        )
    if result.error:
        err_console.print(styled("[red]error:[/red] {}: {}", name, result.error), highlight=False)
    raise typer.Exit(result.exit_code)


def production(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Production file: YAML or ECSV grid of runs.")],
    executor: Annotated[
        str | None, typer.Option(help="WMS executor: local or dask (default: wms.executor).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Run the jobs here (local) or wait (dask) until done.")
    ] = False,
    local: Annotated[
        Path | None,
        typer.Option("--local", help="Run here into this directory, without the archive/WMS."),
    ] = None,
    rse: Annotated[str | None, typer.Option(help="RSE receiving the outputs.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only expand and check.")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="--wait gives up after this (s).")] = 3600,
    json_: JsonOpt = False,
) -> None:
    """Run a simulation production: every run of the grid as a WMS job (UC-150-2.1).

    Each run card is validated before anything is submitted. Outputs are registered under
    <lfn_prefix>/<name>/ as category SIM with a three-year lifetime. Exit code 10 when a run
    failed.
    """
    from dpps.pipelines.simpipe import production as prod

    plan = prod.load(path)
    info: dict[str, Any] = {
        "name": plan.name,
        "lfn_dir": plan.lfn_dir(),
        "runs": len(plan.cards),
        "particles": prod.summary(plan.cards),
    }
    if dry_run:
        info["cards"] = [c.model_dump(mode="json") for c in plan.cards]
        _report(info, json_)
        return
    if local is not None:
        with progress_bar(len(plan.cards), "runs", enabled=not json_) as advance:
            results = prod.run_locally(plan, local, on_run=lambda _c, _r: advance(1))
        info["results"] = [
            {
                "obs_id": c.obs_id,
                "exit_code": r.exit_code,
                "error": r.error,
                "outputs": [str(o.path) for o in r.outputs],
            }
            for c, r in zip(plan.cards, results, strict=True)
        ]
        _report(info, json_)
        if any(r.exit_code for r in results):
            raise typer.Exit(FAILED_EXIT)
        return
    from dpps.wms.api import WMS

    wms = WMS(open_local_archive(ctx))
    submitted = prod.submit(wms, plan, executor=executor, rse=rse)
    info["jobs"] = [{"id": s.id, "name": s.name} for s in submitted]
    states: list[str] = []
    if wait:
        with progress_bar(len(submitted), "runs", enabled=not json_) as advance:
            for sub in submitted:
                states.append(wms.wait(sub, executor=executor, timeout_s=timeout))
                advance(1)
        for job, state in zip(info["jobs"], states, strict=True):
            job["state"] = state
    _report(info, json_)
    if any(s != "DONE" for s in states):
        raise typer.Exit(FAILED_EXIT)


def _report(info: dict[str, Any], json_: bool) -> None:
    if json_:
        emit_json(info)
        return
    console.print(f"production {info['name']}: {info['runs']} runs -> {info['lfn_dir']}")
    for particle, entry in info["particles"].items():
        console.print(f"  {particle}: {entry['runs']} runs, {entry['showers']} showers")
    for job in info.get("jobs", []):
        console.print(f"  job {job['id']} {job['name']} {job.get('state', 'SUBMITTED')}")
    for res in info.get("results", []):
        state = "ok" if res["exit_code"] == 0 else f"failed: {res['error']}"
        console.print(f"  run {res['obs_id']}: {state}")


def register(app: typer.Typer) -> None:
    pipeline_app = typer.Typer(
        help="Pipelines: list and run tools (SimPipe, CalibPipe, DataPipe, QualPipe), "
        "simulation productions.",
        no_args_is_help=True,
    )
    command(pipeline_app, list_tools, "list")
    command(pipeline_app, run, "run")
    command(pipeline_app, production, "production", local=True)
    app.add_typer(pipeline_app, name="pipeline")
