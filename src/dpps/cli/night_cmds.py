"""``dpps night``: the observing night on the embedded default, the project's main job.

Simulate ACADA data for a few wobble blocks on a point source, ingest them through the
ingestion queue, replicate them off site, let the category-B WMS transformation process each
block (calibration, DataPipe to DL3, QualPipe), analyse the night's DL3 with gammapy and print
what the archive now holds. The work itself is ``dpps.scenarios.night.run``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dpps.cli.common import JsonOpt, command
from dpps.cli.listing import show_table
from dpps.cli.output import console, emit_json, err_console, human_bytes, styled
from dpps.core.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive


def _workspace(ctx: typer.Context, directory: Path | None) -> tuple[Archive, Path, bool]:
    """--dir (created if needed), else the current workspace, else a new temporary one;
    the flag says the workspace is a temporary one of this command's."""
    from dpps.bdms.archive import Archive

    if directory is not None:
        directory = directory.resolve()
        if (directory / "dpps.yaml").is_file():
            return Archive.open(directory), directory, False
        if directory.exists() and any(directory.iterdir()):
            raise InvalidInput(
                f"{directory} is neither empty nor a workspace; choose another --dir"
            )
        return Archive.init(directory), directory, False
    try:
        archive = Archive.open((ctx.obj or {}).get("workspace"))
        return archive, Path(archive.config.workspace), False
    except NotFound:
        created = Path(tempfile.mkdtemp(prefix="dpps-night-"))
        return Archive.init(created), created, True


@contextmanager
def removed_on_success(archive: Archive, workspace: Path, remove: bool) -> Iterator[None]:
    """Close the archive when the night ends, and remove a temporary workspace if the night
    succeeded: a night is about 2.6 GB, and a temporary directory nobody named is never
    cleaned up by anyone else. A failed night's workspace stays, for a look at what failed
    (its path is in the error's last lines)."""
    try:
        yield
    except BaseException:
        archive.close()
        if remove:
            err_console.print(f"the night's workspace is kept for a look: {workspace}")
        raise
    archive.close()
    if remove:
        shutil.rmtree(workspace)


@contextmanager
def _stages(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int, int], None]]]:
    """``stage(name, total)`` -> ``update(done, total)``: one bar per stage on a terminal."""
    if not enabled or not err_console.is_terminal:
        yield lambda _name, _total: lambda _d, _t: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        current: list[Any] = []

        def stage(name: str, total: int) -> Callable[[int, int], None]:
            for task in current:
                bar.update(task, completed=bar.tasks[task].total)
            task = bar.add_task(name, total=max(total, 1))
            current[:] = [task]
            return lambda done, total_: bar.update(task, completed=done, total=max(total_, 1))

        yield stage


def _print(report: dict[str, Any]) -> None:
    plan, analysis, sim = report["plan"], report["analysis"], report["simulated"]
    console.print(
        styled(
            "[bold]night[/bold] {}",
            f"{plan['blocks']} blocks x {plan['block_s']:.0f} s on "
            f"{plan['target']['name']} (wobble {plan['wobble_deg']} deg), workspace "
            f"{report['workspace']}"
            + ("" if report["workspace_kept"] else " (temporary, removed: --keep keeps it)"),
        )
    )
    models = report["models"]
    console.print(
        f"models and IRF {'produced' if models['produced'] else 'reused'}: "
        f"{models['models']}, {models['irf']}"
    )
    rows = [
        [level, site, v["files"], human_bytes(v["bytes"])]
        for level, sites in sorted(report["volume"].items())
        for site, v in sorted(sites.items())
    ]
    show_table(
        "archive: files and bytes per level and site",
        ["level", "site", "files", "bytes"],
        rows,
    )
    console.print(
        f"replication rules: DL0 {report['replication']['rules']}, products "
        f"{report['replication']['product_rules'] or 'no policy'}; DL0 files by number "
        f"of off-site data centres: {report['replication']['dl0_files_by_offsite_sites']}"
    )
    jobs = report["jobs"]
    show_table(
        f"WMS jobs of {report['transformation']['name']} ({jobs['total']} jobs, "
        f"{jobs['cpu_s']:.0f} s CPU)",
        ["step", "states"],
        [[step, states] for step, states in jobs["by_step"].items()],
    )
    for problem in report["transformation"]["problematic"]:
        console.print(styled("[red]problematic:[/red] {}", problem))
    for job in jobs["retried_or_failed"]:
        console.print(
            styled(
                "[yellow]{}[/yellow]",
                f"job {job['job']} ({job['step']}): {job['state']} after "
                f"{job['attempts']} attempt(s): {job['reason']}",
            )
        )
    show_table(
        "quality (QualPipe)",
        ["obs_id", "verdict", "failed checks"],
        [
            [obs, "PASS" if q["passed"] else "FAIL", ", ".join(q["failed_checks"])]
            for obs, q in report["quality"].items()
        ],
    )
    separation = models.get("separation") or {}
    if separation:
        console.print(
            "gamma/hadron separation on independent simulations "
            f"({separation['test_gammas']:.0f} gammas, {separation['test_protons']:.0f} protons): "
            f"gamma efficiency {separation['gamma_efficiency']:.1%}, proton rejection "
            f"{separation['proton_rejection']:.2%}, ROC AUC {separation['roc_auc']:.3f}"
        )
    if "error" in analysis:
        console.print(styled("[red]analysis failed:[/red] {}", analysis["error"]))
    else:
        console.print(
            styled(
                "[bold]gammapy[/bold] {}",
                f"{analysis['n_observations']} observations, "
                f"{analysis['livetime_s']:.0f} s: ON {analysis['n_on']}, OFF {analysis['n_off']}, "
                f"alpha {analysis['alpha']:.3f}, excess {analysis['excess']:.1f}, "
                f"significance {analysis['significance']:.1f} sigma (Li & Ma)",
            )
        )
        for warning in analysis.get("warnings", []):
            console.print(styled("[yellow]analysis warning:[/yellow] {}", warning))
        truth = report.get("truth") or {}
        ref = analysis["reference_tev"]
        simulated_amp = truth.get("simulated_amplitude", sim["amplitude"])
        console.print(
            f"spectrum: index {analysis['index']:.2f} ± {analysis['index_error']:.2f} "
            f"(simulated {sim['index']:.2f}), amplitude at {ref:g} TeV "
            f"{analysis['amplitude']:.3g} ± {analysis['amplitude_error']:.2g} cm-2 s-1 TeV-1 "
            f"(simulated {simulated_amp:.3g})"
        )
        if truth:
            bkg = truth["background"]
            console.print(
                f"against the simulation: index pull {truth['index_pull']:+.2f}, amplitude "
                f"pull {truth['amplitude_pull']:+.2f}; OFF {bkg['measured']} vs "
                f"{bkg['predicted']:.1f} ± {bkg['predicted_error']:.1f} predicted by the "
                f"background IRF (ratio {bkg['ratio']:.2f} ± {bkg['ratio_error']:.2f}, pull "
                f"{bkg['pull']:+.2f}; {bkg['rate_per_deg2_hz']:.3f} Hz/deg2 after cuts)"
            )
            for flag in truth["flags"]:
                console.print(styled("[red]beyond 3 sigma:[/red] {}", flag))
    console.print(
        "seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items())
    )


def night(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Workspace to create or reuse (default: the current "
            "workspace, else a new temporary directory).",
        ),
    ] = None,
    blocks: Annotated[int, typer.Option(min=1, max=20, help="Observation blocks.")] = 3,
    block_seconds: Annotated[
        float, typer.Option(min=5.0, max=600.0, help="Duration of each block (s).")
    ] = 15.0,
    seed: Annotated[int, typer.Option(min=0, help="Random seed of the ACADA simulator.")] = 0,
    first_obs_id: Annotated[
        int | None,
        typer.Option(min=1, help="obs_id of the first block (default: after the archive's last)."),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Keep the temporary workspace made when there is no --dir and no current "
            "workspace (removed after a successful night by default; about 2.6 GB).",
        ),
    ] = False,
    reprocess: Annotated[
        bool,
        typer.Option(
            help="Then reprocess the night's DL0 with a retrained classifier (a campaign, "
            "category C) and compare the new DL3 with the night's."
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Run an observing night: simulate, ingest, replicate, process to DL3 (category B),
    analyse with gammapy, report (UC-000-4); with --reprocess, reprocess it (UC-130-3.1.1)."""
    started = time.perf_counter()
    archive, workspace, temporary = _workspace(ctx, directory)
    with removed_on_success(archive, workspace, temporary and not keep):
        report = _run(
            archive, workspace, reprocess, json_, blocks, block_seconds, seed, first_obs_id
        )
        report["workspace_kept"] = not (temporary and not keep)
    report["seconds"]["total"] = round(time.perf_counter() - started, 2)
    if json_:
        emit_json(report)
        return
    _print(report)
    if reprocess:
        from dpps.cli.campaign_cmds import print_comparison

        again = report["reprocessing"]
        campaign = again["campaign"]
        console.print(
            f"reprocessing campaign {campaign['name']} ({campaign['software_version']}, models "
            f"{again['models']['models']}): {'ok' if campaign['ok'] else 'FAILED'}, "
            f"{campaign['verification']['products']} products verified"
        )
        print_comparison(campaign["comparison"])


def _run(
    archive: Archive,
    workspace: Path,
    reprocess: bool,
    json_: bool,
    blocks: int,
    block_seconds: float,
    seed: int,
    first_obs_id: int | None,
) -> dict[str, Any]:
    from dataclasses import replace

    from dpps.acada.observing import NightPlan
    from dpps.scenarios.night.acquisition import next_obs_id
    from dpps.scenarios.night.run import run_night

    plan = replace(
        NightPlan(),
        blocks=blocks,
        duration_s=block_seconds,
        seed=seed,
        first_obs_id=first_obs_id or next_obs_id(archive),
    )
    from dpps.instrument.dl0 import quiet_native_stdout

    # the zfits writer logs every file it closes on stdout: keep --json one JSON document
    with _stages(not json_) as stage, quiet_native_stdout():
        report = run_night(archive, workspace / "night", plan, stage=stage)
        if reprocess:
            from dpps.scenarios.night.reprocess import reprocess_night

            lap = time.perf_counter()
            report["reprocessing"] = reprocess_night(archive, plan, stage=stage)
            report["seconds"]["reprocessing"] = round(time.perf_counter() - lap, 2)
    return report


def register(app: typer.Typer) -> None:
    command(app, night, local=True)
