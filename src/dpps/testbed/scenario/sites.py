"""The processes of a scenario, each in its data center's namespace, and their configuration.

Placement (docs/deployment.md): the catalog (PostgreSQL) and the rule evaluator in the central
namespace; at the telescope site the ACADA ingestion queue and a reaper for its own RSE, and an
XRootD server exporting that RSE (the only way another site reads it: never through the
shared filesystem); at the off-site center a transfer agent pulling into its own RSE.

Each site has a workspace (``dpps.yaml``) of its own: the same RSEs and catalog everywhere,
but the telescope site's RSE is a local path in the telescope site's workspace and a
``root://`` URL served by its XRootD in every other one. Every process connects to the
catalog with an ``application_name`` naming it, and the server logs every statement with that
name, so the round trips each process costs are counted by the server, not by the process.

Every PID is written into the testbed's state file as soon as it exists, so ``dpps testbed
down`` stops what a crashed scenario left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dpps.core import defaults
from dpps.testbed import state
from dpps.testbed.lifecycle import stop_pids
from dpps.testbed.topology import SUBNET, Plan
from dpps.testing import netns
from dpps.testing.postgres import TemporaryPostgres
from dpps.testing.xrootd import TemporaryXRootD

PG_PORT = 5432
XRD_PORT = 1094
API_PORT = 8000
#: How the site processes (transfer agents, ingestion queue, reaper) reach the catalog: ``api``
#: (the central ``dpps serve``; two requests per claimed batch or reaper pass, one per batch of
#: new files; docs/deployment.md) or ``postgres`` (over the WAN).
AGENT_CATALOGS = ("api", "postgres")
#: On-site RSE and off-site RSE of the long-haul scenario (``dpps init``'s names).
ONSITE_RSE = "CTAO-N"
OFFSITE_RSE = "PIC"


@dataclass
class Deployment:
    """What a scenario started: servers, site processes, their workspaces and logs."""

    base: Path
    plan: Plan
    testbed: dict[str, Any]
    catalog_url: str = ""
    onsite_root: Path = Path()
    landing: Path = Path()
    pg: TemporaryPostgres | None = None
    xrd: TemporaryXRootD | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    #: The RSE of the second hop (PIC -> it: another center's disk, or PIC's own tape), or
    #: None: one hop.
    second_hop: str | None = None
    #: Files written into the landing area so far: {path relative to it: trigger time}.
    announced: dict[str, float] = field(default_factory=dict)
    announced_bytes: int = 0
    #: How the transfer agents reach the catalog (:data:`AGENT_CATALOGS`).
    agent_catalog: str = "api"
    #: The agents' token (a ``site-agent`` account) when they go through the API.
    agent_token: str = ""
    #: The site processes (label, data center, command) when not :func:`processes`' default.
    table: tuple[tuple[str, str, tuple[str, ...]], ...] | None = None

    @property
    def hop_center(self) -> str | None:
        """The data center serving the second hop's RSE (PIC itself for its tape)."""
        if self.second_hop is None:
            return None
        return str(self.testbed["rses"][self.second_hop]["site"])

    @property
    def api_url(self) -> str:
        return f"http://{self.plan.node('central').address}:{API_PORT}"

    @property
    def pg_log(self) -> Path:
        assert self.pg is not None
        return self.pg.log_file

    def workspace(self, site: str) -> Path:
        return self.base / "workspaces" / site

    def offsite_path(self, replica_path: str) -> Path:
        """Where the off-site center's XRootD keeps a replica (for the independent check)."""
        return Path(self.testbed["paths"]["PIC"]["xrootd"]) / "disk" / replica_path


def _record(dep: Deployment) -> None:
    """Add the scenario's PIDs to the testbed's state (``down`` stops them by PID)."""
    current = state.read(Path(dep.testbed["dir"])) or dep.testbed
    pids = {k: v for k, v in current.get("pids", {}).items() if not k.startswith("scenario/")}
    pids.update({f"scenario/{k}": v for k, v in dep.pids.items()})
    current["pids"] = pids
    state.write(Path(current["dir"]), current)


def config(dep: Deployment, site: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The ``dpps.yaml`` of one site's workspace."""
    north, pic = dep.plan.node("CTAO-North"), dep.plan.node("PIC")
    onsite_url = (
        str(dep.onsite_root) if site == "CTAO-North" else f"root://{north.address}:{XRD_PORT}//rse"
    )
    return {
        "default_scope": "ctao",
        "checksums": ["adler32", "blake3"],
        "catalog": {"url": dep.catalog_url},
        "sites": {name: defaults.SITES[name] for name in centers(dep) if name != "central"},
        "rses": {
            ONSITE_RSE: {
                "url": onsite_url,
                "site": "CTAO-North",
                "onsite": True,
                "attributes": {"type": "disk", "tier": 0},
            },
            OFFSITE_RSE: {
                "url": dep.testbed["rses"]["PIC"]["url"],
                "site": pic.name,
                "attributes": {"type": "disk", "tier": 1},
            },
            **_second_hop_rse(dep),
        },
        # one safe off-site copy at PIC, read from the telescope site (dpps init's 'acada'
        # policy asks for a second one on tape, which this scenario does not place), and with
        # a second hop one more copy at that center, read from PIC
        "policies": {"acada": _policy(dep)},
        # the on-site copy goes as soon as it is safe off site
        "reaper": {"onsite_retention_days": 0, "min_offsite_copies": 1},
        "acada": {
            "landing": "acada",
            "rse": ONSITE_RSE,
            "quarantine": str(dep.base / "quarantine"),
            "poll_interval_s": 0.2,
            "batch_size": 100,
        },
        # XrdCl waits 2.5 s for each third-party copy however small: many in flight; a
        # failed copy is retried after 5 s (not 30: the faults' tests wait for it) and a
        # crashed agent's lease runs out after 30 s
        "transfers": settings.get(
            "transfers",
            {
                "threads": 96,
                "batch": 200,
                "max_active_per_link": 128,
                "backoff_base_s": 5.0,
                "lease_s": 30.0,
            },
        ),
        "rules": {"recheck_s": 5.0, "stuck_retry_s": 5.0},
    }


def centers(dep: Deployment) -> tuple[str, ...]:
    """The namespaces the scenario's processes run in."""
    hop = (dep.hop_center,) if dep.hop_center not in (None, "PIC") else ()
    return ("central", "CTAO-North", "PIC", *hop)


def _second_hop_rse(dep: Deployment) -> dict[str, Any]:
    """The second hop's RSE as the testbed serves it (S3 or XRootD), under its center's name."""
    if dep.second_hop is None:
        return {}
    entry = dict(dep.testbed["rses"][dep.second_hop])
    entry["attributes"] = {"type": entry.get("kind", "disk"), "tier": 1}
    return {dep.second_hop: entry}


def _policy(dep: Deployment) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "copies": 1,
            "rses": OFFSITE_RSE,
            "source": ONSITE_RSE,
            "priority": 4,
            "activity": "acada",
        }
    ]
    if dep.second_hop is not None:
        rules.append(
            {
                "copies": 1,
                "rses": dep.second_hop,
                "source": OFFSITE_RSE,
                "priority": 3,
                "activity": "replication",
            }
        )
    return rules


def start_servers(dep: Deployment) -> None:
    """The central catalog (logging every statement with its client's name) and the XRootD
    server exporting the telescope site's RSE."""
    central, north = dep.plan.node("central"), dep.plan.node("CTAO-North")
    dep.pg = TemporaryPostgres(
        dep.base / "postgres",
        port=PG_PORT,
        host=central.address,
        netns=central.netns,
        allow=str(SUBNET),
        settings={"log_statement": "all", "log_line_prefix": "%a|"},
    )
    dep.pg.start()
    dep.pids["central/postgres"] = dep.pg.pid
    _record(dep)
    dep.catalog_url = dep.pg.url
    dep.xrd = TemporaryXRootD(
        dep.base / "north-xrootd", netns=north.netns, host=north.address, port=XRD_PORT
    )
    dep.xrd.start()
    dep.pids["CTAO-North/xrootd"] = dep.xrd.pid
    _record(dep)
    dep.onsite_root = dep.xrd.data_dir / "rse"
    dep.landing = dep.onsite_root / "acada"
    dep.landing.mkdir(parents=True, exist_ok=True)


def write_workspaces(dep: Deployment, settings: dict[str, Any]) -> None:
    for site in centers(dep):
        ws = dep.workspace(site)
        ws.mkdir(parents=True, exist_ok=True)
        (ws / "dpps.yaml").write_text(
            yaml.safe_dump(config(dep, site, settings), sort_keys=False), encoding="utf-8"
        )


#: (label, namespace's data center, daemon and its partition) of every site process; the
#: ingestion queue is bound to its landing area's RSE by ``--rse``.
#: The longest idle wait of the scenario's transfer agents and reapers (seconds).
MAX_SLEEP_S = 2.0
PROCESSES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("evaluator", "central", ("evaluator",)),
    ("ingest@CTAO-North", "CTAO-North", ("ingest", "--rse", ONSITE_RSE)),
    ("reaper@CTAO-North", "CTAO-North", ("reaper", "--site", "CTAO-North")),
    ("transfer@PIC", "PIC", ("transfer", "--site", "PIC")),
)


def processes(dep: Deployment) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """:data:`PROCESSES`, with a second hop that center's transfer agent; when the agents go
    through the API, the central process is ``dpps serve`` (the API and the evaluator). A
    scenario's own table (``dep.table``) replaces them."""
    if dep.table is not None:
        return dep.table
    chosen = PROCESSES
    if dep.agent_catalog == "api":
        address = dep.plan.node("central").address
        serve = ("serve", "--only", "evaluator", "--host", address, "--port", str(API_PORT))
        chosen = (("central", "central", serve), *PROCESSES[1:])
    hop = dep.hop_center
    if hop is None or hop == "PIC":  # PIC's own agent serves its tape
        return chosen
    return (*chosen, (f"transfer@{hop}", hop, ("transfer", "--site", hop)))


def create_agent_token(dep: Deployment) -> None:
    """A ``site-agent`` account for the site processes and its token, made with the CLI on
    the central catalog as an operator would (inside the central namespace)."""
    dpps = str(Path(sys.executable).parent / "dpps")
    ws = ["--workspace", str(dep.workspace("central"))]
    central = dep.plan.node("central").netns
    env = {**os.environ, "DPPS_CATALOG__URL": dep.catalog_url}
    env.pop("DPPS_URL", None)
    for argv in (
        [dpps, *ws, "account", "add", "site-agents", "--role", "site-agent", "--scope", "ctao"],
        [dpps, *ws, "token", "create", "site-agents", "--description", "testbed", "--json"],
    ):
        done = subprocess.run(
            netns.command_in(central, argv), env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[1:])}: {done.stderr.strip()}")
    dep.agent_token = str(json.loads(done.stdout)["token"])


def start_processes(dep: Deployment, sleep_s: float = 0.2) -> None:
    """The central process first and, when it is the API, only once it answers (as a site's
    units start after the center is up): site processes started earlier spend their first
    seconds on refused requests and back off, delaying the first copies by as much."""
    for label, _, _ in processes(dep):
        start_process(dep, label, sleep_s)
        if label == "central" and dep.agent_catalog == "api":
            wait_for_api(dep)


def wait_for_api(dep: Deployment, timeout_s: float = 180.0) -> None:
    """Until the central API answers ``/health`` (from inside the central namespace); raise
    if its process died or the deadline passed."""
    import httpx

    deadline = time.monotonic() + timeout_s
    with netns.inside(dep.plan.node("central").netns):
        while time.monotonic() < deadline:
            if dep.procs["central"].poll() is not None:
                raise RuntimeError(f"the central API exited: see {dep.base / 'logs'}")
            try:
                if httpx.get(f"{dep.api_url}/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"the central API did not answer within {timeout_s:.0f} s")


def start_process(dep: Deployment, label: str, sleep_s: float = 0.2) -> None:
    """Start one site process of :data:`PROCESSES` in its data center's namespace (again,
    after a crash: its log is appended to)."""
    where, daemon = next((w, d) for name, w, d in processes(dep) if name == label)
    dpps = str(Path(sys.executable).parent / "dpps")
    command = [*daemon] if daemon[0] == "serve" else ["daemon", *daemon]
    argv = [dpps, "--workspace", str(dep.workspace(where)), *command]
    if daemon[0] != "ingest":  # the queue polls the landing area at acada.poll_interval_s
        argv += ["--sleep", str(sleep_s), "--log-level", "WARNING"]
    if daemon[0] in ("transfer", "reaper"):
        # idle, a site process waits up to 30 s by default: here the second hop's agent
        # idles until PIC holds the first copies, and would then start late by as much
        argv += ["--max-sleep", str(MAX_SLEEP_S)]
    env = {}
    if daemon[0] in ("transfer", "ingest", "reaper") and dep.agent_catalog == "api":
        env = {"DPPS_CATALOG__URL": dep.api_url, "DPPS_TOKEN": dep.agent_token}
    launch(dep, label, where, argv, env)


def launch(dep: Deployment, label: str, where: str, argv: list[str], env: dict[str, str]) -> None:
    """Start ``argv`` in the namespace of the data center ``where`` and record its PID; it
    connects to the catalog as ``label`` unless ``env`` says otherwise (its stderr goes to
    ``logs/<label>.log``, appended to after a crash)."""
    logs = dep.base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    full = dict(os.environ)
    full.pop("DPPS_URL", None)  # daemons run here: with it set they would refuse (exit 3)
    # the server logs it with each statement ('@' would end the URL's user part)
    app = label.replace("@", ".")
    full["DPPS_CATALOG__URL"] = f"{dep.catalog_url}?application_name={app}"
    full.update(env)
    dep.procs[label] = netns.popen_in(
        dep.plan.node(where).netns,
        argv,
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=open(logs / f"{label}.log", "ab"),  # noqa: SIM115 - the child keeps it
    )
    dep.pids[label] = dep.procs[label].pid
    _record(dep)


def kill_process(dep: Deployment, label: str) -> None:
    """SIGKILL one site process (a crash: nothing is given back, leases stay taken)."""
    proc = dep.procs.pop(label)
    proc.kill()
    proc.wait()
    dep.pids.pop(label, None)
    _record(dep)


def kill_site_xrootd(dep: Deployment, site: str) -> None:
    """SIGKILL the XRootD server of a data center: the scenario's own (the telescope site's)
    or the testbed's (an off-site center's), as a crashed machine would lose it."""
    if site == "CTAO-North":
        assert dep.xrd is not None
        _sigkill(dep.xrd.pid)
        dep.xrd.stop()
        dep.pids.pop("CTAO-North/xrootd", None)
        _record(dep)
        return
    current = state.read(Path(dep.testbed["dir"])) or dep.testbed
    pid = current.get("pids", {}).pop(f"{site}/xrootd")
    _sigkill(int(pid))
    state.write(Path(current["dir"]), current)


def restart_site_xrootd(dep: Deployment, site: str) -> None:
    """Start a killed XRootD server again on the same address, port and disk."""
    if site == "CTAO-North":
        assert dep.xrd is not None
        dep.xrd.start()
        dep.pids["CTAO-North/xrootd"] = dep.xrd.pid
        _record(dep)
        return
    node = dep.plan.node(site)
    xrd = TemporaryXRootD(
        Path(dep.testbed["paths"][site]["xrootd"]).parent,
        netns=node.netns,
        host=node.address,
        port=XRD_PORT,
    )
    xrd.start()
    current = state.read(Path(dep.testbed["dir"])) or dep.testbed
    current.setdefault("pids", {})[f"{site}/xrootd"] = xrd.detach()[0]
    state.write(Path(current["dir"]), current)


def restart_catalog(dep: Deployment, down_s: float) -> None:
    """Stop the central catalog (PostgreSQL's fast shutdown: every connection is cut), keep
    it down ``down_s`` seconds, start it again on the same data."""
    assert dep.pg is not None
    dep.pg.stop()
    time.sleep(down_s)
    dep.pg.start()
    dep.pids["central/postgres"] = dep.pg.pid
    _record(dep)


def _sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def dead_processes(dep: Deployment) -> dict[str, str]:
    """Site processes that exited, with the tail of their log."""
    dead = {}
    for label, proc in dep.procs.items():
        if proc.poll() is not None:
            log = dep.base / "logs" / f"{label}.log"
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
            dead[label] = f"exit {proc.returncode}: " + " / ".join(tail)
    return dead


def stop_processes(dep: Deployment) -> None:
    """Stop the site processes by PID (the servers stay, for the final checks)."""
    stop_pids([p.pid for p in dep.procs.values()])
    for proc in dep.procs.values():
        proc.poll()


def stop(dep: Deployment) -> None:
    """Stop site processes, then the servers, each by PID; forget them in the state file."""
    stop_processes(dep)
    if dep.xrd is not None:
        dep.xrd.stop()
    if dep.pg is not None:
        dep.pg.stop()
    dep.pids.clear()
    _record(dep)


_LINE = re.compile(r"^([^|\s]*)\|(?:LOG|STATEMENT):\s+(statement|execute [^:]*):")


_AGENT_ROUTE = re.compile(
    r'^dpps_http_requests_total\{method="POST",route="/api/v1/agents/([^"]+)",status="(\d+)"\}'
    r"\s+([0-9.e+]+)$"
)


def agent_requests(dep: Deployment) -> dict[str, int]:
    """Requests the central API answered to the site processes, by route
    (``transfers/claim``, ``transfers/report``, ``ingest/register``, ``heartbeats``...) and
    status class: counted by the server (its
    /metrics, read from inside the central namespace), not by the agents."""
    if dep.agent_catalog != "api":
        return {}
    import httpx

    with netns.inside(dep.plan.node("central").netns):
        text = httpx.get(f"{dep.api_url}/metrics", timeout=10).text
    counts: dict[str, int] = {}
    for line in text.splitlines():
        match = _AGENT_ROUTE.match(line)
        if match:
            key = match.group(1) + ("" if match.group(2).startswith("2") else " failed")
            counts[key] = counts.get(key, 0) + int(float(match.group(3)))
    return counts


def statements_by_client(log: Path) -> dict[str, int]:
    """Statements the catalog received per client (``application_name``): every line the
    server logged as a statement or an execution (transaction control included)."""
    counts: dict[str, int] = {}
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return counts
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and line.split("|", 1)[1].startswith("LOG:"):
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts
