"""REST API benchmarks: bulk registration, locate latency, 50 concurrent clients, memory.

The server is the app alone behind uvicorn (``uvicorn --factory dpps.oms.api:app_from_env``)
in its own process on 127.0.0.1, over the embedded default (SQLite) or, with --postgres, a
throwaway PostgreSQL. Every figure is printed next to a baseline measured in the same run:
registration and locate through the library in-process (what the HTTP layer adds to), and the
issue's floors with PASS/FAIL. The reference system's figures (Rucio on the same kind of
machine) are quoted for comparison: registration with 5 metadata keys ~176 files/s, locate
54-89 ms, server memory at rest 314 MiB.

    python benchmarks/bench_api.py [--files 20000] [--clients 50] [--postgres] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

from dpps.bdms.archive import Archive
from dpps.bdms.records import Registration
from dpps.catalog.dids import NewFile
from dpps.client.archive import RemoteArchive
from dpps.oms.accounts import AccountService
from dpps.oms.server import free_port

FLOORS = {
    "register_files_per_s": 2000.0,
    "locate_p50_ms": 20.0,
    "load_p95_ms": 100.0,
    "rss_at_rest_mib": 150.0,
}
REFERENCE = {"register_files_per_s": 176.0, "locate_p50_ms": "54-89", "rss_at_rest_mib": 314.0}
BATCH = 1000
#: Mean pause of a paced client between two requests (people and scripts, not a flood).
PACED_THINK_S = 0.25


def _meta(i: int) -> dict[str, Any]:
    """Five metadata keys per file, as in the reference measurement."""
    obs = i // 100
    return {
        "data_level": "DL0",
        "obs_id": obs,
        "tel_id": i % 4 + 1,
        "observing_night": (dt.date(2026, 1, 1) + dt.timedelta(days=obs // 50)).isoformat(),
        "run_type": "science",
    }


def _registrations(prefix: str, n: int) -> list[Registration]:
    return [
        Registration(
            name=f"/ctao/{prefix}/obs_{i // 100:06d}/tel_{i % 4 + 1}_{i:08d}.fits.fz",
            bytes=1_000_000 + i,
            adler32=f"{i & 0xFFFFFFFF:08x}",
            rse="CTAO-N",
            meta=_meta(i),
        )
        for i in range(n)
    ]


def _percentiles(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {
        "p50_ms": round(statistics.median(s), 2),
        "p95_ms": round(s[int(0.95 * (len(s) - 1))], 2),
        "p99_ms": round(s[int(0.99 * (len(s) - 1))], 2),
        "n": len(s),
    }


@contextmanager
def _server(
    workspace: Path, workers: int = 1, env_extra: dict[str, str] | None = None
) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    env = {**os.environ, "DPPS_WORKSPACE": str(workspace), "DPPS_URL": "", **(env_extra or {})}
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "dpps.oms.api:app_from_env",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        *(["--workers", str(workers)] if workers > 1 else []),
    ]
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.1)
        yield url, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _register_local(archive: Archive, n: int) -> float:
    """Baseline: the same registrations through the library in this process, no HTTP."""
    rse_id = archive.rse_id("CTAO-N")
    from dpps.bdms.registration import prepare_declared

    items = _registrations("local", n)
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        files: list[NewFile] = prepare_declared(
            items[start : start + BATCH],
            default_scope=archive.config.default_scope,
            rse_ids={"CTAO-N": rse_id},
            storage=archive.storage,
        )
        archive.register(files)
    return n / (time.perf_counter() - started)


async def _load(
    url: str, token: str, dids: list[str], clients: int, per_client: int, think_s: float = 0.0
) -> Any:
    """``clients`` concurrent clients, each with its own connection, alternating a metadata
    query and a locate, each waiting a random 0..2*think_s between its requests (0: as fast as
    the server answers, i.e. saturation); returns latencies in ms, wall time and errors."""
    latencies: list[float] = []
    errors = 0

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as c:
            for i in range(per_client):
                did = rng.choice(dids)
                t0 = time.perf_counter()
                if i % 2:
                    r = await c.get(f"/api/v1/replicas/{did}")
                else:
                    obs = rng.randrange(0, 200)
                    r = await c.get(
                        "/api/v1/dids",
                        params={"filter": f"obs_id={obs} and tel_id=1", "limit": 10},
                    )
                latencies.append(1000 * (time.perf_counter() - t0))
                errors += r.status_code != 200
                if think_s:
                    await asyncio.sleep(rng.uniform(0, 2 * think_s))

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return latencies, time.perf_counter() - started, errors


def run(
    files: int = 20_000,
    clients: int = 50,
    per_client: int = 40,
    locates: int = 500,
    postgres: bool = False,
) -> dict[str, Any]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-api-")))
        url_db = None
        if postgres:
            from dpps.testing.postgres import TemporaryPostgres

            url_db = stack.enter_context(TemporaryPostgres(tmp / "pg")).create_database()
        archive = stack.enter_context(Archive.init(tmp / "ws", catalog_url=url_db))
        service = AccountService(archive.sessions)
        service.add_account("bench", ["admin"], ["*"])
        token = service.create_token("bench", days=1).token
        baseline_rate = _register_local(archive, files)
        url, proc = stack.enter_context(_server(archive.config.workspace))
        rss_rest = proc.memory_info().rss / 2**20
        remote = stack.enter_context(RemoteArchive(url, token))

        items = _registrations("rest", files)
        started = time.perf_counter()
        for start in range(0, files, BATCH):
            outcomes = remote.register_files(items[start : start + BATCH])
            assert all(o.status == "registered" for o in outcomes)
        rest_rate = files / (time.perf_counter() - started)

        dids = [f"ctao:{it.name}" for it in random.Random(1).sample(items, min(locates, files))]
        local_ms, rest_ms = [], []
        for did in dids:
            t0 = time.perf_counter()
            archive.locate(did)
            local_ms.append(1000 * (time.perf_counter() - t0))
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            c.get(f"/api/v1/replicas/{dids[0]}")  # connect once
            for did in dids:
                t0 = time.perf_counter()
                assert c.get(f"/api/v1/replicas/{did}").status_code == 200
                rest_ms.append(1000 * (time.perf_counter() - t0))

        paced, paced_wall, paced_errors = asyncio.run(
            _load(url, token, dids, clients, per_client, think_s=PACED_THINK_S)
        )
        latencies, wall, errors = asyncio.run(_load(url, token, dids, clients, per_client))
        rss_after = proc.memory_info().rss / 2**20

    figures = {
        "register_files_per_s": round(rest_rate, 1),
        "locate_p50_ms": _percentiles(rest_ms)["p50_ms"],
        "load_p95_ms": _percentiles(paced)["p95_ms"],
        "rss_at_rest_mib": round(rss_rest, 1),
    }
    verdict = {
        k: (
            "PASS"
            if (v >= FLOORS[k] if k == "register_files_per_s" else v < FLOORS[k])
            else "FAIL"
        )
        for k, v in figures.items()
    }
    return {
        "backend": "postgresql" if postgres else "sqlite",
        "files": files,
        "figures": figures,
        "floors": FLOORS,
        "verdict": verdict,
        "reference_system": REFERENCE,
        "baseline": {
            "register_library_files_per_s": round(baseline_rate, 1),
            "register_rest_vs_library": round(rest_rate / baseline_rate, 3),
            "locate_library": _percentiles(local_ms),
            "locate_rest": _percentiles(rest_ms),
        },
        "load_paced": {
            "clients": clients,
            "think_s_mean": PACED_THINK_S,
            **_percentiles(paced),
            "errors": paced_errors,
            "requests_per_s": round(len(paced) / paced_wall, 1),
        },
        "load": {
            "clients": clients,
            **_percentiles(latencies),
            "errors": errors,
            "requests_per_s": round(len(latencies) / wall, 1),
        },
        "rss_after_load_mib": round(rss_after, 1),
    }


def _table(r: dict[str, Any]) -> str:
    f, b, ld, pc = r["figures"], r["baseline"], r["load"], r["load_paced"]
    rows = [
        (
            "bulk registration, 5 metadata keys",
            f"{f['register_files_per_s']:.0f} files/s",
            f"library {b['register_library_files_per_s']:.0f} files/s "
            f"(REST/library {b['register_rest_vs_library']:.2f})",
            ">= 2000",
            r["verdict"]["register_files_per_s"],
        ),
        (
            "locate one file, p50 (p95)",
            f"{f['locate_p50_ms']:.1f} ms ({b['locate_rest']['p95_ms']:.1f})",
            f"library {b['locate_library']['p50_ms']:.2f} ms",
            "< 20 ms",
            r["verdict"]["locate_p50_ms"],
        ),
        (
            f"{pc['clients']} clients query/locate, paced ({pc['think_s_mean']} s think), "
            "p95 (p50)",
            f"{f['load_p95_ms']:.1f} ms ({pc['p50_ms']:.1f})",
            f"{pc['requests_per_s']:.0f} req/s, {pc['errors']} errors",
            "< 100 ms",
            r["verdict"]["load_p95_ms"],
        ),
        (
            f"{ld['clients']} clients query/locate, saturating (no think time), p95 (p50)",
            f"{ld['p95_ms']:.1f} ms ({ld['p50_ms']:.1f})",
            f"{ld['requests_per_s']:.0f} req/s, {ld['errors']} errors",
            "(none)",
            "info",
        ),
        (
            "server memory at rest (RSS)",
            f"{f['rss_at_rest_mib']:.0f} MiB",
            f"after load {r['rss_after_load_mib']:.0f} MiB",
            "< 150 MiB",
            r["verdict"]["rss_at_rest_mib"],
        ),
    ]
    out = [
        f"REST API on {r['backend']}, {r['files']} files registered "
        f"(reference system: {REFERENCE['register_files_per_s']:.0f} files/s, locate "
        f"{REFERENCE['locate_p50_ms']} ms, {REFERENCE['rss_at_rest_mib']:.0f} MiB)",
        "",
        "| measure | dpps | baseline (same run) | floor | |",
        "|---|---|---|---|---|",
    ]
    out += [f"| {a} | {b_} | {c} | {d} | {e} |" for a, b_, c, d, e in rows]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=20_000, help="files to register")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--per-client", type=int, default=40, help="requests per client")
    parser.add_argument("--postgres", action="store_true", help="throwaway PostgreSQL catalog")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    result = run(args.files, args.clients, args.per_client, postgres=args.postgres)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0 if all(v == "PASS" for v in result["verdict"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
