"""Catalog benchmarks: bulk registration rate, selective metadata queries at 1M files, locate.

Each figure is printed next to a baseline measured in the same run on the same database:
registration (with metadata, a replica, its event and the attachment to a dataset) against
the raw bulk write of the same rows into the same tables with the same indexes - COPY on
PostgreSQL, the driver's executemany on SQLite, ids numbered by the benchmark, no look-up
(what the database alone costs); queries and locate against the floors of the foundation
issue. Registration and its baseline alternate on fresh catalogs, ``--rounds`` times each.

    python benchmarks/bench_catalog.py [--files 20000] [--rounds 3] [--query-files 1000000]
                                       [--postgres] [--rule]
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

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from dpps.bdms import registration
from dpps.bdms.archive import Archive
from dpps.catalog.dids import NewFile
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, ReplicaRow
from dpps.core.identifiers import DID

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


def bench_registration(
    new_url: Callable[[], str | None], n_files: int, rounds: int = 3, rule: bool = False
) -> dict[str, Any]:
    """Registration (look-up, DIDs with metadata, replicas, events, attachment to a dataset)
    against the raw bulk write of the same rows into the same tables of a twin catalog. The
    two alternate chunk by chunk, so that other load on the machine hits both alike; medians
    of ``rounds`` rounds, each on fresh catalogs. ``rule``: the dataset lies in a container
    a rule covers, so registration also makes the rule due per chunk (the baseline does not:
    what that bookkeeping costs shows in the ratio)."""
    ours: list[float] = []
    raw: list[float] = []
    for _ in range(rounds):
        o, r = _round(new_url, n_files, rule)
        ours.append(o)
        raw.append(r)
    ours_s, raw_s = statistics.median(ours), statistics.median(raw)
    return {
        "files": n_files,
        "rounds": rounds,
        "files_per_s": n_files / ours_s,
        "raw_files_per_s": n_files / raw_s,
        "ratio_to_raw": raw_s / ours_s,
        "ratios_per_round": [round(r / o, 3) for o, r in zip(ours, raw, strict=True)],
    }


def _dataset(archive: Archive, rule: bool = False) -> int:
    """The benchmark's dataset, in the container /ctao/bench; with ``rule``, a rule on that
    container covers it."""
    with transaction(archive.sessions) as session:
        dataset = registration.ensure_dataset(
            session, DID("ctao", "/ctao/bench/dataset"), account=archive.account, tree_root="/ctao"
        )
    if rule:
        archive.add_rule("ctao:/ctao/bench", copies=1, rses="PIC")
    return dataset


def _round(new_url: Callable[[], str | None], n_files: int, rule: bool) -> tuple[float, float]:
    """Seconds spent registering ``n_files`` and writing the same rows raw."""
    with _archive(new_url()) as ours, _archive(new_url()) as twin:
        files = _files(n_files, ours.rse_id("CTAO-N"))
        assert twin.rse_id("CTAO-N") == ours.rse_id("CTAO-N")
        dataset, twin_dataset = _dataset(ours, rule), _dataset(twin)
        with twin.sessions() as session:
            first = (session.scalar(select(func.max(DIDRow.id))) or 0) + 1
        spent = [0.0, 0.0]
        for start in range(0, n_files, CHUNK):
            chunk = files[start : start + CHUNK]
            t0 = time.perf_counter()
            with transaction(ours.sessions) as session:
                outcomes = registration.register(session, chunk, account="root", dataset=dataset)
            t1 = time.perf_counter()
            with transaction(twin.sessions) as session:
                _raw_write(session, chunk, first + start, twin_dataset)
            t2 = time.perf_counter()
            assert all(o.status == "registered" for o in outcomes)
            spent[0] += t1 - t0
            spent[1] += t2 - t1
        return spent[0], spent[1]


DID_COLUMNS = [
    "id",
    "scope",
    "name",
    "version",
    "is_latest",
    "did_type",
    "bytes",
    "adler32",
    "blake3",
    "checksums",
    "data_level",
    "category",
    "obs_id",
    "tel_id",
    "observing_night",
    "time_start",
    "time_end",
    "product_type",
    "meta",
    "created_at",
    "updated_at",
]
REPLICA_COLUMNS = [
    "did_id",
    "rse_id",
    "state",
    "path",
    "bytes",
    "lock_count",
    "created_at",
    "updated_at",
    "last_verified_at",
]
EVENT_COLUMNS = ["ts", "account", "action", "did_id", "rse_id", "details"]
ATTACHMENT_COLUMNS = ["parent_id", "child_id", "created_at"]


def _raw_write(session: Session, chunk: list[NewFile], first_id: int, dataset: int) -> None:
    """The floor: the rows registration writes (DIDs, replicas, events, attachments), with ids
    numbered here, written by the driver's own bulk path - COPY on PostgreSQL, executemany on
    SQLite - with no look-up, no ORM and no SQLAlchemy statement."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    dids, replicas, events, attachments = [], [], [], []
    for did_id, f in enumerate(chunk, first_id):
        c = f.columns
        dids.append(
            (
                *(did_id, f.scope, f.name, 1, True, "FILE", f.bytes, f.checksums["adler32"]),
                *(f.checksums["blake3"], "{}", c.get("data_level"), c.get("category")),
                *(c.get("obs_id"), c.get("tel_id"), c.get("observing_night")),
                *(c.get("time_start"), c.get("time_end"), c.get("product_type")),
                *(json.dumps(dict(f.meta)), now, now),
            )
        )
        replicas.append((did_id, f.rse_id, "AVAILABLE", f.path, f.bytes, 0, now, now, now))
        details = {"version": 1, "bytes": f.bytes, "path": f.path, **f.checksums}
        events.append((now, "root", "file.register", did_id, f.rse_id, json.dumps(details)))
        attachments.append((dataset, did_id, now))
    raw: Any = session.connection().connection.driver_connection
    postgres = session.get_bind().dialect.name == "postgresql"
    for table, columns, rows in (
        ("dids", DID_COLUMNS, dids),
        ("replicas", REPLICA_COLUMNS, replicas),
        ("events", EVENT_COLUMNS, events),
        ("attachments", ATTACHMENT_COLUMNS, attachments),
    ):
        names = ", ".join(columns)
        if postgres:
            with raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(columns))
            raw.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks})", [_sqlite(r) for r in rows]
            )


def _sqlite(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Dates and times as SQLAlchemy stores them in SQLite (ISO text; no sqlite3 adapter)."""
    return tuple(
        v.isoformat(" ")
        if isinstance(v, dt.datetime)
        else v.isoformat()
        if isinstance(v, dt.date)
        else v
        for v in row
    )


def _raw_insert(archive: Archive, chunk: list[NewFile], first_id: int) -> None:
    """A fast fill for the query benchmark: DID and replica rows, no look-ups, no events."""
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


def run(
    n_files: int,
    query_files: int,
    postgres: bool,
    quiet: bool,
    rounds: int = 3,
    rule: bool = False,
) -> dict[str, Any]:
    say: Callable[[str], None] = (
        (lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr))
    )
    results: dict[str, Any] = {}
    backends: list[tuple[str, Callable[[], str | None]]] = [("sqlite", lambda: None)]
    server = None
    if postgres:
        from dpps.testing.postgres import TemporaryPostgres

        server = TemporaryPostgres()
        server.start()
        backends.append(("postgresql", server.create_database))
    try:
        for backend, new_url in backends:
            say(f"[{backend}] registration of {n_files:,} files")
            results[f"registration_{backend}"] = bench_registration(new_url, n_files, rounds)
            if rule:
                say(f"[{backend}] registration of {n_files:,} files into a ruled dataset")
                results[f"registration_{backend}_ruled"] = bench_registration(
                    new_url, n_files, rounds, rule=True
                )
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
            raw = "COPY" if "postgresql" in key else "executemany"
            ok = r["files_per_s"] >= 5000 and r["ratio_to_raw"] >= 0.8
            lines.append(
                f"| {key} ({r['files']:,} files, median of {r['rounds']}) | "
                f"{r['files_per_s']:,.0f} files/s | "
                f"raw {raw} {r['raw_files_per_s']:,.0f} files/s | "
                f"{r['ratio_to_raw']:.2f}x (rounds {', '.join(map(str, r['ratios_per_round']))}) "
                "| "
                f">= 5,000 files/s and >= 0.8x | {'PASS' if ok else 'FAIL'} |"
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
    parser.add_argument("--rounds", type=int, default=3, help="registration rounds (median)")
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument(
        "--rule",
        action="store_true",
        help="also register into a dataset a rule covers (the rule made due per chunk)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    results = run(
        args.files, args.query_files, args.postgres, args.json, args.rounds, rule=args.rule
    )
    print(json.dumps(results, indent=2) if args.json else render(results))


if __name__ == "__main__":
    main()
