"""Run every benchmark in this directory, one after another, and print their tables.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only checksum,catalog] [--json]

Each ``bench_<name>.py`` runs in its own process (so one benchmark's caches and threads do not
colour the next) with its default sizes; each prints its figures next to the baseline it
measured in the same run. ``--quick`` runs every benchmark at small sizes (a few minutes in
all), so that anyone can rerun all of them after a change; the figures of record in
docs/performance.md come from the default sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Small sizes per benchmark for --quick: the same code paths, a fraction of the work. A
# benchmark missing here runs with its defaults.
QUICK: dict[str, list[str]] = {
    "acada": ["--small", "60", "--latency-files", "10", "--big-gib", "0.25"],
    "api": ["--files", "2000", "--clients", "10", "--per-client", "10"],
    "calibpipe": ["--events", "100", "--rounds", "1"],
    "catalog": ["--files", "5000", "--query-files", "100000"],
    "catalog_scale": ["--files", "100000", "--rule-files", "20000", "--queries", "30"],
    "checksum": ["--size-mib", "128", "--repeat", "2"],
    "copy": ["--large-files", "2", "--large-mb", "64", "--rounds", "2", "--small-files", "2000"],
    "memory": ["--files", "20000", "--requests", "2000"],
    "migration_bigint": ["--events", "100000"],
    "cli_start": ["--repeat", "3"],
    "pipelines": ["--showers", "150"],
    "preservation": ["--files", "300", "--kib", "64"],
    "replication": ["--small-files", "5000", "--large-files", "2", "--large-mb", "64"],
    "rest_cpu": ["--files", "1000", "--requests", "50", "--rounds", "2"],
    "wms": ["--jobs", "60", "--files", "1000", "--dask-jobs", "30"],
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="comma-separated names (e.g. checksum,catalog)")
    parser.add_argument("--json", action="store_true", help="collect every result as JSON")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes in all)")
    args = parser.parse_args()
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    scripts = sorted(HERE.glob("bench_*.py"))
    if wanted:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    results: dict[str, object] = {}
    status = 0
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        started = time.perf_counter()
        sizes = QUICK.get(name, []) if args.quick else []
        cmd = [sys.executable, str(script), *sizes, *(["--json"] if args.json else [])]
        if not args.json:
            print(f"\n## {name}\n", flush=True)
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE if args.json else None, text=True, check=False
        )
        if proc.returncode != 0:
            status = 1
            print(f"benchmark {name} failed with exit code {proc.returncode}", file=sys.stderr)
        elif args.json:
            results[name] = json.loads(proc.stdout)
        if not args.json:
            print(f"\n({name}: {time.perf_counter() - started:.0f} s)", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
