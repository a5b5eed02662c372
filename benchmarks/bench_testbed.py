"""How fast does the multi-site testbed come up, and what do its links carry?

1. ``dpps testbed up`` on the default topology (dpps init's six data centers plus the central
   namespace, storage servers included) against a baseline measured in the same run: creating
   and deleting one bare namespace pair joined by a veth. The floor: up in under 60 s.
2. The physics of a long-haul link: two centers on 200 Mbit/s links whose path RTT is 100 ms
   (50 + 50 ms to the core), TCP from one to the other with one stream and with N parallel
   streams, each figure printed next to the cap as a ratio.

3. ``--scenario longhaul [--files 190] [--size-kib 1024]``: the long-haul scenario (ACADA at
   CTAO-North -> PIC, on-site copies deleted once safe) on the small topology, its rates
   printed against the telescope site's link cap (the baseline), with what crossed each link.

4. ``--scenario cutoff [--cut-s 300] [--files 190] [--size-kib 1024]``: CTAO-North cut off from
   the center for ``--cut-s`` while ACADA writes ``--files`` more files; the catch-up rate once
   the link is back, against the registration rate of as many files before the cut (baseline).

Needs root; holds /run/dpps-testbed-tests.lock while a testbed is up (the test suite's).
Usage: python benchmarks/bench_testbed.py [--mib 100] [--streams 4] [--json]
       python benchmarks/bench_testbed.py --scenario longhaul [--files 190] [--size-kib 1024]
                                          [--second-hop CSCS] [--agent-catalog api]
       python benchmarks/bench_testbed.py --scenario cutoff [--cut-s 300] [--files 190]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dpps.testbed import lifecycle, probe, topology
from dpps.testing import netns

UP_FLOOR_S = 60.0
CAP_MBIT = 200.0
PHYSICS: dict[str, Any] = {
    "central": {"bandwidth_mbit": 1000.0, "rtt_ms": 4.0},
    "sites": {
        "SITE-A": {"bandwidth_mbit": CAP_MBIT, "rtt_ms": 50.0, "storage": []},
        "SITE-B": {"bandwidth_mbit": CAP_MBIT, "rtt_ms": 50.0, "storage": []},
    },
}


def bare_pair_seconds() -> float:
    """Create two namespaces joined by a veth, then delete them: the floor of any testbed."""
    a, b = f"{netns.PREFIX}bench-a", f"{netns.PREFIX}bench-b"
    start = time.perf_counter()
    netns.add_namespace(a)
    netns.add_namespace(b)
    netns.add_veth("x0", a, "x1", b, address="10.213.0.250/24")
    netns.delete_namespace(a)
    netns.delete_namespace(b)
    return time.perf_counter() - start


def timed_up(plan: topology.Plan) -> tuple[float, float]:
    """Seconds for up (as the CLI runs it) and for down."""
    directory = Path(tempfile.mkdtemp(prefix="dpps-bench-testbed-"))
    try:
        start = time.perf_counter()
        lifecycle.up(directory, plan)
        up_s = time.perf_counter() - start
        start = time.perf_counter()
        lifecycle.down(directory)
        return up_s, time.perf_counter() - start
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def physics(mib: int, streams: int) -> dict[str, Any]:
    plan = topology.plan(PHYSICS)
    directory = Path(tempfile.mkdtemp(prefix="dpps-bench-physics-"))
    a, b = plan.node("SITE-A"), plan.node("SITE-B")
    try:
        lifecycle.up(directory, plan)
        with probe.server_in(b.netns, b.address):
            rtt = min(probe.rtt_ms(a.netns, b.address, rounds=5))
            one = probe.throughput_mbit(a.netns, b.address, mib * 2**20, 1)
            many = probe.throughput_mbit(a.netns, b.address, mib * 2**20, streams)
    finally:
        lifecycle.down(directory)
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "cap_mbit": CAP_MBIT,
        "rtt_configured_ms": plan.path_rtt_ms("SITE-A", "SITE-B"),
        "rtt_measured_ms": round(rtt, 1),
        "bytes": mib * 2**20,
        "one_stream_mbit": round(one, 1),
        "one_stream_ratio": round(one / CAP_MBIT, 3),
        "streams": streams,
        "parallel_mbit": round(many, 1),
        "parallel_ratio": round(many / CAP_MBIT, 3),
    }


def longhaul(
    files: int, size_kib: int, second_hop: str | None = None, agent_catalog: str = "api"
) -> dict[str, Any]:
    from dpps.testbed.scenario import longhaul as scenario

    directory = Path(tempfile.mkdtemp(prefix="dpps-scenario-bench-"))
    try:
        lifecycle.up(directory, topology.plan(topology.SMALL))
        return scenario.run(
            directory,
            files=files,
            size_kib=size_kib,
            second_hop=second_hop,
            agent_catalog=agent_catalog,
        )
    finally:
        lifecycle.down(directory)
        shutil.rmtree(directory, ignore_errors=True)


def cutoff(files: int, size_kib: int, cut_s: float) -> dict[str, Any]:
    """The telescope site cut off for ``cut_s`` while ACADA writes ``files`` more: the
    catch-up rate against the registration rate of the same number of files before the cut
    (the baseline, same run)."""
    from dpps.testbed.scenario import longhaul as scenario
    from dpps.testbed.scenario.cutoff import SiteCutOff

    directory = Path(tempfile.mkdtemp(prefix="dpps-cutoff-bench-"))
    cut = SiteCutOff(cut_s, backlog=files, size_kib=size_kib, wait_s=max(600.0, cut_s * 2))
    try:
        lifecycle.up(directory, topology.plan(topology.SMALL))
        report = scenario.run(
            directory, files=files, size_kib=size_kib, during=cut, timeout_s=cut_s + 1800
        )
    finally:
        lifecycle.down(directory)
        shutil.rmtree(directory, ignore_errors=True)
    report["cutoff"] = {
        "seconds": cut_s,
        "backlog": files,
        "registered_before_cut": cut.registered_before,
        "registered_while_cut": cut.before_restore.get("registered", 0) - cut.registered_before,
        "baseline_files_per_s": round(cut.baseline_files_per_s, 2),
        "catch_up_s": round(cut.catch_up_s, 2),
        "catch_up_files_per_s": round(cut.catch_up_files_per_s, 2),
        "ratio": round(cut.catch_up_files_per_s / max(cut.baseline_files_per_s, 1e-9), 2),
    }
    return report


def print_cutoff(r: dict[str, Any]) -> None:
    c = r["cutoff"]
    print(
        f"CTAO-North cut off {c['seconds']:g} s while ACADA wrote {c['backlog']} files: "
        f"{c['registered_while_cut']} registered while cut off, quarantined {r['quarantined']}"
    )
    print(
        f"  catch-up after the link returned: {c['backlog']} files in {c['catch_up_s']} s = "
        f"{c['catch_up_files_per_s']} files/s; before the cut (baseline, same run) "
        f"{c['baseline_files_per_s']} files/s: ratio {c['ratio']}x"
    )
    print(
        f"  lost {r['lost']}, duplicated {r['duplicated']}, rules not OK {r['rules_not_ok']}, "
        f"on-site files left {r['onsite_files_left']}, complete {r['complete']}"
    )


def print_longhaul(r: dict[str, Any]) -> None:
    safe, lag = r["trigger_to_safe_s"], r["onsite_deletion_lag_s"]
    print(
        f"long-haul CTAO-North -> PIC, {r['files']} files x {r['size_kib']} KiB: "
        f"{r['seconds']} s, {r['files_per_s']} files/s, {r['bytes_per_s'] * 8 / 1e6:.1f} Mbit/s "
        f"= {r['ratio_to_cap']:.3f} x the {r['link_cap_mbit']:g} Mbit/s cap (baseline)"
    )
    phases = r["phases"]
    print(
        f"  replication alone: {phases['replicated_bytes'] / 2**20:.1f} MiB in "
        f"{phases['replication_s']} s = {r['replication_ratio_to_cap']} x the cap; "
        f"registration spread over {phases['registration_s']} s"
    )
    print(f"  trigger to safe off-site copy: median {safe['median']} s, max {safe['max']} s")
    hop = r.get("second_hop")
    if hop:
        second = hop["trigger_to_second_copy_s"]
        print(
            f"  second hop PIC -> {hop['rse']}: {hop['copies']} copies, trigger to second "
            f"copy median {second['median']} s, max {second['max']} s; PIC sent "
            f"{hop['pic_tx_over_moved']}x, {hop['center']} received "
            f"{hop['center_rx_over_moved']}x the bytes moved"
        )
    print(f"  on-site deletion lag: median {lag['median']} s, max {lag['max']} s")
    print(f"  catalog statements per file: {r['statements_per_file']}")
    if r["agent_requests"]:
        print(
            f"  site processes' requests to the API {r['agent_requests']} "
            f"(per file {r['agent_requests_per_file']})"
        )
    print(
        f"  lost {r['lost']}, duplicated {r['duplicated']}, rules not OK {r['rules_not_ok']}; "
        f"CTAO-North sent {r['north_tx_over_moved']}x and PIC received "
        f"{r['pic_rx_over_moved']}x the bytes moved; third sites {r['third_site_bytes']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100, help="MiB per throughput run")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--scenario", choices=["longhaul", "cutoff"], default=None)
    parser.add_argument(
        "--cut-s", type=float, default=300.0, help="cutoff: seconds the site is cut off"
    )
    parser.add_argument("--files", type=int, default=190)
    parser.add_argument("--size-kib", type=int, default=1024)
    parser.add_argument("--second-hop", default=None, help="e.g. CSCS (S3) or PIC-TAPE")
    parser.add_argument("--agent-catalog", choices=["api", "postgres"], default="api")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_testbed: needs root (network namespaces)", file=sys.stderr)
        return 2
    if netns.namespaces():
        print("bench_testbed: a testbed is up; run 'dpps testbed down' first", file=sys.stderr)
        return 2
    if args.scenario is not None:
        from filelock import FileLock

        with FileLock("/run/dpps-testbed-tests.lock", timeout=1800):
            if args.scenario == "cutoff":
                report = cutoff(args.files, args.size_kib, args.cut_s)
            else:
                report = longhaul(args.files, args.size_kib, args.second_hop, args.agent_catalog)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            (print_cutoff if args.scenario == "cutoff" else print_longhaul)(report)
        return 0 if report["ok"] else 1
    baseline = min(bare_pair_seconds() for _ in range(3))
    up_s, down_s = timed_up(topology.plan(topology.DEFAULT))
    link = physics(args.mib, args.streams)
    result = {
        "baseline_bare_pair_s": round(baseline, 4),
        "up_default_s": round(up_s, 2),
        "up_ratio_to_baseline": round(up_s / baseline, 1),
        "down_default_s": round(down_s, 2),
        "up_floor_s": UP_FLOOR_S,
        "up_ok": up_s < UP_FLOOR_S,
        "link": link,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"up, default topology (7 namespaces, 2 XRootD, 2 S3): {up_s:.1f} s "
            f"(floor {UP_FLOOR_S:.0f} s: {'OK' if result['up_ok'] else 'FAIL'}); "
            f"baseline bare namespace pair {baseline * 1000:.0f} ms -> ratio "
            f"{result['up_ratio_to_baseline']}x; down {down_s:.1f} s"
        )
        print(
            f"link {CAP_MBIT:.0f} Mbit/s cap, RTT {link['rtt_configured_ms']:.0f} ms "
            f"(measured {link['rtt_measured_ms']} ms), {args.mib} MiB:"
        )
        print(
            f"  1 stream:  {link['one_stream_mbit']} Mbit/s = {link['one_stream_ratio']:.2f} x cap"
        )
        print(
            f"  {args.streams} streams: {link['parallel_mbit']} Mbit/s = "
            f"{link['parallel_ratio']:.2f} x cap"
        )
    return 0 if result["up_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
