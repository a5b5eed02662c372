"""How long migration 0008 (64-bit ids, issue 13) holds a live PostgreSQL catalog's tables.

``ALTER COLUMN ... TYPE bigint`` rewrites the table and rebuilds every index on it, under an
ACCESS EXCLUSIVE lock: nothing reads or writes the table meanwhile, so the operator needs to
know how long at their catalog's size. The catalog is built at revision 0007 with SQL
``generate_series`` (not the registration path: what is timed is the rewrite, which depends on
the rows, their width and the indexes, not on how they got there), in the proportions of the
production catalog per file: 2.5 events, 1.5 transfers and 2.5 rule locks per file, a stage
request per 10 files, a job and a workflow per 10 files with 4 job events and 2 job files each,
and a transformation file per 2 files. ``--events`` sets the size (files = events / 2.5).

Each widened table's ALTER is timed (the real migration through Alembic, each statement timed
as it runs) against the baseline measured in the same run, before it: ``VACUUM FULL`` of the
same table, the plain rewrite of the same rows and indexes with no change of type. The table
prints both, their ratio, the rows per second and the table's size (heap + indexes) before and
after. The server is a private PostgreSQL (``dpps.testing.postgres``), stopped by its PID.

    python benchmarks/bench_migration_bigint.py [--events 1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

from dpps.catalog.engine import make_engine, upgrade
from dpps.testing.postgres import TemporaryPostgres

#: Modest server settings: the machine is shared (index builds use maintenance_work_mem).
SETTINGS = {"shared_buffers": "512MB", "maintenance_work_mem": "256MB", "max_wal_size": "4GB"}

#: Rows per file of each table the migration widens, in the order it widens them.
PER_FILE = {
    "events": 2.5,
    "transfers": 1.5,
    "rule_locks": 2.5,
    "stage_requests": 0.1,
    "job_events": 0.4,
    "job_files": 0.2,
    "transformation_files": 0.5,
    "jobs": 0.1,
    "workflows": 0.1,
}

#: The fill, in dependency order; ``{n}`` is the table's row count, ``{files}`` the files'.
FILL = {
    "dids": """
        INSERT INTO dids (scope, name, version, is_latest, is_open, did_type, bytes, adler32,
            checksums, data_level, obs_id, tel_id, meta, created_at, updated_at)
        SELECT 'ctao', '/ctao/dl0/' || (g / 1000) || '/CTAO_TEL' || (g % 25) || '_OBS'
            || (g / 1000) || '_' || lpad(g::text, 10, '0') || '.fits.fz', 1, true, true,
            'FILE', 1000000, '0abc1234', '{{}}', 'DL0', g / 1000, g % 25,
            '{{"datadiv": "SHOWER"}}', now(), now()
        FROM generate_series(1, {files}) g""",
    "rses": """
        INSERT INTO rses (name, site, kind, onsite, url, attributes, available, created_at)
        SELECT 'RSE' || g, 'SITE' || g, 'disk', g = 1, 'file:///rse' || g, '{{}}', true, now()
        FROM generate_series(1, 4) g""",
    "rules": """
        INSERT INTO rules (did_id, account, rse_expression, copies, state, priority, activity,
            created_at, updated_at, locked, purge_replicas, generation, evaluated_generation)
        VALUES (1, 'root', 'RSE2|RSE3', 2, 'OK', 3, 'default', now(), now(), false, false,
            1, 1)""",
    "events": """
        INSERT INTO events (ts, account, action, did_id, rse_id, details)
        SELECT now() - g * interval '1 second', 'acada',
            CASE g % 5 WHEN 0 THEN 'transfer.done' ELSE 'file.register' END,
            1 + g % {files}, 1 + g % 4,
            json_build_object('bytes', 1000000, 'adler32', '0abc1234', 'path',
                '/ctao/dl0/' || g || '.fits.fz')
        FROM generate_series(1, {n}) g""",
    "transfers": """
        INSERT INTO transfers (did_id, dest_rse_id, source_rse_id, rule_id, state, activity,
            priority, bytes, attempts, max_attempts, next_attempt_at, created_at, updated_at,
            finished_at)
        SELECT 1 + g % {files}, 2 + g % 3, 1, 1, 'DONE', 'default', 3, 1000000, 1, 5, now(),
            now(), now(), now()
        FROM generate_series(1, {n}) g""",
    "rule_locks": """
        INSERT INTO rule_locks (rule_id, did_id, rse_id, state, created_at, updated_at)
        SELECT 1, 1 + (g - 1) / 3, 2 + (g - 1) % 3, 'OK', now(), now()
        FROM generate_series(1, {n}) g""",
    "stage_requests": """
        INSERT INTO stage_requests (did_id, rse_id, state, account, buffer_path, requested_at,
            ready_at, expires_at)
        SELECT 1 + g % {files}, 4, 'DONE', 'root', '/buffer/' || g, now(), now(), now()
        FROM generate_series(1, {n}) g""",
    "transformations": """
        INSERT INTO transformations (name, state, account, filter, document, input_port, inputs,
            grouping, group_size, settle_s, priority, activity, activity_rank, executor,
            max_task_attempts, created_at, updated_at)
        VALUES ('dl0-to-dl1', 'ACTIVE', 'root', 'data_level=DL0', '{{}}', 'in', '{{}}',
            'obs_id', 10, 0, 3, 'processing', 0, 'dask', 2, now(), now())""",
    "workflows": """
        INSERT INTO workflows (name, state, account, document, inputs, outputs, steps,
            priority, activity, activity_rank, executor, max_attempts, needs_advance,
            transformation_id, created_at, updated_at)
        SELECT 'dl0-to-dl1-' || g, 'DONE', 'root', '{{"class": "CommandLineTool"}}', '{{}}',
            '{{}}', '{{}}', 3, 'processing', 0, 'dask', 3, false, 1, now(), now()
        FROM generate_series(1, {n}) g""",
    "jobs": """
        INSERT INTO jobs (name, state, account, tool, spec, parameters, config_hash, priority,
            activity, activity_rank, cores, memory_mb, executor, attempts, max_attempts,
            workflow_id, step, cpu_s, wall_s, max_rss_mb, bytes_read, bytes_written,
            created_at, updated_at)
        SELECT 'dl0-to-dl1-' || g, 'DONE', 'root', 'ctapipe-process', '{{"cmd": "x"}}', '{{}}',
            'abc', 3, 'processing', 0, 1, 1000, 'dask', 1, 3, g, 'main', 10, 12, 500,
            100000000, 10000000, now(), now()
        FROM generate_series(1, {n}) g""",
    "job_events": """
        INSERT INTO job_events (job_id, ts, state, attempt, account, details)
        SELECT 1 + g % {jobs}, now(), 'DONE', 1, 'root', '{{}}'
        FROM generate_series(1, {n}) g""",
    "job_files": """
        INSERT INTO job_files (job_id, did_id, role, port, position)
        SELECT 1 + (g - 1) / 2, 1 + g % {files}, CASE g % 2 WHEN 0 THEN 'input' ELSE 'output'
            END, 'in', 0
        FROM generate_series(1, {n}) g""",
    "transformation_files": """
        INSERT INTO transformation_files (transformation_id, did_id, status, group_key,
            workflow_id, attempts, created_at, updated_at)
        SELECT 1, g, 'DONE', (g / 10)::text, 1 + g % {jobs}, 1, now(), now()
        FROM generate_series(1, {n}) g""",
}


def _size(conn: Any, table: str) -> int:
    return int(conn.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar_one())


def build(engine: Engine, n_events: int, say: Any) -> dict[str, int]:
    """The catalog at 0007 with ``n_events`` events and the other tables in proportion."""
    upgrade(engine, "0007")
    files = int(n_events / 2.5)
    rows = {t: max(1, int(files * per)) for t, per in PER_FILE.items()}
    with engine.begin() as conn:
        for table, sql in FILL.items():
            say(f"filling {table}")
            conn.execute(text(sql.format(n=rows.get(table, 0), files=files, jobs=rows["jobs"])))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return rows


def measure(engine: Engine, rows: dict[str, int], say: Any) -> dict[str, Any]:
    """Each table's VACUUM FULL (baseline), then the migration with each ALTER timed."""
    result: dict[str, Any] = {t: {"rows": n} for t, n in rows.items()}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in rows:
            say(f"VACUUM FULL {table}")
            started = time.perf_counter()
            conn.execute(text(f'VACUUM FULL "{table}"'))
            result[table]["vacuum_full_s"] = time.perf_counter() - started
            result[table]["bytes_before"] = _size(conn, table)
    timings: dict[str, float] = {}
    started_at: dict[int, float] = {}

    def before(_conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        started_at[id(_cur)] = time.perf_counter()

    def after(_conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if statement.startswith(("ALTER TABLE", "ALTER SEQUENCE")):
            timings[statement] = time.perf_counter() - started_at.pop(id(_cur))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    say("migrating to 0008")
    started = time.perf_counter()
    upgrade(engine, "0008")
    total = time.perf_counter() - started
    event.remove(engine, "before_cursor_execute", before)
    event.remove(engine, "after_cursor_execute", after)
    with engine.connect() as conn:
        for table in rows:
            entry = result[table]
            entry["migration_s"] = sum(
                s for sql, s in timings.items() if sql.startswith(f'ALTER TABLE "{table}"')
            )
            entry["ratio"] = entry["migration_s"] / entry["vacuum_full_s"]
            entry["rows_per_s"] = entry["rows"] / entry["migration_s"]
            entry["bytes_after"] = _size(conn, table)
    return {"tables": result, "migration_total_s": total}


def render(r: dict[str, Any]) -> str:
    lines = [
        "| table | rows | migration | VACUUM FULL (baseline) | ratio | rows/s | "
        "size before | after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for table, t in r["tables"].items():
        lines.append(
            f"| {table} | {t['rows']:,} | {t['migration_s']:.2f} s | {t['vacuum_full_s']:.2f} s"
            f" | {t['ratio']:.2f}x | {t['rows_per_s']:,.0f} | {t['bytes_before'] / 2**20:.1f} MiB"
            f" | {t['bytes_after'] / 2**20:.1f} MiB |"
        )
    rows = sum(t["rows"] for t in r["tables"].values())
    vacuum = sum(t["vacuum_full_s"] for t in r["tables"].values())
    lines.append(
        f"| **all** | {rows:,} | {r['migration_total_s']:.2f} s | {vacuum:.2f} s "
        f"| {r['migration_total_s'] / vacuum:.2f}x | {rows / r['migration_total_s']:,.0f} | | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events rows (>= 1000)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.events < 1000:
        parser.error("--events must be at least 1000")

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="dpps-bigint-") as base,
        TemporaryPostgres(Path(base) / "pg", settings=SETTINGS) as server,
    ):
        engine = make_engine(server.create_database())
        try:
            rows = build(engine, args.events, say)
            result = measure(engine, rows, say)
        finally:
            engine.dispose()
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
