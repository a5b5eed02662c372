"""Does the ``dpps`` command start fast? Wall time of a few commands against ``python -c pass``.

Every CLI command is a new process, so its start is paid at every call: operators coming from
Rucio type dozens a day, and scripts call it in loops. Targets (issue 14): ``dpps --version``
and ``dpps --help`` under 0.3 s, a query against the embedded catalog (``dpps ls``) under
0.7 s wall; they were 1.5-1.7 s when every command module was imported for each call. Each
command runs as a fresh process of this interpreter (``python -m dpps``), interleaved in rounds
with the baseline (an empty interpreter start, measured in the same run), so a neighbour's load
hits both alike; the table gives best and median wall time, the best as a ratio to the
baseline's, and how many modules the command imports (``-X importtime``). A second reference,
"libraries a query needs", imports SQLAlchemy's ORM, pydantic, Rich and Typer and nothing of
dpps: what is above it in ``dpps ls`` is dpps's own start.

``--compare SRC`` also runs the dpps commands with another version's source tree first on
``PYTHONPATH`` (e.g. ``git archive COMMIT src | tar -x -C /tmp/before``), in the same rounds:
before and after on the same machine in the same minutes.

Usage: python benchmarks/bench_cli_start.py [--repeat 7] [--compare SRC] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

#: What any query command must import, whatever dpps does: the floor under ``dpps ls``.
FLOOR = "import sqlalchemy.orm, sqlite3, pydantic, yaml, rich.table, typer.main, typer._adapters"

#: Targets on the best wall time, seconds (issue 14, deliverable 5).
TARGETS = {"dpps --version": 0.3, "dpps --help": 0.3, "dpps ls (embedded catalog)": 0.7}


def _workspace(root: Path, env: dict[str, str]) -> Path:
    """A workspace with two ingested files, made once and not timed."""
    from dpps.bdms.samples import write_fits_product

    ws = root / "ws"
    dpps = [sys.executable, "-m", "dpps"]
    subprocess.run([*dpps, "init", str(ws)], check=True, env=env, capture_output=True)
    for tel in (1, 2):
        write_fits_product(
            root / "in" / f"tel_{tel:03d}.fits",
            obs_id=42,
            tel_id=tel,
            night=date(2026, 11, 21),
            start=datetime(2026, 11, 21, 22),
        )
    files = [str(f) for f in sorted((root / "in").iterdir())]
    subprocess.run(
        [*dpps, "-w", str(ws), "ingest", *files, "--rse", "CTAO-N", "--lfn-prefix", "/ctao/dl0/x"],
        check=True,
        env=env,
        capture_output=True,
    )
    return ws


def _wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _modules(argv: list[str], env: dict[str, str]) -> int:
    """How many modules the command imports (one ``-X importtime`` line each)."""
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    return sum(1 for line in proc.stderr.splitlines() if line.startswith("import time:")) - 1


def run(repeat: int = 7, compare: Path | None = None) -> dict[str, Any]:
    """Measure and return {"repeat", "results": [{name, best_s, median_s, ratio, ...}], ...}."""
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("DPPS_URL", None)
    # As installed: bytecode cached (the first run writes it), not compiled at every start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="dpps-bench-") as tmp:
        ws = _workspace(Path(tmp), env)
        py = sys.executable
        cases: dict[str, list[str]] = {
            "python -c pass (baseline)": [py, "-c", "pass"],
            "libraries a query needs": [py, "-c", FLOOR],
            "dpps --version": [py, "-m", "dpps", "--version"],
            "dpps --help": [py, "-m", "dpps", "--help"],
            "dpps rule --help": [py, "-m", "dpps", "rule", "--help"],
            "dpps ls (embedded catalog)": [py, "-m", "dpps", "-w", str(ws), "ls", "obs_id=42"],
            "dpps ls --json": [py, "-m", "dpps", "-w", str(ws), "ls", "obs_id=42", "--json"],
        }
        runs = [(name, argv, env) for name, argv in cases.items()]
        if compare is not None:
            path = os.pathsep.join([str(compare), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            other = {**env, "PYTHONPATH": path}
            runs += [
                (f"{name} [{compare}]", argv, other)
                for name, argv in cases.items()
                if name.startswith("dpps")
            ]
        for _name, argv, environ in runs:  # warm the page cache and the .pyc files
            _wall(argv, environ)
        seconds: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        for _ in range(repeat):
            for name, argv, environ in runs:
                seconds[name].append(_wall(argv, environ))
        modules = {name: _modules(argv, environ) for name, argv, environ in runs}
    baseline = min(seconds["python -c pass (baseline)"])
    results = [
        {
            "name": name,
            "best_s": min(times),
            "median_s": statistics.median(times),
            "ratio_to_baseline": min(times) / baseline,
            "modules": modules[name],
            "target_s": TARGETS.get(name),
            "pass": None if name not in TARGETS else min(times) < TARGETS[name],
        }
        for name, times in seconds.items()
    ]
    return {
        "repeat": repeat,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "results": results,
        "pass": all(r["pass"] for r in results if r["pass"] is not None),
    }


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    load = ", ".join(f"{x:.1f}" for x in report["load_average"])
    table = Table(
        title=f"dpps start, wall time, best/median of {report['repeat']} fresh processes, "
        f"{report['cpus']} CPUs, load {load}"
    )
    for col in ("command", "best s", "median s", "best / baseline", "modules", "target"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for r in report["results"]:
        verdict = ""
        if r["target_s"] is not None:
            colour = "green" if r["pass"] else "red"
            verdict = f"< {r['target_s']} s [{colour}]{'PASS' if r['pass'] else 'FAIL'}[/]"
        table.add_row(
            Text(r["name"]),  # "[/tmp/before/src]" (--compare) is a path, not markup
            f"{r['best_s']:.3f}",
            f"{r['median_s']:.3f}",
            f"{r['ratio_to_baseline']:.1f}x",
            str(r["modules"]),
            verdict,
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=7, help="measurements per command")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--compare", type=Path, help="another version's src/ directory, measured alongside"
    )
    args = parser.parse_args(argv)
    report = run(args.repeat, args.compare)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
