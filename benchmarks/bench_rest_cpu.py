"""CPU cost of one REST request (locate, metadata query) and where it goes.

Wall-clock latencies on a shared 2-core machine measure the neighbours as much as the
server; the CPU the server spends per request does not. This benchmark reports:

* **server CPU per request** (user + system of the uvicorn process and its workers, read
  with psutil before and after N sequential requests of one kind), against the CPU of the
  same library call in-process; ``/health`` (no token) is the framework's floor and
  ``/api/v1/whoami`` adds authentication, so the differences show what each layer costs;
* **SQL statements per request** (a SQLAlchemy cursor listener on the app's engine, the app
  driven in-process through ``httpx.ASGITransport``), authentication included;
* **a profile split** of the in-process requests: time inside the library call (the
  handler's work) versus everything else (routing, dependencies, validation, serialisation);
* optionally (``--load``) the 50-client paced load of ``bench_api.py`` with its p95.

    python benchmarks/bench_rest_cpu.py [--files 5000] [--requests 200] [--rounds 5]
        [--workers 1] [--threads N] [--load] [--profile] [--baseline-src /tmp/base/src]

``--baseline-src`` serves a second version (e.g. ``git archive HEAD src | tar -x -C
/tmp/base``) on the same catalog, measured round by round with the current one: a fair
before/after on a machine whose load changes by the minute.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import random
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import psutil
from bench_api import PACED_THINK_S, _load, _percentiles, _register_local, _server
from sqlalchemy import event

from dpps.bdms.archive import Archive
from dpps.oms.accounts import AccountService
from dpps.oms.api import create_app


def _cpu_s(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _requests(kind: str, dids: list[str], n: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` requests of one kind; queries as in bench_api.py (25 matches, a page of 10)."""
    rng = random.Random(kind)
    obs = max(1, FILES[0] // 100)
    if kind in ("health", "whoami"):  # the framework alone; plus authentication
        return [(f"/{kind}" if kind == "health" else "/api/v1/whoami", {})] * n
    if kind == "locate":
        return [(f"/api/v1/replicas/{rng.choice(dids)}", {}) for _ in range(n)]
    return [
        ("/api/v1/dids", {"filter": f"obs_id={rng.randrange(obs)} and tel_id=1", "limit": 10})
        for _ in range(n)
    ]


KINDS = ("health", "whoami", "locate", "query")
FILES = [5000]  # set by run(): bench_api.py registers 100 files per observation


def _server_cpu(
    servers: dict[str, tuple[str, psutil.Process]],
    token: str,
    dids: list[str],
    n: int,
    rounds: int,
) -> dict[str, Any]:
    """Server CPU per request over ``rounds`` (least and median), servers interleaved round
    by round so that the machine's load weighs on each alike."""
    cpu: dict[str, dict[str, list[float]]] = {s: {k: [] for k in KINDS} for s in servers}
    wall: dict[str, dict[str, list[float]]] = {s: {k: [] for k in KINDS} for s in servers}
    headers = {"Authorization": f"Bearer {token}"}
    clients = {s: httpx.Client(base_url=url, headers=headers) for s, (url, _p) in servers.items()}
    try:
        for _ in range(rounds):
            for kind in KINDS:
                reqs = _requests(kind, dids, n)
                for name, (_url, proc) in servers.items():
                    c = clients[name]
                    for path, params in reqs[:10]:  # warm up
                        c.get(path, params=params)
                    before, t0 = _cpu_s(proc), time.perf_counter()
                    for path, params in reqs:
                        assert c.get(path, params=params).status_code == 200
                    wall[name][kind].append(1000 * (time.perf_counter() - t0) / n)
                    cpu[name][kind].append(1000 * (_cpu_s(proc) - before) / n)
    finally:
        for c in clients.values():
            c.close()
    return {
        name: {
            kind: {
                # the least disturbed round estimates a quiet machine; the median a busy one
                "server_cpu_ms_min": round(min(cpu[name][kind]), 3),
                "server_cpu_ms_median": round(statistics.median(cpu[name][kind]), 3),
                "wall_ms_median": round(statistics.median(wall[name][kind]), 3),
            }
            for kind in KINDS
        }
        for name in servers
    }


def _library_cpu(archive: Archive, dids: list[str], n: int) -> dict[str, float]:
    reqs = _requests("query", dids, n)
    locates = _requests("locate", dids, n)
    t0 = time.process_time()
    for path, _ in locates:
        archive.locate(path.removeprefix("/api/v1/replicas/"))
    t1 = time.process_time()
    for _, params in reqs:
        archive.list_files(params["filter"], limit=10)
        archive.count(params["filter"])
    t2 = time.process_time()
    return {
        "locate_cpu_ms": round(1000 * (t1 - t0) / n, 3),
        "query_cpu_ms": round(1000 * (t2 - t1) / n, 3),
    }


def _in_process(archive: Archive, token: str, dids: list[str], n: int) -> dict[str, Any]:
    """SQL statements per request and the library/framework split, app in this process."""
    app = create_app(archive)
    statements = [0]

    def count(*_a: Any, **_k: Any) -> None:
        statements[0] += 1

    event.listen(archive.engine, "before_cursor_execute", count)
    out: dict[str, Any] = {}

    async def drive(reqs: list[tuple[str, dict[str, Any]]]) -> None:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as c:
            for path, params in reqs:
                r = await c.get(path, params=params)
                assert r.status_code == 200, r.text

    try:
        for kind, library in (("locate", "locate"), ("query", "list_files|count")):
            reqs = _requests(kind, dids, n)
            asyncio.run(drive(reqs[:20]))
            statements[0] = 0
            asyncio.run(drive(reqs))
            per_request = statements[0] / n
            profile = cProfile.Profile()
            t0 = time.process_time()
            profile.enable()
            asyncio.run(drive(reqs))
            profile.disable()
            cpu = time.process_time() - t0
            stats = pstats.Stats(profile)
            inside = 0.0
            for (filename, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
                if "dpps/bdms/archive.py" in filename and name in library.split("|"):
                    inside += row[3]  # cumulative time
            out[kind] = {
                "sql_statements_per_request": round(per_request, 2),
                "in_process_cpu_ms": round(1000 * cpu / n, 3),
                "library_share": round(
                    inside / max(sum(r[2] for r in stats.stats.values()), 1e-9), 3
                ),  # type: ignore[attr-defined]
            }
            top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]  # type: ignore[attr-defined]
            out[kind]["top_self_time"] = [
                f"{Path(f).name}:{ln} {fn} {row[2] * 1000 / n:.3f} ms/req"
                for (f, ln, fn), row in top
            ]
    finally:
        event.remove(archive.engine, "before_cursor_execute", count)
    return out


def run(
    files: int,
    requests: int,
    workers: int,
    load: bool,
    *,
    rounds: int = 5,
    baseline_src: Path | None = None,
    profile: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(TemporaryDirectory(prefix="bench-rest-cpu-")))
        archive = stack.enter_context(Archive.init(tmp / "ws"))
        service = AccountService(archive.sessions)
        service.add_account("bench", ["admin"], ["*"])
        token = service.create_token("bench", days=1).token
        _register_local(archive, files)
        FILES[0] = files
        dids = [f"ctao:{f.name}" for f in archive.list_files("", limit=500)]
        result: dict[str, Any] = {"files": files, "requests_per_round": requests, "rounds": rounds}
        result["library"] = _library_cpu(archive, dids, requests)
        if profile:
            result["in_process"] = _in_process(archive, token, dids, requests)
        ws = archive.config.workspace
        env = {"DPPS_API_THREADS": str(threads)} if threads else {}
        servers = {"current": stack.enter_context(_server(ws, workers=workers, env_extra=env))}
        if baseline_src is not None:
            env = {"PYTHONPATH": str(baseline_src)}  # its own default thread pool
            servers["baseline"] = stack.enter_context(_server(ws, workers=workers, env_extra=env))
        result["workers"] = workers
        result["threads"] = threads or "default (40)"
        result["server"] = _server_cpu(servers, token, dids, requests, rounds)
        if load:
            url = servers["current"][0]
            paced, wall, errors = asyncio.run(_load(url, token, dids, 50, 40, PACED_THINK_S))
            result["load_paced_50"] = {
                **_percentiles(paced),
                "errors": errors,
                "requests_per_s": round(len(paced) / wall, 1),
            }
        result["load_average"] = [round(x, 2) for x in psutil.getloadavg()]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--load", action="store_true", help="also the 50-client paced load")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="handler threads of the current server")
    parser.add_argument("--profile", action="store_true", help="SQL count and profile split")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="a src/ tree of another version (git archive): served too, interleaved",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON (its only output: run_all passes it)"
    )
    args = parser.parse_args()
    result = run(
        args.files,
        args.requests,
        args.workers,
        args.load,
        rounds=args.rounds,
        baseline_src=args.baseline_src,
        profile=args.profile,
        threads=args.threads,
    )
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
