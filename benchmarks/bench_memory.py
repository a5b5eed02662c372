"""Memory of ``dpps serve``: resident set size at rest, and its growth under work.

``dpps serve`` (every daemon in one process, one thread each, and the REST API; the embedded
default on SQLite) is started on a fresh workspace, and its RSS read:

* at rest: once ``/health`` answers and the daemons have had a few passes (target < 150 MiB);
* after registering ``--files`` files over REST (bulk registration, 1,000 per request);
* after ``--requests`` API requests (locate and a metadata query, alternately).

Growth is the last figure less the first (target < 50 MiB). The baseline, measured in the
same run: a bare ``python`` that imports the same stack (the CLI, the daemons' registry, the
API application, uvicorn) and does nothing: what the code alone costs, so that the figure at
rest shows what serving adds to it.

    python benchmarks/bench_memory.py [--files 1000000] [--requests 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from bench_api import _registrations

from dpps.bdms.archive import Archive
from dpps.client.archive import RemoteArchive
from dpps.oms.accounts import AccountService
from dpps.oms.server import free_port

TARGETS = {"rss_at_rest_mib": 150.0, "growth_mib": 50.0}
BATCH = 1000
#: What ``dpps serve`` imports before it serves; the baseline imports the same.
STACK = "import dpps.cli.main, dpps.cli.daemon_cmds, dpps.oms.server, dpps.oms.api, uvicorn"


def _mib(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss) / 2**20


def baseline_mib() -> float:
    """RSS of a bare interpreter that has imported the stack."""
    code = f"{STACK}\nimport psutil\nprint(psutil.Process().memory_info().rss)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return int(out.strip().splitlines()[-1]) / 2**20


@contextmanager
def _serve(workspace: Path) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    env = {**os.environ, "DPPS_WORKSPACE": str(workspace), "DPPS_URL": ""}
    cmd = [sys.executable, "-m", "dpps", "serve", "--port", str(port)]
    cmd += ["--log-level", "WARNING", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
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
                raise RuntimeError("dpps serve did not start")
            time.sleep(0.2)
        yield url, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(files: int, requests: int, settle_s: float = 5.0) -> dict[str, Any]:
    base = baseline_mib()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        with Archive.init(Path(tmp) / "ws") as archive:
            service = AccountService(archive.sessions)
            service.add_account("bench", ["admin"], ["*"])
            token = service.create_token("bench", days=1).token
            workspace = archive.config.workspace
        with _serve(workspace) as (url, proc), RemoteArchive(url, token) as remote:
            time.sleep(settle_s)  # the daemons' first passes
            rest = _mib(proc)
            items = _registrations("memory", files)
            t0 = time.perf_counter()
            for start in range(0, files, BATCH):
                outcomes = remote.register_files(items[start : start + BATCH])
                assert all(o.status == "registered" for o in outcomes)
            registered_s = time.perf_counter() - t0
            after_files = _mib(proc)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                for i in range(requests):
                    item = items[(i * 7919) % files]
                    if i % 2:
                        path = f"/api/v1/replicas/ctao:{item.name}"
                        response = client.get(path)
                    else:
                        query = f"obs_id={(i * 7919) % files // 100}"
                        response = client.get("/api/v1/dids", params={"filter": query})
                    assert response.status_code == 200, response.text
            after_requests = _mib(proc)
    growth = after_requests - rest
    return {
        "files": files,
        "requests": requests,
        "baseline_import_mib": round(base, 1),
        "rss_at_rest_mib": round(rest, 1),
        "rss_after_files_mib": round(after_files, 1),
        "rss_after_requests_mib": round(after_requests, 1),
        "growth_mib": round(growth, 1),
        "rest_over_baseline": round(rest / base, 2),
        "register_files_per_s": round(files / registered_s, 1),
        "verdict": {
            "rss_at_rest_mib": "PASS" if rest < TARGETS["rss_at_rest_mib"] else "FAIL",
            "growth_mib": "PASS" if growth < TARGETS["growth_mib"] else "FAIL",
        },
    }


def render(r: dict[str, Any]) -> str:
    base = f"bare python importing the stack {r['baseline_import_mib']:.0f} MiB"
    return "\n".join(
        [
            "| figure | measured | baseline (same run) | target | verdict |",
            "|---|---|---|---|---|",
            f"| `dpps serve` RSS at rest | {r['rss_at_rest_mib']:.0f} MiB | {base} "
            f"({r['rest_over_baseline']:.2f}x) | < 150 MiB | {r['verdict']['rss_at_rest_mib']} |",
            f"| RSS after registering {r['files']:,} files over REST | "
            f"{r['rss_after_files_mib']:.0f} MiB | - | - | info |",
            f"| RSS after {r['requests']:,} more API requests | "
            f"{r['rss_after_requests_mib']:.0f} MiB | - | - | info |",
            f"| growth, at rest to the end | {r['growth_mib']:.1f} MiB | - | < 50 MiB | "
            f"{r['verdict']['growth_mib']} |",
            f"| (REST registration during the run: {r['register_files_per_s']:,.0f} files/s) "
            "| | | | |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1_000_000, help="files registered")
    parser.add_argument("--requests", type=int, default=10_000, help="API requests")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = run(args.files, args.requests)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
