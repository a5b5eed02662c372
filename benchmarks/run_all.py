"""Run every benchmark in this directory, one after another, and print their tables.

    .venv/bin/python benchmarks/run_all.py [--only checksum,catalog] [--json]

Each ``bench_<name>.py`` runs in its own process (so one benchmark's caches and threads do not
colour the next) with its default sizes; each prints its figures next to the baseline it
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="comma-separated names (e.g. checksum,catalog)")
    parser.add_argument("--json", action="store_true", help="collect every result as JSON")
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
        cmd = [sys.executable, str(script), *(["--json"] if args.json else [])]
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
