"""``dpps campaign``: reprocessing campaigns (UC-130-3.1.1), thin over
``dpps.pipelines.campaign``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dpps.cli.common import JsonOpt, command, open_local_archive, parse_pairs, remote_archive
from dpps.cli.listing import Column, Listing, OutputOpt, emit, output_format, show_table
from dpps.cli.output import console, emit_json, err_console, human_bytes, styled
from dpps.core.errors import ConfigError, DppsError

if TYPE_CHECKING:
    from dpps.client.campaigns import RemoteCampaigns

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

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
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


def _remote(ctx: typer.Context) -> RemoteCampaigns | None:
    """``RemoteCampaigns`` when the command talks to a server, else None (run here)."""
    remote = remote_archive(ctx)
    if remote is None:
        return None
    from dpps.client.campaigns import RemoteCampaigns

    return RemoteCampaigns(remote)


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
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="Queue the campaign for the campaign daemon (dpps serve) and return; "
            "watch it with 'dpps campaign show NAME'.",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Reprocess DL0 with a new software version: select, report volume, stage from tape,
    run each block's chain (calibration, DL1, DL2, DL3, quality) as category-C WMS jobs,
    verify, clear the staging buffer, archive the products as new versions. Exit 10 when
    some jobs failed (listed). With $DPPS_URL the server's campaign daemon runs it and this
    command follows its progress.

    Example: dpps campaign reprocess 'observing_night=2026-11-21' --software-version 2.0 --dry-run
    """
    from dpps.pipelines.campaign import CampaignSpec

    spec = CampaignSpec(
        query=query,
        software_version=software_version,
        name=name or "",
        category=category,
        configs=_configs(config, options or []),
        models=models,
        irf=irf,
        priority=priority,
        timeout_s=timeout,
    )
    remote = _remote(ctx)
    if dry_run:
        _report(_plan(ctx, remote, spec), json_)
        return
    if no_wait:
        info = remote.submit(spec) if remote is not None else _submit(ctx, spec)
        _info(info, json_)
        return
    with _progress(not json_) as (phase, tick):
        if remote is not None:
            submitted = remote.submit(spec)
            data = remote.wait(submitted.name, phase=phase, tick=tick).report
        else:
            from dpps.pipelines.campaign import record

            report = record.run_here(open_local_archive(ctx), spec, phase=phase, tick=tick)
            data = report.to_mapping()
    _report(data, json_)


def _plan(ctx: typer.Context, remote: Any | None, spec: Any) -> dict[str, Any]:
    if remote is not None:
        plan: dict[str, Any] = remote.plan(spec)
        return plan
    from dpps.pipelines.campaign import run_campaign

    return run_campaign(open_local_archive(ctx), spec, dry_run=True).to_mapping()


def _submit(ctx: typer.Context, spec: Any) -> Any:
    from dpps.pipelines.campaign import record

    return record.submit(open_local_archive(ctx), spec)


def _campaigns(ctx: typer.Context) -> Any:
    """The campaign records: over REST, or the workspace's (``WMS.campaigns``)."""
    remote = _remote(ctx)
    if remote is not None:
        return remote
    from dpps.wms.api import WMS

    return WMS(open_local_archive(ctx)).campaigns


def list_campaigns(
    ctx: typer.Context,
    state: Annotated[
        str | None, typer.Option(help="Only QUEUED, RUNNING, DONE or FAILED campaigns.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (the next page).")] = 0,
    output: OutputOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Campaigns, newest first: state, phase, progress, who submitted them."""
    fmt = output_format(output, json_)
    page = _campaigns(ctx).listing(state=state, limit=limit, offset=offset)
    infos = page.items
    columns = [
        *(Column(c) for c in ("name", "state", "phase", "progress", "version")),
        Column("query", whole=False),
        *(Column(c) for c in ("account", "created", "finished")),
    ]
    rows = [
        [
            i.name,
            i.state,
            i.phase,
            f"{i.done}/{i.total}" if i.total else "",
            i.spec.get("software_version", ""),
            i.spec.get("query", ""),
            i.account,
            i.created_at,
            i.finished_at,
        ]
        for i in infos
    ]
    emit(Listing(columns, rows, infos, total=page.total, offset=offset, limit=limit), fmt)


def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The campaign's name.")],
    json_: JsonOpt = False,
) -> None:
    """One campaign: its definition, where it is, and its report once finished."""
    info = _campaigns(ctx).get(name)
    if json_:
        emit_json(info)
        return
    _info(info, False)
    if info.report is not None:
        _print(info.report)


def _info(info: Any, json_: bool) -> None:
    if json_:
        emit_json(info)
        return
    progress = f" {info.done}/{info.total}" if info.total else ""
    console.print(
        f"campaign {info.name}: {info.state} ({info.phase}{progress}); submitted by "
        f"{info.account}, attempt {info.attempts}"
    )
    spec = info.spec
    console.print(
        f"query {spec.get('query')!r}, software version "
        f"{spec.get('software_version')}, category {spec.get('category')}"
    )
    if info.error:
        err_console.print(styled("[red]error:[/red] {}", info.error), highlight=False)


def _report(data: dict[str, Any] | None, json_: bool) -> None:
    """Print a campaign's report mapping (local and remote alike); exit 10 unless it is ok."""
    if data is None:
        raise DppsError("the campaign finished without a report")
    if json_:
        emit_json(data)
    else:
        _print(data)
    if not data["ok"]:
        raise typer.Exit(EXIT_PARTIAL)


def _print(report: dict[str, Any]) -> None:
    v, total = report["volume"], report["volume"]["total"]
    console.print(
        f"campaign {report['name']}: {total['files']} DL0 files, "
        f"{human_bytes(total['bytes'])}; on disk {total['on_disk_files']}, tape only "
        f"{total['tape_only_files']} ({human_bytes(total['tape_only_bytes'])}); "
        f"estimated staging {v['estimated_staging_s']:.0f} s"
    )
    show_table(
        "observation blocks (the files DataPipe reads)",
        ["obs_id", "files", "bytes", "tape only"],
        [
            [o, t["files"], human_bytes(t["bytes"]), t["tape_only_files"]]
            for o, t in v["blocks"].items()
        ],
    )
    show_table(
        "data centers",
        ["site", "replicas", "disk", "tape"],
        [
            [
                s,
                d["files"],
                human_bytes(d.get("disk_bytes", 0)),
                human_bytes(d.get("tape_bytes", 0)),
            ]
            for s, d in sorted(v["sites"].items())
        ],
    )
    console.print(f"models: {report['models'] or 'none'}; IRF: {report['irf'] or 'none'}")
    if report["dry_run"]:
        console.print("dry run: nothing staged, submitted or changed")
        return
    s = report["staging"]
    console.print(
        f"staged {s['ready']} of {s['files']} files in {s['seconds']:.1f} s; released "
        f"{len(s['released'])} buffer copies"
    )
    show_table(
        "steps",
        ["step", "runs", "ok", "failed", "how"],
        [
            [
                step,
                c["runs"],
                c["ok"],
                c["failed"],
                ", ".join(f"{k} {n}" for k, n in c.items() if k not in ("runs", "ok", "failed")),
            ]
            for step, c in report["counts"].items()
        ],
    )
    for note in report["skipped"]:
        console.print(note)
    ver = report["verification"]
    console.print(
        f"verified {ver['products']} products ({ver['checksums_verified']} checksums), "
        f"{len(ver['previous_versions'])} earlier versions intact"
    )
    for problem in ver["problems"]:
        err_console.print(styled("[red]verification:[/red] {}", problem), highlight=False)
    print_comparison(report.get("comparison"))
    for failure in report["failures"]:
        err_console.print(styled("[red]failed:[/red] {}", failure), highlight=False)


#: (label, where, key, format) of the comparison's rows.
_ROWS = (
    ("gamma efficiency", "separation", "gamma_efficiency", "{:.3f}"),
    ("proton rejection", "separation", "proton_rejection", "{:.4f}"),
    ("ROC AUC", "separation", "roc_auc", "{:.4f}"),
    ("quality factor Q", "separation", "quality_factor", "{:.2f}"),
    ("ON", "analysis", "n_on", "{:d}"),
    ("OFF", "analysis", "n_off", "{:d}"),
    ("alpha", "analysis", "alpha", "{:.3f}"),
    ("excess", "analysis", "excess", "{:.1f}"),
    ("Li & Ma significance", "analysis", "significance", "{:.2f}"),
    ("significance / sqrt(h)", "analysis", "significance_per_sqrt_hour", "{:.1f}"),
)


def _figure(value: Any, fmt: str) -> str:
    if not isinstance(value, int | float):
        return ""
    return fmt.format(int(value) if fmt.endswith("d}") else value)


def print_comparison(comparison: dict[str, Any] | None) -> None:
    """Previous vs new version of the DL3 the campaign superseded, side by side."""
    if not comparison:
        return
    if "error" in comparison:
        err_console.print(styled("[red]comparison:[/red] {}", comparison["error"]))
        return
    old, new, diff = comparison["previous"], comparison["new"], comparison["difference"]
    sep_old, sep_new = old["separation"], new["separation"]
    rows = []
    for label, where, key, fmt in _ROWS:
        a, b = old[where].get(key), new[where].get(key)
        change = diff.get(key)
        text = "" if change is None else _figure(change, "{:+" + fmt[2:])
        if key == "quality_factor" and "quality_factor_error" in diff:
            error, sigmas = diff["quality_factor_error"], diff["quality_factor_sigmas"]
            text += f" ± {error:.2f} ({sigmas:.1f} sigma)"
            a = f"{a:.2f} ± {sep_old['quality_factor_error']:.2f}"
            b = f"{b:.2f} ± {sep_new['quality_factor_error']:.2f}"
            rows.append([label, a, b, text])
            continue
        rows.append([label, _figure(a, fmt), _figure(b, fmt), text])
    title = (
        f"{comparison['target']}, observations {comparison['observations']}: previous "
        f"({old['software_version']}) vs new ({new['software_version']})"
    )
    show_table(title, ["figure", "previous", "new", "new - previous"], rows)
    console.print(
        f"separation measured on the IRFs' simulated runs ({sep_new.get('test_gammas')} gammas, "
        f"{sep_new.get('test_protons')} protons); Q = efficiency / sqrt(1 - rejection), "
        "errors binomial from those counts"
    )
    print_sensitivity(comparison)


def _pm(value: float | None, error: float | None, fmt: str = "{:.3g}") -> str:
    if value is None:
        return "-"
    return fmt.format(value) + ("" if error is None else " ± " + fmt.format(error))


def _ratio(change: dict[str, Any] | None) -> str:
    if not change or change.get("ratio") is None:
        return "not available"
    text = _pm(change["ratio"], change.get("ratio_error"), "{:.3f}")
    sigmas = change.get("improvement_sigmas")
    return text + ("" if sigmas is None else f" ({sigmas:.1f} sigma better than 1)")


def print_sensitivity(comparison: dict[str, Any]) -> None:
    """Both versions' point-source sensitivity: from the IRFs per energy bin, and implied by
    the night's counts; each with its error and the ratio new / previous (< 1: better)."""
    old, new = comparison["previous"].get("sensitivity"), comparison["new"].get("sensitivity")
    change = comparison.get("sensitivity") or {}
    if not old or not new:
        return
    a, b = old.get("irf"), new.get("irf")
    if a and b:
        used = {tuple(e) for e in (change.get("irf") or {}).get("bins_used", [])}
        rows = []
        for x, y in zip(a["bins"], b["bins"], strict=True):
            edges = (x["reco_energy_low_tev"], x["reco_energy_high_tev"])
            if x["relative_sensitivity"] is None and y["relative_sensitivity"] is None:
                continue
            ratio = (
                y["relative_sensitivity"] / x["relative_sensitivity"]
                if x["relative_sensitivity"] and y["relative_sensitivity"]
                else None
            )
            rows.append(
                [
                    f"{edges[0]:.3g}-{edges[1]:.3g}",
                    _pm(x["relative_sensitivity"], x["relative_sensitivity_error"]),
                    _pm(y["relative_sensitivity"], y["relative_sensitivity_error"]),
                    "" if ratio is None else f"{ratio:.3f}" + ("" if edges in used else " *"),
                ]
            )
        show_table(
            f"point-source sensitivity from the IRFs ({b['observation_time_h']:g} h, "
            f"{b['min_significance']:g} sigma Li & Ma, >= {b['min_signal_events']:g} "
            f"events, excess >= {b['min_excess_over_background']:.0%} of background, "
            f"alpha {b['alpha']:g}), as a fraction of the source's flux (in --json: "
            "also E2 F in erg cm-2 s-1)",
            ["E reco (TeV)", "previous", "new", "new / previous"],
            rows,
        )
        console.print(
            "sensitivity new / previous from the IRFs (geometric mean over the bins with "
            f">= 10 simulated gammas and >= 5 protons; * not used): {_ratio(change.get('irf'))}"
        )
        whole = change.get("irf_integral")
        if whole:
            p, n = whole["previous"], whole["new"]
            console.print(
                "over all energies at once (the sums of the bins): previous "
                f"{_pm(p['relative_sensitivity'], p['relative_sensitivity_error'])}, new "
                f"{_pm(n['relative_sensitivity'], n['relative_sensitivity_error'])}; "
                f"new / previous {_ratio(whole)}"
            )
    else:
        console.print("sensitivity from the IRFs: not available (an IRF without its table)")
    m_old, m_new = old.get("measured"), new.get("measured")
    if m_old and m_new:
        for label, m in (("previous", m_old), ("new", m_new)):
            console.print(
                f"sensitivity implied by the night's counts, {label}: "
                f"{_pm(m['relative_sensitivity'], m['relative_sensitivity_error'])} x the "
                f"source flux in {m['reference_time_h']:g} h (excess "
                f"{_pm(m['excess_rate_per_h'], m['excess_rate_error_per_h'])} /h, background "
                f"{_pm(m['background_rate_per_h'], m['background_rate_error_per_h'])} /h)"
                + (f"; {m['note']}" if m.get("note") else "")
            )
        console.print(
            f"sensitivity new / previous from the night's counts: {_ratio(change.get('measured'))}"
        )


def register(app: typer.Typer) -> None:
    campaign_app = typer.Typer(
        help="Reprocessing campaigns (select, stage, reprocess, verify, archive as new versions).",
        no_args_is_help=True,
    )
    command(campaign_app, reprocess, "reprocess")
    command(campaign_app, list_campaigns, "list")
    command(campaign_app, show, "show")
    app.add_typer(campaign_app, name="campaign")
