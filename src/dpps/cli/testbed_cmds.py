"""``dpps testbed up|status|down``: the multi-site testbed (one network namespace per data
center, a shaped WAN with latency, real storage servers). Needs root.

The testbed package is imported inside each command, so ``dpps --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dpps.cli.common import JsonOpt, handle_errors, local_only
from dpps.cli.listing import show_table
from dpps.cli.output import console, emit_json

DirOpt = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Directory of the testbed's state, logs and storage (default: $DPPS_TESTBED_DIR, "
        "else /var/tmp/dpps-testbed; status and down find the running one without it).",
    ),
]


def register(app: typer.Typer) -> None:
    testbed = typer.Typer(
        help="The multi-site testbed: one network namespace per data center of the topology "
        "plus a central one, a WAN bridge with a bandwidth cap and round-trip latency per link, "
        "and real storage servers (XRootD, S3, tape, POSIX) per center. Needs root.",
        no_args_is_help=True,
    )
    app.add_typer(testbed, name="testbed")

    @testbed.command("up")
    @handle_errors
    @local_only
    def up_cmd(
        ctx: typer.Context,
        directory: DirOpt = None,
        topology: Annotated[
            str | None,
            typer.Option(
                "--topology",
                help="A topology YAML file, or a built-in name: 'default' (dpps init's six "
                "data centers) or 'small' (three).",
            ),
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Create the namespaces, links, shaping, delay proxies and storage servers."""
        from dpps.testbed import lifecycle, state
        from dpps.testbed import topology as topo

        plan = topo.plan(topo.load(topology))
        current = lifecycle.up(directory or state.default_dir(), plan)
        if json_out:
            emit_json(current)
            return
        console.print(
            f"testbed up in {current['up_seconds']:.1f} s: {len(plan.nodes)} namespaces on the "
            f"WAN, state in {current['dir']}"
        )
        _print_nodes([n.__dict__ for n in plan.nodes])
        _print_rses(current["rses"])

    @testbed.command("status")
    @handle_errors
    @local_only
    def status_cmd(
        ctx: typer.Context, directory: DirOpt = None, json_out: JsonOpt = False
    ) -> None:
        """What is up: namespaces, addresses, links, processes (alive or not), RSEs."""
        from dpps.testbed import lifecycle

        report = lifecycle.status(directory)
        if json_out:
            emit_json(report)
            return
        console.print(
            f"testbed in {report['dir']}: {'healthy' if report['healthy'] else 'NOT healthy'}"
        )
        _print_nodes(report["nodes"])
        show_table(
            "processes",
            ["process", "pid", "alive"],
            [[k, v["pid"], "yes" if v["alive"] else "NO"] for k, v in report["processes"].items()],
        )
        _print_rses(report["rses"])

    @testbed.command("down")
    @handle_errors
    @local_only
    def down_cmd(ctx: typer.Context, directory: DirOpt = None, json_out: JsonOpt = False) -> None:
        """Stop every process of the testbed by PID and delete its namespaces (also after a
        crash of 'up')."""
        from dpps.testbed import lifecycle

        report = lifecycle.down(directory)
        if json_out:
            emit_json(report)
            return
        console.print(
            f"testbed down: {len(report['stopped'])} processes stopped, "
            f"{len(report['namespaces_deleted'])} namespaces deleted"
        )

    scenario = typer.Typer(
        help="Scenarios on the running testbed: site processes placed as in a deployment, "
        "files through them, a report of rates, latencies, losses and link bytes.",
        no_args_is_help=True,
    )
    testbed.add_typer(scenario, name="scenario")

    @scenario.command("longhaul")
    @handle_errors
    @local_only
    def longhaul_cmd(
        ctx: typer.Context,
        directory: DirOpt = None,
        files: Annotated[int, typer.Option("--files", min=1, help="Files ACADA writes.")] = 190,
        size_kib: Annotated[
            int, typer.Option("--size-kib", min=1, help="Size of each file in KiB.")
        ] = 64,
        second_hop: Annotated[
            str | None,
            typer.Option(
                "--second-hop",
                help="Also copy every file from PIC's disk to this RSE: another center's "
                "(e.g. CSCS, served by S3), pulled by that center's own agent, or PIC's tape "
                "(PIC-TAPE), copied inside PIC.",
            ),
        ] = None,
        agent_catalog: Annotated[
            str,
            typer.Option(
                "--agent-catalog",
                help="How the transfer agents and the ingestion queue reach the catalog: api "
                "(the central dpps serve, a request or two per batch) or postgres (over the "
                "WAN).",
            ),
        ] = "api",
        json_out: JsonOpt = False,
    ) -> None:
        """Files appear through ACADA at CTAO-North, go to PIC by a rule, on-site copies are
        deleted once safe. Runs on the testbed that is up ('dpps testbed up' first) and leaves
        it up; exit 1 if anything was lost, duplicated or relayed through a third site."""
        from dpps.testbed.scenario import longhaul

        report = longhaul.run(
            directory,
            files=files,
            size_kib=size_kib,
            second_hop=second_hop,
            agent_catalog=agent_catalog,
        )
        if json_out:
            emit_json(report)
        else:
            _print_longhaul(report)
        if not report["ok"]:
            raise typer.Exit(1)

    @scenario.command("night")
    @handle_errors
    @local_only
    def night_cmd(
        ctx: typer.Context,
        directory: DirOpt = None,
        blocks: Annotated[
            int, typer.Option("--blocks", min=1, help="Observation blocks ACADA writes.")
        ] = 2,
        workers: Annotated[
            str,
            typer.Option(
                "--workers",
                help="Comma-separated data centers running a Dask worker: CTAO-North and/or "
                "PIC (PIC's produces the models and IRF).",
            ),
        ] = "CTAO-North,PIC",
        showers: Annotated[
            float,
            typer.Option(
                "--showers",
                min=0.01,
                max=1.0,
                help="Fraction of the night's simulated showers for the models and IRF "
                "(smaller is quicker and gives weaker models; the tests use 0.25).",
            ),
        ] = 1.0,
        json_out: JsonOpt = False,
    ) -> None:
        """The observing night across the testbed: models and IRF produced by PIC's worker,
        ACADA's DL0 at CTAO-North ingested in place and copied to PIC, each block's jobs at
        the site holding its inputs, products copied to PIC, gammapy on the night's DL3.
        Runs on the testbed that is up and leaves it up; exit 1 if a job ran away from its
        inputs, anything was lost, a rule is not OK or the analysis found no ON counts."""
        from dpps.testbed.scenario import night

        chosen = [w.strip() for w in workers.split(",") if w.strip()]
        from dpps.pipelines.night.models import ProductionSize

        size = ProductionSize().scaled(showers) if showers < 1 else None
        report = night.run(directory, blocks=blocks, workers=chosen, size=size)
        if json_out:
            emit_json(report)
        else:
            _print_night(report)
        if not report["ok"]:
            raise typer.Exit(1)


def _print_night(r: dict[str, Any]) -> None:
    console.print(
        f"observing night across data centers: {r['blocks']} blocks, {r['acada']['files']} DL0 "
        f"files ({r['acada']['bytes'] / 1e6:.1f} MB), workers at {', '.join(r['workers'])}, "
        f"models produced at {r['models_site']}; {r['seconds']['total']} s ("
        + ", ".join(f"{k} {v} s" for k, v in r["seconds"].items() if k != "total")
        + ")"
    )
    show_table(
        "jobs per site",
        ["site", "models + IRF", "night"],
        [[s, c.get("models", 0), c.get("night", 0)] for s, c in r["jobs_per_site"].items()],
    )
    show_table(
        "bytes per link",
        ["data center", "sent", "received"],
        [[n, c["tx_bytes"], c["rx_bytes"]] for n, c in r["links"].items()],
    )
    dl0, products = r["dl0"], r["products"]
    console.print(
        f"jobs not DONE {r['jobs_not_done']}, away from their inputs "
        f"{len(r['jobs_away_from_inputs'])}; DL0 lost {dl0['lost']} of {dl0['files']} "
        f"({dl0['at_pic']} at PIC); products lost {products['lost']} of {products['files']} "
        f"({products['at_pic']} at PIC); rules {r['rules']}"
    )
    a = r["analysis"]
    if "error" in a:
        console.print(f"analysis: {a['error']}")
    else:
        console.print(
            f"analysis of observations {a['observations']}: ON {a['n_on']}, OFF {a['n_off']}, "
            f"alpha {a['alpha']:.3f}, significance {a['significance']:.1f} sigma"
        )
    console.print("OK" if r["ok"] else "NOT OK")


def _print_longhaul(r: dict[str, Any]) -> None:
    safe, lag = r["trigger_to_safe_s"], r["onsite_deletion_lag_s"]
    console.print(
        f"long-haul CTAO-North -> PIC: {r['files']} files of {r['size_kib']} KiB in "
        f"{r['seconds']} s: {r['files_per_s']} files/s, {r['bytes_per_s'] * 8 / 1e6:.1f} Mbit/s "
        f"= {r['ratio_to_cap']:.3f} x the {r['link_cap_mbit']:g} Mbit/s cap"
    )
    console.print(
        f"trigger to safe off-site copy: median {safe['median']} s, max {safe['max']} s; "
        f"on-site deletion lag: median {lag['median']} s, max {lag['max']} s"
    )
    console.print(f"catalog statements per file: {r['statements_per_file']}")
    if r["agent_requests"]:
        console.print(
            f"site processes' requests to the API (per file: {r['agent_requests_per_file']}): "
            f"{r['agent_requests']}"
        )
    console.print(
        f"lost {r['lost']}, duplicated {r['duplicated']}, rules not OK {r['rules_not_ok']}, "
        f"on-site files left {r['onsite_files_left']}"
    )
    console.print(
        f"bytes moved {r['bytes_moved_offsite']}: CTAO-North sent {r['north_tx_over_moved']}x, "
        f"PIC received {r['pic_rx_over_moved']}x; third sites {r['third_site_bytes']} "
        f"({'RELAYED' if r['relayed_by_third_site'] else 'not relayed'})"
    )
    hop = r.get("second_hop")
    if hop:
        latency = hop["trigger_to_second_copy_s"]
        console.print(
            f"second hop PIC -> {hop['rse']}: {hop['copies']} copies, lost {hop['lost']}, "
            f"duplicated {hop['duplicated']}; trigger to second copy median "
            f"{latency['median']} s; PIC sent {hop.get('pic_tx_over_moved')}x, "
            f"{hop['center']} received {hop.get('center_rx_over_moved')}x the bytes moved"
        )
    console.print("OK" if r["ok"] else "NOT OK")


def _print_nodes(nodes: list[dict[str, Any]]) -> None:
    show_table(
        "data centers",
        ["name", "namespace", "address", "link Mbit/s", "RTT to core ms", "storage"],
        [
            [
                n["name"],
                n["netns"],
                n["address"],
                f"{n['bandwidth_mbit']:g}",
                f"{n['rtt_ms']:g}",
                ", ".join(n["storage"]),
            ]
            for n in nodes
        ],
    )


def _print_rses(rses: dict[str, Any]) -> None:
    show_table(
        "RSEs",
        ["RSE", "site", "kind", "url"],
        [[name, r["site"], r["kind"], r["url"]] for name, r in sorted(rses.items())],
    )
