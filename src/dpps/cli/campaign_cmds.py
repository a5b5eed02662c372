"""``dpps campaign``: reprocessing campaigns (UC-130-3.1.1), thin over
``dpps.pipelines.campaign``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from dpps.cli.common import JsonOpt, command, open_local_archive, parse_pairs
from dpps.cli.output import console, emit_json, err_console, human_bytes, table
from dpps.core.errors import ConfigError

EXIT_PARTIAL = 10


@contextmanager
def _progress(enabled: bool) -> Iterator[tuple[Callable[[str], None], Callable[[int, int], None]]]:
    """(phase, tick): one bar whose description follows the campaign's steps; drawn only on a
    terminal and never with --json."""
    if not enabled or not err_console.is_terminal:
        yield (lambda _p: None), (lambda _d, _t: None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:  # fmt: skip
        task = bar.add_task("campaign", total=None)

        def phase(name: str) -> None:
            bar.update(task, description=name, completed=0, total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, 1))

        yield phase, tick


def _configs(config: Path | None, options: list[str]) -> dict[str, dict[str, Any]]:
    import yaml

    data: dict[str, dict[str, Any]] = {}
    if config is not None:
        try:
            loaded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read campaign configuration {config}: {exc}") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
            raise ConfigError(f"{config}: expected a mapping of step (dl1, dl2, dl3) to options")
        data = {str(k): dict(v) for k, v in loaded.items()}
    for key, text in parse_pairs(options).items():
        step, dot, option = key.partition(".")
        if not dot or not option:
            raise ConfigError(
                f"--set expects STEP.OPTION=VALUE (e.g. dl3.category=C), got {key!r}"
            )
        data.setdefault(step, {})[option] = yaml.safe_load(text)
    return data


def reprocess(
    ctx: typer.Context,
    query: Annotated[
        str, typer.Argument(help="Which DL0 (query language, docs/query-language.md).")
    ],
    software_version: Annotated[
        str, typer.Option("--software-version", help="The new software version (provenance).")
    ],
    name: Annotated[
        str | None,
        typer.Option(
            help="Campaign name (default reprocessing-<version>); a rerun with the "
            "same name continues, never duplicates."
        ),
    ] = None,
    category: Annotated[str, typer.Option(help="Category of the products: C (or B).")] = "C",
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML: {STEP: {OPTION: VALUE}} tool options."),
    ] = None,
    options: Annotated[
        list[str] | None, typer.Option("--set", help="STEP.OPTION=VALUE (YAML value); repeat.")
    ] = None,
    models: Annotated[
        str | None, typer.Option(help="Models DID for DL2 (default: the newest archived).")
    ] = None,
    irf: Annotated[
        str | None, typer.Option(help="IRF DID for DL3 (default: the newest archived).")
    ] = None,
    priority: Annotated[int, typer.Option(help="Job priority 0..10 within the activity.")] = 3,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for staging and for each step's jobs.")
    ] = 3600.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Select and report the volume only; change nothing.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Reprocess DL0 with a new software version: select, report volume, stage from tape,
    run each block's chain (calibration, DL1, DL2, DL3, quality) as category-C WMS jobs,
    verify, clear the staging buffer, archive the products as new versions. Exit 10 when
    some jobs failed (listed).

    Example: dpps campaign reprocess 'observing_night=2026-11-21' --software-version 2.0 --dry-run
    """
    from dpps.pipelines.campaign import CampaignSpec, run_campaign

    spec = CampaignSpec(query=query, software_version=software_version, name=name or "",
                        category=category, configs=_configs(config, options or []),
                        models=models, irf=irf, priority=priority,
                        timeout_s=timeout)  # fmt: skip
    archive = open_local_archive(ctx)
    with _progress(not json_) as (phase, tick):
        report = run_campaign(archive, spec, dry_run=dry_run, phase=phase, tick=tick)
    if json_:
        emit_json(report.to_mapping())
    else:
        _print(report)
    if not report.ok:
        raise typer.Exit(EXIT_PARTIAL)


def _print(report: Any) -> None:
    v = report.volume
    console.print(f"campaign {report.name}: {v.total.files} DL0 files, "
                  f"{human_bytes(v.total.bytes)}; on disk {v.total.on_disk_files}, tape only "
                  f"{v.total.tape_only_files} ({human_bytes(v.total.tape_only_bytes)}); "
                  f"estimated staging {v.estimated_staging_s:.0f} s")  # fmt: skip
    console.print(
        table(
            "observation blocks (the files DataPipe reads)",
            ["obs_id", "files", "bytes", "tape only"],
            [[o, t.files, human_bytes(t.bytes), t.tape_only_files] for o, t in v.blocks.items()],
        )
    )
    console.print(table("data centers", ["site", "replicas", "disk", "tape"], [
        [s, d["files"], human_bytes(d.get("disk_bytes", 0)), human_bytes(d.get("tape_bytes", 0))]
        for s, d in sorted(v.sites.items())]))  # fmt: skip
    console.print(f"models: {report.models or 'none'}; IRF: {report.irf or 'none'}")
    if report.dry_run:
        console.print("dry run: nothing staged, submitted or changed")
        return
    s = report.staging
    console.print(f"staged {s.ready} of {s.files} files in {s.seconds:.1f} s; released "
                  f"{len(s.released)} buffer copies")  # fmt: skip
    console.print(table("steps", ["step", "runs", "ok", "failed", "how"], [
        [step, c["runs"], c["ok"], c["failed"],
         ", ".join(f"{k} {n}" for k, n in c.items() if k not in ("runs", "ok", "failed"))]
        for step, c in report.counts().items()]))  # fmt: skip
    for note in report.skipped:
        console.print(note)
    ver = report.verification
    console.print(f"verified {ver.products} products ({ver.checksums_verified} checksums), "
                  f"{len(ver.previous_versions)} earlier versions intact")  # fmt: skip
    for problem in ver.problems:
        err_console.print(f"[red]verification:[/red] {problem}", highlight=False)
    for failure in report.failures:
        err_console.print(f"[red]failed:[/red] {failure}", highlight=False)


def register(app: typer.Typer) -> None:
    campaign_app = typer.Typer(
        help="Reprocessing campaigns (select, stage, reprocess, verify, archive as new versions).",
        no_args_is_help=True,
    )
    command(campaign_app, reprocess, "reprocess")
    app.add_typer(campaign_app, name="campaign")
