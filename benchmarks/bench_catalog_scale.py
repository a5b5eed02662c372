"""The catalog at production scale on PostgreSQL: build N files, then measure what users wait for.

The catalog is built through the real registration path (``bdms.registration.register``: the
look-up, DIDs with the observatory's metadata keys, the on-site replica, the ``file.register``
event, the attachment to the observation's dataset - COPY underneath), one observation per
transaction: 1,000 files per observation (900 DL0 files of 25 telescopes x 3 streams x 12
chunks in the DL0 dataset, 100 DL1 files in the DL1 dataset), observations alternating
between CTAO-North and CTAO-South, 20 per site and night. Each file then gets one or two
off-site copies (CSCS, DESY, FRASCATI, PIC; 2.5 replicas per file on average) with their
``transfer.done`` events, written with ``catalog.bulk`` as the transfer daemon's outcome
would leave them (not through the daemon: copying bytes is bench_replication's business).

Measured, on a warm cache (every query set is run once untimed, then timed), after
``VACUUM ANALYZE`` (the steady state autovacuum keeps):

* selective metadata queries, five filter shapes, ``Archive.list_files(..., limit=100)``,
  against the same SQL sent raw through psycopg (what the database alone costs);
  floors p50 < 20 ms and p95 < 100 ms;
* ``Archive.locate`` of random files against the raw look-up of the same rows (DID by name
  joined to its replicas); floor p95 < 10 ms;
* rule evaluation over a 100,000-file dataset (every lock and transfer queued) against raw
  INSERTs of the same rows (bench_replication's baseline); floor >= 5,000 files/s;
* bytes on disk per file: table + indexes (``pg_total_relation_size``) per table / N.

The build is long (hours at 10M on two cores): ``--keep DIR`` keeps the server's data and
``--reuse DIR`` measures it again (and extends it to ``--files`` if it holds fewer), so that
an index experiment needs no rebuild; ``--measure-at`` also measures at intermediate sizes
during the build. The server is a private PostgreSQL 15 (``dpps.testing.postgres``), stopped
by its PID at the end.

    python benchmarks/bench_catalog_scale.py [--files 10000000] [--measure-at 1000000,3000000]
        [--keep DIR | --reuse DIR] [--queries 100] [--locates 500] [--rule-files 100000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
from bench_catalog import _percentiles
from bench_replication import _raw_rows
from sqlalchemy import Table, delete, select, text
from sqlalchemy.dialects import postgresql

from dpps.bdms import registration
from dpps.bdms.archive import Archive
from dpps.bdms.replication import evaluator
from dpps.catalog import attachments as attachment_repo
from dpps.catalog import bulk, events
from dpps.catalog import dids as did_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import AttachmentRow, DIDRow, RuleLockRow, RuleRow, TransferRow
from dpps.catalog.query import select_dids
from dpps.core.daemon import DaemonContext
from dpps.core.identifiers import DID
from dpps.core.states import DIDType
from dpps.testing.postgres import TemporaryPostgres

Say = Callable[[str], None]

FILES_PER_OBS = 1000
DL0_PER_OBS = 900
TELESCOPES = 25
STREAMS = ("SHOWER", "CAL", "MUON")
OBS_PER_NIGHT = 40  # both sites together
NIGHT0 = dt.date(2026, 1, 1)
OFFSITE = ("CSCS", "DESY", "FRASCATI", "PIC")
DB_NAME = "catalog"
#: Server settings of a dedicated catalog host, scaled down to this shared machine.
SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "8GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "random_page_cost": "1.1",
}
#: The filter shapes users type; parameters drawn at random per query.
SHAPES = {
    "obs_id range + level": "obs_id>={obs} and obs_id<{obs5} and data_level=DL0",
    "observing night": "observing_night={night}",
    "level + telescope": "data_level=DL1 and tel_id={tel}",
    "name prefix": "name like {prefix}%",
    "night + telescope + stream": "observing_night={night} and tel_id={tel} and meta.datadiv=CAL",
}
FLOOR_P50_MS, FLOOR_P95_MS, FLOOR_LOCATE_MS, FLOOR_RULE = 20.0, 100.0, 10.0, 5000.0


# -- the files of an observation --------------------------------------------------------------


def obs_site(obs: int) -> str:
    return "north" if obs % 2 else "south"


def obs_night(obs: int) -> dt.date:
    return NIGHT0 + dt.timedelta(days=(obs - 1) // OBS_PER_NIGHT)


def obs_dir(obs: int, level: str) -> str:
    return f"/ctao/{obs_site(obs)}/{level.lower()}/{obs_night(obs):%Y/%m/%d}/obs_{obs:08d}"


def file_name(obs: int, i: int) -> str:
    """The LFN of file ``i`` (0..999) of observation ``obs``: the ACADA simulator's names."""
    stamp = f"{obs_night(obs):%Y%m%d}T2{obs % 4}0000_SBID{obs // 10:010d}_OBSID{obs:010d}"
    if i < DL0_PER_OBS:
        tel, stream, chunk = i // 36 + 1, STREAMS[(i // 12) % 3], i % 12
        leaf = f"TEL{tel:03d}_SDH001_{stamp}_TEL_{stream}_CHUNK{chunk:03d}.fits.fz"
        return f"{obs_dir(obs, 'DL0')}/{leaf}"
    j = i - DL0_PER_OBS
    return f"{obs_dir(obs, 'DL1')}/TEL{j // 4 + 1:03d}_{stamp}_DL1_PART{j % 4:02d}.h5"


def observation(obs: int, rse_ids: dict[str, int]) -> list[did_repo.NewFile]:
    """The 1,000 files of one observation with the metadata ingest extracts from them."""
    night = obs_night(obs)
    start = dt.datetime(night.year, night.month, night.day, 20 + obs % 4)
    onsite = rse_ids["CTAO-N" if obs_site(obs) == "north" else "CTAO-S"]
    out = []
    for i in range(FILES_PER_OBS):
        dl0 = i < DL0_PER_OBS
        tel = i // 36 + 1 if dl0 else (i - DL0_PER_OBS) // 4 + 1
        name = file_name(obs, i)
        serial = obs * FILES_PER_OBS + i
        digest = hashlib.blake2s(serial.to_bytes(8, "little")).hexdigest()
        size = (2_000_000_000 if dl0 else 300_000_000) + serial % 1_000_003
        meta: dict[str, Any] = {"sb_id": obs // 10, "site": obs_site(obs), "format": "fits"}
        if dl0:
            meta |= {"datadiv": STREAMS[(i // 12) % 3], "sdh_id": 1, "chunk_id": i % 12}
        else:
            meta |= {"format": "hdf5", "pipeline": "ctapipe 0.22"}
        out.append(
            did_repo.NewFile(
                scope="ctao",
                name=name,
                bytes=size,
                checksums={"adler32": digest[:8], "blake3": digest},
                rse_id=onsite,
                path=f"ctao{name}",
                columns={
                    "data_level": "DL0" if dl0 else "DL1",
                    "category": "A",
                    "obs_id": obs,
                    "tel_id": tel,
                    "observing_night": night,
                    "time_start": start,
                    "time_end": start + dt.timedelta(minutes=20),
                    "product_type": "EVENTS" if dl0 else "DL1_IMAGES",
                },
                meta=meta,
            )
        )
    return out


# -- the build ---------------------------------------------------------------------------------


def register_observation(archive: Archive, obs: int, rse_ids: dict[str, int]) -> None:
    """One observation in one transaction: registration proper, then the off-site copies."""
    files = observation(obs, rse_ids)
    replicas_table = cast(Table, did_repo.REPLICAS)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with transaction(archive.sessions) as session:
        datasets = {
            level: registration.ensure_dataset(
                session, DID("ctao", obs_dir(obs, level)), account="acada"
            )
            for level in ("DL0", "DL1")
        }
        targets = [datasets[f.columns["data_level"]] for f in files]
        outcomes = registration.register(session, files, account="acada", dataset=targets)
        copies, done = [], []
        for n, (f, o) in enumerate(zip(files, outcomes, strict=True)):
            if o.status != "registered" or o.did_id is None:
                raise RuntimeError(f"{f.name}: {o.status} ({o.detail})")
            serial = obs * FILES_PER_OBS + n
            for k in range(1 + serial % 2):
                rse = rse_ids[OFFSITE[(serial + 2 * k) % len(OFFSITE)]]
                copies.append(
                    (o.did_id, rse, "AVAILABLE", f.path, f.bytes, 0, now, now, now, None)
                )
                done.append(
                    {
                        "account": "transfer",
                        "action": "transfer.done",
                        "did_id": o.did_id,
                        "rse_id": rse,
                        "details": {"bytes": f.bytes, "path": f.path, "source": f.rse_id},
                    }
                )
        bulk.insert_values(session, replicas_table, did_repo.REPLICA_COLUMNS, copies)
        events.record_many(session, done)


def build(
    archive: Archive,
    state: Path,
    target: int,
    at: Callable[[int], None],
    checkpoints: Sequence[int],
    say: Say,
) -> int:
    """Extend the catalog to ``target`` files (whole observations); ``at(n)`` runs at each
    checkpoint passed. Returns the files the catalog holds."""
    built = json.loads(state.read_text())["files"] if state.exists() else 0
    rse_ids = _rse_ids(archive)
    t0, start = time.perf_counter(), built
    last = t0
    while built < target:
        obs = built // FILES_PER_OBS + 1
        register_observation(archive, obs, rse_ids)
        built += FILES_PER_OBS
        state.write_text(json.dumps({"files": built}))
        now = time.perf_counter()
        if now - last >= 30 or built >= target:
            rate = (built - start) / (now - t0)
            eta = (target - built) / rate if rate else 0.0
            say(
                f"  built {built:,} / {target:,} files ({rate:,.0f} files/s, "
                f"~{eta / 60:.0f} min left)"
            )
            last = now
        if built in checkpoints:
            at(built)
    return built


def _rse_ids(archive: Archive) -> dict[str, int]:
    with archive.sessions() as session:
        return registration.rse_ids(session)


# -- measurements ------------------------------------------------------------------------------


def _params(rng: random.Random, n_obs: int) -> dict[str, Any]:
    obs = rng.randrange(1, n_obs + 1)
    return {
        "obs": obs,
        "obs5": obs + 5,
        "night": obs_night(obs),
        "tel": rng.randrange(1, TELESCOPES + 1),
        "prefix": obs_dir(obs, "DL0") + "/TEL0",
    }


def measure_queries(
    archive: Archive, raw: psycopg.Connection[Any], n_files: int, per_shape: int, seed: int
) -> dict[str, Any]:
    """Each shape through ``list_files`` and as the same SQL sent raw, alternating."""
    rng = random.Random(seed)
    n_obs = n_files // FILES_PER_OBS
    plans = {
        name: [shape.format(**_params(rng, n_obs)) for _ in range(per_shape)]
        for name, shape in SHAPES.items()
    }
    out: dict[str, Any] = {}
    dialect = postgresql.psycopg.dialect()  # type: ignore[attr-defined]
    for name, filters in plans.items():
        ours: list[float] = []
        base: list[float] = []
        found: list[int] = []
        for timed in (False, True):  # the first pass warms the cache
            for text_ in filters:
                compiled = select_dids(text_, limit=100).compile(dialect=dialect)
                t0 = time.perf_counter()
                rows = archive.list_files(text_, limit=100)
                t1 = time.perf_counter()
                raw.execute(str(compiled), compiled.params).fetchall()
                t2 = time.perf_counter()
                if timed:
                    ours.append(t1 - t0)
                    base.append(t2 - t1)
                    found.append(len(rows))
        out[name] = {
            "filter": SHAPES[name],
            "ours": _percentiles(ours),
            "raw": _percentiles(base),
            "mean_matches": sum(found) / len(found),
        }
    return out


LOCATE_SQL = (
    "SELECT d.id, d.bytes, r.rse_id, r.state, r.path FROM dids d "
    "JOIN replicas r ON r.did_id = d.id "
    "WHERE d.scope = %s AND d.name = %s AND d.is_latest AND d.did_type = 'FILE'"
)


def measure_locate(
    archive: Archive, raw: psycopg.Connection[Any], n_files: int, count: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    n_obs = n_files // FILES_PER_OBS
    names = [
        file_name(rng.randrange(1, n_obs + 1), rng.randrange(FILES_PER_OBS)) for _ in range(count)
    ]
    ours: list[float] = []
    base: list[float] = []
    for timed in (False, True):
        for name in names:
            t0 = time.perf_counter()
            loc = archive.locate(DID("ctao", name))
            t1 = time.perf_counter()
            rows = raw.execute(LOCATE_SQL, ("ctao", name)).fetchall()
            t2 = time.perf_counter()
            if not loc.available or len(loc.replicas) != len(rows) or len(rows) < 2:
                raise RuntimeError(f"{name}: {len(loc.replicas)} replicas, raw {len(rows)}")
            if timed:
                ours.append(t1 - t0)
                base.append(t2 - t1)
    return {"ours": _percentiles(ours), "raw": _percentiles(base)}


def measure_rule(archive: Archive, n_files: int, rule_files: int, seed: int) -> dict[str, Any]:
    """A dataset of ``rule_files`` existing files (whole observations' DL0 datasets, attached
    through ``attachments.attach``), a rule for one tape copy (none exists: every file gets a lock
    and a transfer), one evaluator pass. Everything is removed afterwards (for ``--reuse``)."""
    n_obs = n_files // FILES_PER_OBS
    wanted = max(1, rule_files // DL0_PER_OBS)
    first = random.Random(seed).randrange(1, max(2, n_obs - wanted + 1))
    name = f"/ctao/bench/rule_{int(time.time())}"
    with transaction(archive.sessions) as session:
        ds = attachment_repo.get_or_create_collection(
            session, "ctao", name, DIDType.DATASET, account="bench"
        ).id
        for obs in range(first, first + wanted):
            parent = session.scalar(
                select(DIDRow.id).where(DIDRow.scope == "ctao", DIDRow.name == obs_dir(obs, "DL0"))
            )
            members = list(
                session.scalars(
                    select(AttachmentRow.child_id).where(AttachmentRow.parent_id == parent)
                )
            )
            attachment_repo.attach(session, ds, members, bump=False)
    files = wanted * DL0_PER_OBS
    rule_id = archive.add_rule(f"ctao:{name}", copies=1, rses="type=tape")
    t0 = time.perf_counter()
    evaluator.Evaluator(archive.context).run_once(DaemonContext("evaluator"))
    spent = time.perf_counter() - t0
    with archive.sessions() as session:
        queued = session.scalar(
            text("SELECT count(*) FROM transfers WHERE rule_id = :r"), {"r": rule_id}
        )
    if queued != files:
        raise RuntimeError(f"rule evaluation queued {queued} transfers for {files} files")
    raw = _raw_rows(archive, rule_id, 1)
    with transaction(archive.sessions) as session:
        rules = list(session.scalars(select(RuleRow.id).where(RuleRow.id >= rule_id)))
        for table in (TransferRow, RuleLockRow):
            session.execute(delete(table).where(table.rule_id.in_(rules)))
        session.execute(delete(RuleRow).where(RuleRow.id.in_(rules)))
        session.execute(delete(AttachmentRow).where(AttachmentRow.parent_id == ds))
    return {
        "files": files,
        "seconds": spent,
        "files_per_s": files / spent,
        "raw_files_per_s": files / raw,
        "ratio_to_raw": raw / spent,
    }


SIZE_SQL = """
SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid),
       pg_indexes_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 2 DESC
"""


def measure_sizes(raw: psycopg.Connection[Any], n_files: int) -> dict[str, Any]:
    tables = {
        name: {"total": total, "heap": heap, "indexes": idx, "per_file": total / n_files}
        for name, total, heap, idx in raw.execute(SIZE_SQL).fetchall()
        if total > 1_000_000
    }
    db = raw.execute("SELECT pg_database_size(current_database())").fetchone()
    counts = {
        t: raw.execute(f"SELECT reltuples::bigint FROM pg_class WHERE relname = '{t}'").fetchone()[
            0
        ]  # type: ignore[index]
        for t in ("dids", "replicas", "events", "attachments")
    }
    indexes = raw.execute(
        "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
        "WHERE indrelid = 'dids'::regclass ORDER BY 2 DESC"
    ).fetchall()
    return {
        "tables": tables,
        "dids_indexes": {name: size / n_files for name, size in indexes},
        "per_file_all_tables": sum(t["total"] for t in tables.values()) / n_files,
        "database_bytes": db[0] if db else 0,
        "rows": counts,
    }


def measure(
    archive: Archive, url_parts: dict[str, Any], n_files: int, args: argparse.Namespace, say: Say
) -> dict[str, Any]:
    say(f"[{n_files:,} files] VACUUM ANALYZE")
    with psycopg.connect(**url_parts, autocommit=True) as raw:
        raw.execute("VACUUM ANALYZE")
        say(f"[{n_files:,} files] queries, locate, rule, sizes")
        result = {
            "files": n_files,
            "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load": _load(),
            "queries": measure_queries(archive, raw, n_files, args.queries, args.seed),
            "locate": measure_locate(archive, raw, n_files, args.locates, args.seed),
            "sizes": measure_sizes(raw, n_files),
        }
    if args.rule_files and n_files >= args.rule_files:
        result["rule"] = measure_rule(archive, n_files, args.rule_files, args.seed)
    return result


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- output ------------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render(r: dict[str, Any]) -> str:
    n = r["files"]
    lines = [
        f"### {n:,} files ({r['at']}, load {r['load']})",
        "",
        "| figure | measured | baseline (same run) | ratio | floor | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for q in r["queries"].values():
        o, b = q["ours"], q["raw"]
        ok = o["p50_ms"] < FLOOR_P50_MS and o["p95_ms"] < FLOOR_P95_MS
        lines.append(
            f"| query `{q['filter']}` ({q['mean_matches']:.0f} rows) | p50 {o['p50_ms']:.1f} ms, "
            f"p95 {o['p95_ms']:.1f} ms | raw SQL p50 {b['p50_ms']:.1f} ms, "
            f"p95 {b['p95_ms']:.1f} ms | {o['p50_ms'] / max(b['p50_ms'], 1e-6):.2f}x | "
            f"p50 < 20 ms, p95 < 100 ms | {_verdict(ok)} |"
        )
    o, b = r["locate"]["ours"], r["locate"]["raw"]
    lines.append(
        f"| locate (n={o['n']}) | p50 {o['p50_ms']:.2f} ms, p95 {o['p95_ms']:.2f} ms | raw "
        f"look-up p50 {b['p50_ms']:.2f} ms, p95 {b['p95_ms']:.2f} ms | "
        f"{o['p95_ms'] / max(b['p95_ms'], 1e-6):.2f}x | p95 < 10 ms | "
        f"{_verdict(o['p95_ms'] < FLOOR_LOCATE_MS)} |"
    )
    if "rule" in r:
        ru = r["rule"]
        lines.append(
            f"| rule evaluation, {ru['files']:,}-file dataset | "
            f"{ru['files_per_s']:,.0f} files/s | "
            f"raw INSERT {ru['raw_files_per_s']:,.0f} files/s | {ru['ratio_to_raw']:.2f}x | "
            f">= 5,000 files/s | {_verdict(ru['files_per_s'] >= FLOOR_RULE)} |"
        )
    s = r["sizes"]
    lines.append(
        f"| bytes per file (tables + indexes) | {s['per_file_all_tables']:,.0f} B "
        "| - | - | - | info |"
    )
    lines += [
        "",
        "| table | rows | heap | indexes | total | per file |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in s["tables"].items():
        lines.append(
            f"| {name} | {s['rows'].get(name, 0):,} | {t['heap'] / 2**20:,.0f} MiB | "
            f"{t['indexes'] / 2**20:,.0f} MiB | {t['total'] / 2**20:,.0f} MiB | "
            f"{t['per_file']:,.0f} B |"
        )
    per_index = ", ".join(f"{k} {v:,.0f}" for k, v in s["dids_indexes"].items())
    lines += ["", f"Bytes per file of each index on dids: {per_index}."]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


@contextmanager
def _server(base: Path, fresh: bool) -> Iterator[tuple[TemporaryPostgres, dict[str, Any]]]:
    server = TemporaryPostgres(base / "pg", settings=SETTINGS)
    server.start()
    try:
        if fresh:
            server.create_database(DB_NAME)
        parts = {"host": "127.0.0.1", "port": server.port, "user": "postgres", "dbname": DB_NAME}
        yield server, parts
    finally:
        server.stop()


def run(args: argparse.Namespace, say: Say) -> list[dict[str, Any]]:
    if args.keep and args.reuse:
        raise SystemExit("give --keep DIR or --reuse DIR, not both")
    base = Path(args.reuse or args.keep or tempfile.mkdtemp(prefix="dpps-scale-"))
    if args.reuse and not (base / "state.json").exists():
        raise SystemExit(f"--reuse {base}: no catalog built there (no state.json)")
    if args.keep and (base / "state.json").exists():
        raise SystemExit(f"--keep {base}: a catalog is there already; use --reuse")
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    checkpoints = sorted({int(x) for x in args.measure_at.split(",") if x.strip()} - {args.files})
    results: list[dict[str, Any]] = []
    ws = Path(tempfile.mkdtemp(prefix="dpps-scale-ws-"))  # the workspace: configuration only
    try:
        with _server(base, fresh=not args.reuse) as (server, parts):
            url = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{DB_NAME}"
            with Archive.init(ws / "ws", catalog_url=url) as archive:

                def at(n: int) -> None:
                    results.append(measure(archive, parts, n, args, say))
                    say(render(results[-1]))

                say(f"building to {args.files:,} files in {base}")
                built = build(archive, base / "state.json", args.files, at, checkpoints, say)
                at(built)
    finally:
        shutil.rmtree(ws, ignore_errors=True)
        if not (args.keep or args.reuse):
            shutil.rmtree(base, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000_000, help="catalog size (files)")
    parser.add_argument(
        "--measure-at", default="", help="also measure at these sizes, e.g. 1000000,3000000"
    )
    parser.add_argument("--keep", default=None, help="build in DIR and keep it for --reuse")
    parser.add_argument("--reuse", default=None, help="measure (and extend) the catalog in DIR")
    parser.add_argument("--queries", type=int, default=100, help="queries per filter shape")
    parser.add_argument("--locates", type=int, default=500, help="locate calls")
    parser.add_argument(
        "--rule-files", type=int, default=100_000, help="rule dataset size (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.files < FILES_PER_OBS or args.files % FILES_PER_OBS:
        parser.error(f"--files must be a positive multiple of {FILES_PER_OBS}")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results = run(args, say)
    print(
        json.dumps(results, indent=2, default=str)
        if args.json
        else "\n\n".join(map(render, results))
    )
    failed = any("FAIL" in line for r in results[-1:] for line in render(r).splitlines())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
