"""Is hashing while copying cheap enough? Checksum throughput against the real ``cp``.

The archive computes adler32 and BLAKE3 on every ingest and every transfer, so the floor is:
one checksum pass over a file must run at >= 0.7x the speed of copying it with ``cp`` on the
same machine in the same run (page cache warm for both; nothing is dropped from the cache).

Usage: python benchmarks/bench_checksum.py [--size-mib 1024] [--json] [--repeat 3]
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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from dpps.storage.checksums import DEFAULT_CHUNK_SIZE, checksum_file, copy_with_checksums

FLOOR = 0.7
PAIR = ("adler32", "blake3")
SINGLE = ("adler32", "blake3", "sha256", "md5")


def _write_random(path: Path, size_mib: int) -> None:
    block = 64 * 1024 * 1024
    remaining = size_mib * 1024 * 1024
    with open(path, "wb") as f:
        while remaining:
            n = min(block, remaining)
            f.write(os.urandom(n))
            remaining -= n


def _nothing() -> None:
    pass


def _time(action: Callable[[], object], cleanup: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    cleanup()
    return seconds


def run(size_mib: int = 1024, repeat: int = 3) -> dict[str, Any]:
    """Measure and return {"size_mib", "results": [{name, best_mb_s, median_mb_s, ratio}], ...}."""
    nbytes = size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="dpps-bench-") as tmp:
        src, dst = Path(tmp) / "data.bin", Path(tmp) / "copy.bin"
        _write_random(src, size_mib)

        def unlink() -> None:
            dst.unlink(missing_ok=True)

        def cp() -> None:
            subprocess.run(["cp", str(src), str(dst)], check=True)

        def copy_hash() -> None:
            with open(src, "rb", buffering=0) as s, open(dst, "wb") as d:
                copy_with_checksums(s, d, PAIR)

        cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            ("cp", cp, unlink),
            ("checksum adler32+blake3", partial(checksum_file, src, PAIR), _nothing),
        ]
        cases += [(f"checksum {a}", partial(checksum_file, src, [a]), _nothing) for a in SINGLE]
        cases.append(("copy_with_checksums adler32+blake3", copy_hash, unlink))

        cp()  # warm the page cache (and the destination's allocation path)
        unlink()
        # Rounds interleave the operations, so a neighbour's load hits cp and us alike.
        seconds: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        for _ in range(repeat):
            for name, action, cleanup in cases:
                seconds[name].append(_time(action, cleanup))
    results: list[dict[str, Any]] = [
        {
            "name": name,
            "best_mb_s": nbytes / min(times) / 1e6,
            "median_mb_s": nbytes / statistics.median(times) / 1e6,
        }
        for name, times in seconds.items()
    ]
    cp_best = results[0]["best_mb_s"]
    for r in results:
        r["ratio_to_cp"] = r["best_mb_s"] / cp_best
    pair = results[1]
    return {
        "size_mib": size_mib,
        "repeat": repeat,
        "chunk_size": DEFAULT_CHUNK_SIZE,
        "cpus": os.cpu_count(),
        "results": results,
        "floor": {
            "what": "checksum adler32+blake3 best >= 0.7 x cp best",
            "ratio": pair["ratio_to_cp"],
            "median_ratio": pair["median_mb_s"] / results[0]["median_mb_s"],
            "pass": pair["ratio_to_cp"] >= FLOOR,
        },
    }


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"checksum throughput, {report['size_mib']} MiB file in page cache, "
        f"best/median of {report['repeat']}, {report['cpus']} CPUs"
    )
    for col in ("operation", "best MB/s", "median MB/s", "best / cp"):
        table.add_column(col, justify="left" if col == "operation" else "right")
    for r in report["results"]:
        table.add_row(
            r["name"],
            f"{r['best_mb_s']:,.0f}",
            f"{r['median_mb_s']:,.0f}",
            f"{r['ratio_to_cp']:.2f}x",
        )
    console = Console()
    console.print(table)
    floor = report["floor"]
    verdict = "[green]PASS[/]" if floor["pass"] else "[red]FAIL[/]"
    console.print(
        f"floor: {floor['what']}: {floor['ratio']:.2f}x -> {verdict} "
        f"(medians: {floor['median_ratio']:.2f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the test file")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per operation")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    report = run(args.size_mib, args.repeat)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0 if report["floor"]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
