"""Catalog benchmarks: bulk registration rate, selective metadata queries at 1M files, locate.

Each figure is printed next to a baseline measured in the same run on the same database:
registration against raw multi-row INSERTs of the same rows (what the database alone costs),
queries and locate against the floors of the foundation issue.

    python benchmarks/bench_catalog.py [--files 20000] [--query-files 1000000] [--postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from dpps.bdms.archive import Archive
from dpps.catalog.dids import NewFile
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, ReplicaRow

CHUNK = 500
QUERIES = [
    "obs_id>={lo} and obs_id<{hi} and data_level=DL0",
    "observing_night={night}",
    "tel_id in (1,2) and obs_id={obs}",
    "name like /ctao/dl0/north/{y}/{m:02d}/{d:02d}/obs_{obs:07d}/%",
    "data_level=DL1 and category=B and observing_night={night}",
]


def _files(n: int, rse_id: int, offset: int = 0) -> list[NewFile]:
    night0 = dt.date(2026, 1, 1)
    out = []
    for i in range(offset, offset + n):
        obs = i // 100
        night = night0 + dt.timedelta(days=obs // 50)
        name = (
            f"/ctao/dl0/north/{night:%Y/%m/%d}/obs_{obs:07d}/"
            f"tel_{i % 4 + 1:03d}_chunk_{i % 25:03d}.fits.fz"
        )
        out.append(
            NewFile(
                scope="ctao",
                name=name,
                bytes=1_500_000_000 + i,
                rse_id=rse_id,
                checksums={"adler32": f"{i & 0xFFFFFFFF:08x}", "blake3": f"{i:064x}"},
                path=f"ctao{name}",
                columns={
                    "data_level": "DL0" if i % 10 else "DL1",
                    "category": "A" if i % 3 else "B",
                    "obs_id": obs,
                    "tel_id": i % 4 + 1,
                    "observing_night": night,
                    "time_start": dt.datetime(night.year, night.month, night.day, 22),
                    "product_type": "events",
                },
                meta={"sb_id": obs // 10, "zenith": (i % 60) + 0.5, "run_type": "science"},
            )
        )
    return out


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
        "n": len(ordered),
    }


@contextmanager
def _archive(catalog_url: str | None) -> Iterator[Archive]:
    with (
        tempfile.TemporaryDirectory(prefix="dpps-bench-") as tmp,
        Archive.init(Path(tmp) / "ws", catalog_url=catalog_url) as archive,
    ):
        yield archive


def bench_registration(new_url: Callable[[], str | None], n_files: int) -> dict[str, Any]:
    """Archive.register (dedup lookup, DIDs, replicas, events) vs raw INSERTs of the same rows."""
    with _archive(new_url()) as archive:
        rse_id = archive.rse_id("CTAO-N")
        files = _files(n_files, rse_id)
        t0 = time.perf_counter()
        for start in range(0, n_files, CHUNK):
            outcomes = archive.register(files[start : start + CHUNK])
            assert all(o.status == "registered" for o in outcomes)
        ours = time.perf_counter() - t0
    with _archive(new_url()) as archive:
        rse_id = archive.rse_id("CTAO-N")
        files = _files(n_files, rse_id)
        t0 = time.perf_counter()
        for start in range(0, n_files, CHUNK):
            _raw_insert(archive, files[start : start + CHUNK], start)
        raw = time.perf_counter() - t0
    return {
        "files": n_files,
        "files_per_s": n_files / ours,
        "raw_insert_files_per_s": n_files / raw,
        "ratio_to_raw": raw / ours,
    }


def _raw_insert(archive: Archive, chunk: list[NewFile], first_id: int) -> None:
    """The floor: DID and replica rows written with no lookups and no events."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with transaction(archive.sessions) as session:
        ids = session.scalars(
            insert(DIDRow).returning(DIDRow.id, sort_by_parameter_order=True),
            [
                {
                    "scope": f.scope,
                    "name": f.name,
                    "version": 1,
                    "is_latest": True,
                    "did_type": "FILE",
                    "bytes": f.bytes,
                    "adler32": f.checksums["adler32"],
                    "blake3": f.checksums["blake3"],
                    "checksums": {},
                    "meta": dict(f.meta),
                    "created_at": now,
                    "updated_at": now,
                    **f.columns,
                }
                for f in chunk
            ],
        ).all()
        session.execute(
            insert(ReplicaRow),
            [
                {
                    "did_id": i,
                    "rse_id": f.rse_id,
                    "state": "AVAILABLE",
                    "path": f.path,
                    "bytes": f.bytes,
                    "lock_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i, f in zip(ids, chunk, strict=True)
            ],
        )


def bench_query_and_locate(
    catalog_url: str | None, n_files: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    with _archive(catalog_url) as archive:
        rse_id = archive.rse_id("CTAO-N")
        t0 = time.perf_counter()
        step = 20_000
        for start in range(0, n_files, step):
            _raw_insert(archive, _files(step, rse_id, start), start)
            if start % 200_000 == 0:
                progress(f"  filled {start + step:,} / {n_files:,} rows")
        fill = time.perf_counter() - t0
        with archive.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        rng = random.Random(42)
        n_obs = n_files // 100
        samples: dict[str, list[float]] = {q: [] for q in QUERIES}
        matches: dict[str, list[int]] = {q: [] for q in QUERIES}
        for _ in range(40):
            for template in QUERIES:
                obs = rng.randrange(n_obs)
                night = dt.date(2026, 1, 1) + dt.timedelta(days=obs // 50)
                text = template.format(
                    lo=obs,
                    hi=obs + 5,
                    obs=obs,
                    night=night,
                    y=night.year,
                    m=night.month,
                    d=night.day,
                )
                t = time.perf_counter()
                found = archive.list_files(text, limit=100)
                samples[template].append(time.perf_counter() - t)
                matches[template].append(len(found))
        locate: list[float] = []
        names = [f.name for f in _files(200, rse_id, rng.randrange(n_files - 200))]
        for name in names:
            t = time.perf_counter()
            loc = archive.locate(f"ctao:{name}")
            locate.append(time.perf_counter() - t)
            assert loc.available
        all_samples = [s for v in samples.values() for s in v]
        return {
            "files": n_files,
            "fill_seconds": fill,
            "query": _percentiles(all_samples),
            "per_query": {
                q: {**_percentiles(samples[q]), "mean_matches": statistics.mean(matches[q])}
                for q in QUERIES
            },
            "locate": _percentiles(locate),
        }


def run(n_files: int, query_files: int, postgres: bool, quiet: bool) -> dict[str, Any]:
    say = (lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr))
    results: dict[str, Any] = {}
    backends: list[tuple[str, Callable[[], str | None]]] = [("sqlite", lambda: None)]
    server = None
    if postgres:
        from dpps.testing.postgres import TemporaryPostgres

        server = TemporaryPostgres(Path(tempfile.mkdtemp(prefix="dpps-bench-pg-")))
        server.start()
        backends.append(("postgresql", server.create_database))
    try:
        for backend, new_url in backends:
            say(f"[{backend}] registration of {n_files:,} files")
            results[f"registration_{backend}"] = bench_registration(new_url, n_files)
            if query_files:
                url = new_url()
                say(f"[{backend}] query/locate at {query_files:,} files")
                results[f"query_{backend}"] = bench_query_and_locate(url, query_files, say)
    finally:
        if server is not None:
            server.stop()
    return results


def render(results: dict[str, Any]) -> str:
    lines = [
        "| benchmark | figure | baseline (same run) | ratio | floor | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        if key.startswith("registration_"):
            ok = key.endswith("sqlite") and r["files_per_s"] >= 5000
            floor = ">= 5,000 files/s" if key.endswith("sqlite") else "-"
            verdict = ("PASS" if ok else "FAIL") if key.endswith("sqlite") else "-"
            lines.append(
                f"| {key} ({r['files']:,} files) | {r['files_per_s']:,.0f} files/s | "
                f"raw INSERT {r['raw_insert_files_per_s']:,.0f} files/s | "
                f"{r['ratio_to_raw']:.2f}x | {floor} | {verdict} |"
            )
        else:
            q, loc = r["query"], r["locate"]
            lines.append(
                f"| {key} metadata query ({r['files']:,} files) | p50 "
                f"{q['p50_ms']:.1f} ms, p95 {q['p95_ms']:.1f} ms | - | - | "
                f"p50 < 50 ms | {'PASS' if q['p50_ms'] < 50 else 'FAIL'} |"
            )
            lines.append(
                f"| {key} locate ({r['files']:,} files) | p50 {loc['p50_ms']:.2f} ms, "
                f"p95 {loc['p95_ms']:.2f} ms | - | - | < 1 s | "
                f"{'PASS' if loc['p50_ms'] < 1000 else 'FAIL'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=20_000, help="files to register")
    parser.add_argument(
        "--query-files",
        type=int,
        default=1_000_000,
        help="catalog size for the query/locate benchmark (0 to skip)",
    )
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    results = run(args.files, args.query_files, args.postgres, args.json)
    print(json.dumps(results, indent=2) if args.json else render(results))


if __name__ == "__main__":
    main()
