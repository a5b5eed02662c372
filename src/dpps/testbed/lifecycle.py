"""``up``, ``status`` and ``down`` of the testbed.

``up`` builds, in this order: the WAN namespace with its bridge; one namespace per data center
plus the central one, each joined to the bridge by a veth pair whose two ends are capped by a
token bucket; in each namespace an nftables rule sending TCP to every other testbed address
through that namespace's delay proxy; the storage servers of each center (started in parallel:
SeaweedFS takes seconds to come up). Every step is written to the state file as soon as it
exists, so a failure half-way is undone by the same code as ``down``.

Nothing is created in the host's namespace: veth pairs are created straight into their
namespaces, and the host has neither an address on the WAN subnet nor a route to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dpps.core.errors import Conflict, NotFound, PermissionDenied, Unavailable
from dpps.testbed import servers, state
from dpps.testbed.proxy import MARK
from dpps.testbed.topology import SUBNET, Node, Plan
from dpps.testing import netns


def require_root() -> None:
    if os.geteuid() != 0:
        raise PermissionDenied(
            "the testbed needs root (it creates network namespaces, veth links and traffic "
            "shaping); run it as root, e.g. with sudo"
        )


def up(directory: Path, plan: Plan) -> dict[str, Any]:
    """Bring the testbed up; Conflict if one is up already. Returns the state."""
    require_root()
    netns.require_tools()
    existing = netns.namespaces()
    if existing or state.read(None) is not None:
        raise Conflict(
            "a testbed is already up (namespaces: "
            f"{', '.join(existing) or 'none, but a state file'}); run 'dpps testbed down' first"
        )
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    current: dict[str, Any] = {
        "dir": str(directory),
        "plan": plan.to_dict(),
        "pids": {},
        "rses": {},
        "paths": {},
        "started_at": time.time(),
    }
    state.write(directory, current)
    try:
        _network(plan)
        current["pids"].update(_proxies(directory, plan))
        state.write(directory, current)
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {
                node.name: pool.submit(servers.start_site, directory, node)
                for node in plan.nodes
                if node.storage
            }
            errors = []
            for name, future in futures.items():
                try:
                    site = future.result()
                except Exception as exc:
                    errors.append(f"{name}: {exc}")
                    continue
                current["pids"].update(site.pids)
                current["rses"].update(site.rses)
                current["paths"][name] = site.paths
            state.write(directory, current)
            if errors:
                raise Unavailable("storage did not start: " + "; ".join(errors))
        current["up_seconds"] = round(time.monotonic() - started, 3)
        state.write(directory, current)
    except BaseException:
        down(directory)
        raise
    return current


def _network(plan: Plan) -> None:
    netns.add_namespace(plan.wan_netns)
    netns.add_bridge(plan.wan_netns, plan.bridge)
    for node in plan.nodes:
        netns.add_namespace(node.netns)
        netns.add_veth(
            node.wan_link,
            plan.wan_netns,
            node.link,
            node.netns,
            address=f"{node.address}/{plan.prefixlen}",
        )
        netns.attach(plan.wan_netns, node.wan_link, plan.bridge)
        # both directions of the link are capped: egress of each end
        netns.shape(node.netns, node.link, node.bandwidth_mbit)
        netns.shape(plan.wan_netns, node.wan_link, node.bandwidth_mbit)
        netns.nft_apply(node.netns, _redirect_rules(node, plan))


def _redirect_rules(node: Node, plan: Plan) -> str:
    """TCP to any other testbed address goes through this namespace's delay proxy; the
    proxy's own connections (marked) go straight out."""
    return (
        "table ip dpps_testbed {\n"
        "  chain out {\n"
        "    type nat hook output priority -100; policy accept;\n"
        f"    meta mark {MARK:#x} return\n"
        f"    ip daddr {node.address} return\n"
        f"    ip daddr {SUBNET} meta l4proto tcp redirect to :{plan.proxy_port}\n"
        "  }\n"
        "}\n"
    )


def _proxies(directory: Path, plan: Plan) -> dict[str, int]:
    """One transparent delay proxy per namespace, holding each byte half the path's RTT."""
    pids: dict[str, int] = {}
    procs = []
    for node in plan.nodes:
        delays = {
            other.address: plan.path_rtt_ms(node.name, other.name) / 2000.0
            for other in plan.nodes
            if other.name != node.name
        }
        log = directory / "logs" / f"proxy-{node.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = netns.popen_in(
            node.netns,
            [
                sys.executable,
                "-m",
                "dpps.testbed.proxy",
                "--transparent",
                f"127.0.0.1:{plan.proxy_port}",
                "--delays",
                json.dumps(delays),
            ],
            stdout=subprocess.PIPE,
            stderr=open(log, "ab"),  # noqa: SIM115 - the child keeps it
        )
        pids[f"{node.name}/proxy"] = proc.pid
        procs.append((node, proc))
    for node, proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.stdout.close()
        if line.strip() != b"ready":
            stop_pids(list(pids.values()))
            raise Unavailable(f"the delay proxy of {node.name} did not start")
    return pids


def status(directory: Path | None) -> dict[str, Any]:
    """What is up: namespaces, addresses, shaping, processes alive; NotFound if nothing."""
    current = state.read(directory)
    found = netns.namespaces()
    if current is None and not found:
        raise NotFound("no testbed is up ('dpps testbed up' starts one)")
    report: dict[str, Any] = {
        "dir": (current or {}).get("dir"),
        "namespaces": found,
        "up_seconds": (current or {}).get("up_seconds"),
        "processes": {
            label: {"pid": pid, "alive": _alive(int(pid))}
            for label, pid in sorted(((current or {}).get("pids") or {}).items())
        },
        "rses": (current or {}).get("rses", {}),
        "nodes": [],
    }
    for node in ((current or {}).get("plan") or {}).get("nodes", []):
        report["nodes"].append(
            {
                "name": node["name"],
                "netns": node["netns"],
                "address": node["address"],
                "bandwidth_mbit": node["bandwidth_mbit"],
                "rtt_ms": node["rtt_ms"],
                "storage": node["storage"],
                "present": node["netns"] in found,
            }
        )
    report["healthy"] = (
        bool(current)
        and all(n["present"] for n in report["nodes"])
        and all(p["alive"] for p in report["processes"].values())
    )
    return report


def down(directory: Path | None) -> dict[str, Any]:
    """Stop every recorded process by PID, then any process left in a testbed namespace,
    delete the namespaces, forget the state. NotFound if there is nothing to take down."""
    require_root()
    current = state.read(directory)
    found = netns.namespaces()
    if current is None and not found:
        raise NotFound("no testbed is up: nothing to take down")
    pids = [int(p) for p in ((current or {}).get("pids") or {}).values()]
    stop_pids(pids)
    leftovers = sorted({pid for ns in found for pid in netns.pids_in(ns)})
    stop_pids(leftovers)
    for name in found:
        netns.delete_namespace(name)
    state.clear(directory if current is None else Path(str(current.get("dir"))))
    return {"stopped": sorted(set(pids) | set(leftovers)), "namespaces_deleted": found}


def stop_pids(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: each process by its PID (SeaweedFS ignores SIGTERM)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + min(timeout, 3.0)
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """True for a running process (a zombie of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
