"""Replication benchmarks: one rule with copies=2 over many small files, and large files vs cp.

The reference system (Rucio, measured on this kind of machine) created a copies=2 rule at
74 files/s for 10,000 files and failed outright at 100,000. Floors of the replication issue:

* rule evaluation >= 5,000 files/s (rule added -> every lock and transfer queued); baseline in
  the same run: raw multi-row INSERTs of the same lock and transfer rows (the database alone);
* complete, verified replication of the small files >= 500 files/s (rule added -> rule OK,
  every copy checksummed at its destination); baseline: ``cp -r`` of the same tree, twice;
* large files, destination checksums verified, >= 0.8 x the throughput of ``cp`` of the same
  files one after another (measured before and after ours; the mean is the baseline); also
  shown against ``cp`` followed by ``sync``, the durability a transfer gives (it fsyncs).
  Superseded for issue 13's floor (>= 0.9x of ``cp`` + ``sync``, interleaved rounds, median
  and spread) by ``bench_copy.py``, which also measures small-file copies per second.

The small-file transfers run in ``--daemons`` (2) ``dpps daemon transfer`` processes, as in
production; the large-file ones in this process (starting processes would cost as much as
the copies). The CPU the transfer daemons used per copy is reported too: unlike wall time it
does not depend on what else loads the machine.

    python benchmarks/bench_replication.py [--small-files 100000] [--large-files 8]
                                           [--large-mb 256] [--postgres] [--json]
                                           [--evaluation-only] [--daemons 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import blake3
from sqlalchemy import func, insert, select

from dpps.bdms.archive import Archive
from dpps.bdms.replication import evaluator
from dpps.bdms.transfer import daemon as transfers
from dpps.catalog import attachments as attachment_repo
from dpps.catalog import dids as did_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import RuleLockRow, RuleRow, TransferRow
from dpps.core.daemon import DaemonContext
from dpps.core.states import DIDType

CHUNK = 2000
Say = Callable[[str], None]


@contextmanager
def _archive(catalog_url: str | None, tmp: Path) -> Iterator[Archive]:
    with Archive.init(tmp / "ws", catalog_url=catalog_url) as archive:
        yield archive


def _make_files(
    archive: Archive, dataset: str, count: int, size: int, say: Say, per_dir: int = 1000
) -> int:
    """Write ``count`` files straight into CTAO-N and register them (catalog-only, in bulk):
    the benchmark is about replication, not ingest."""
    rse = archive.storage("CTAO-N")
    rse_id = archive.rse_id("CTAO-N")
    with transaction(archive.sessions) as session:
        ds_id = attachment_repo.get_or_create_collection(
            session, "ctao", dataset, DIDType.DATASET, account="bench"
        ).id
    chunk: list[did_repo.NewFile] = []
    block = os.urandom(size + count)
    for i in range(count):
        name = f"{dataset}/d{i // per_dir:04d}/f_{i:07d}.dat"
        rel = f"ctao{name}"
        path = Path(rse.resolve(rel))
        if i % per_dir == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        data = block[i : i + size]
        path.write_bytes(data)
        checksums = {
            "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
            "blake3": blake3.blake3(data).hexdigest(),
        }
        chunk.append(did_repo.NewFile("ctao", name, size, checksums, rse_id, rel))
        if len(chunk) == CHUNK or i == count - 1:
            with transaction(archive.sessions) as session:
                did_repo.register_files(session, chunk, account="bench", dataset_id=ds_id)
            chunk = []
        if (i + 1) % 20_000 == 0:
            say(f"  wrote and registered {i + 1:,} files")
    return count * size


def write_random(path: Path, megabytes: int) -> dict[str, str]:
    """Write ``megabytes`` MiB of random bytes to ``path``; their adler32 and BLAKE3."""
    a32, b3 = 1, blake3.blake3()
    with open(path, "wb") as f:
        for _ in range(megabytes):
            data = os.urandom(1024 * 1024)
            a32 = zlib.adler32(data, a32)
            b3.update(data)
            f.write(data)
    return {"adler32": f"{a32 & 0xFFFFFFFF:08x}", "blake3": b3.hexdigest()}


def _make_large(archive: Archive, dataset: str, count: int, megabytes: int) -> list[Path]:
    rse = archive.storage("CTAO-N")
    rse_id = archive.rse_id("CTAO-N")
    files, paths = [], []
    for i in range(count):
        name = f"{dataset}/big_{i:03d}.dat"
        path = Path(rse.resolve(f"ctao{name}"))
        path.parent.mkdir(parents=True, exist_ok=True)
        checksums = write_random(path, megabytes)
        files.append(
            did_repo.NewFile(
                "ctao", name, megabytes * 1024 * 1024, checksums, rse_id, f"ctao{name}"
            )
        )
        paths.append(path)
    with transaction(archive.sessions) as session:
        ds = attachment_repo.get_or_create_collection(
            session, "ctao", dataset, DIDType.DATASET, account="bench"
        )
        did_repo.register_files(session, files, account="bench", dataset_id=ds.id)
    return paths


@contextmanager
def catalogs(postgres: bool) -> Iterator[list[tuple[str, Callable[[], str | None]]]]:
    """(name, function giving a new empty catalog's URL) per backend: SQLite (None: the
    workspace's default), and PostgreSQL in a temporary server when asked."""
    backends: list[tuple[str, Callable[[], str | None]]] = [("sqlite", lambda: None)]
    if not postgres:
        yield backends
        return
    from dpps.testing.postgres import TemporaryPostgres

    server = TemporaryPostgres()
    server.start()
    try:
        yield [*backends, ("postgresql", server.create_database)]
    finally:
        server.stop()


def _rule_ok(archive: Archive, rule_id: int) -> bool:
    with archive.sessions() as session:
        return session.scalar(select(RuleRow.state).where(RuleRow.id == rule_id)) == "OK"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _evaluate(archive: Archive) -> float:
    """Seconds of one evaluator pass over the new rule (every lock and transfer queued)."""
    t0 = time.perf_counter()
    evaluator.Evaluator(archive.context).run_once(DaemonContext("evaluator"))
    return time.perf_counter() - t0


def _replicate(
    archive: Archive, rule_id: int, say: Say, daemons: int
) -> tuple[float, float, float]:
    """(seconds evaluating, seconds transferring until the rule is OK, CPU seconds the
    transfer daemon processes used: what the copies cost whatever else loads the machine).

    The evaluator runs in this process; the transfers in ``daemons`` ``dpps daemon transfer``
    processes (several instances, as in production), or in this process when 0.
    """
    evaluated = _evaluate(archive)
    t1 = time.perf_counter()
    cpu0 = _children_cpu()
    if daemons:
        env = dict(os.environ, DPPS_WORKSPACE=str(archive.config.workspace))
        dpps = str(Path(sys.executable).with_name("dpps"))
        cmd = [dpps, "daemon", "transfer", "--sleep", "0.2", "--log-level", "WARNING"]
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL) for _ in range(daemons)]
        try:
            last = time.monotonic()
            while not _rule_ok(archive, rule_id):
                time.sleep(0.2)
                if time.monotonic() - last > 10:
                    say(f"  {_done(archive):,} copies made and verified")
                    last = time.monotonic()
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a transfer daemon died")
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=120)
        return evaluated, time.perf_counter() - t1, _children_cpu() - cpu0
    worker = transfers.TransferDaemon(archive.context)
    ctx = DaemonContext("transfer")
    cpu0 = time.process_time()
    try:
        while not _rule_ok(archive, rule_id):
            if not worker.run_once(ctx):
                time.sleep(0.2)
    finally:
        worker.close()
    return evaluated, time.perf_counter() - t1, time.process_time() - cpu0


def _done(archive: Archive) -> int:
    with archive.sessions() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(TransferRow).where(TransferRow.state == "DONE")
            )
            or 0
        )


def _raw_rows(archive: Archive, rule_id: int, copies: int) -> float:
    """Seconds to INSERT the same lock and transfer rows the evaluator wrote, with no logic."""
    with archive.sessions() as session:
        locks = session.execute(
            select(RuleLockRow.did_id, RuleLockRow.rse_id).where(RuleLockRow.rule_id == rule_id)
        ).all()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with transaction(archive.sessions) as session:
        raw_rule = RuleRow(
            did_id=locks[0][0],
            account="bench",
            rse_expression="x",
            copies=copies,
            state="OK",
            created_at=now,
            updated_at=now,
        )
        session.add(raw_rule)
        session.flush()
        raw_id = raw_rule.id
    t0 = time.perf_counter()
    for start in range(0, len(locks), CHUNK * copies):
        part = locks[start : start + CHUNK * copies]
        with transaction(archive.sessions) as session:
            session.execute(
                insert(RuleLockRow),
                [
                    {
                        "rule_id": raw_id,
                        "did_id": d,
                        "rse_id": r,
                        "state": "REPLICATING",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for d, r in part
                ],
            )
            session.execute(
                insert(TransferRow),
                [
                    {
                        "did_id": d,
                        "dest_rse_id": r,
                        "rule_id": raw_id,
                        "state": "DONE",
                        "activity": "x",
                        "priority": 3,
                        "attempts": 0,
                        "max_attempts": 5,
                        "next_attempt_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for d, r in part
                ],
            )
    return time.perf_counter() - t0


def _sync() -> None:
    os.sync()


def bench_small(
    catalog_url: str | None,
    n_files: int,
    size: int,
    daemons: int,
    say: Say,
    copies: bool = True,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dpps-bench-rep-") as tmp:
        base = Path(tmp)
        with _archive(catalog_url, base) as archive:
            say(f"writing {n_files:,} files of {size} bytes")
            _make_files(archive, "/bench/small", n_files, size, say)
            _sync()
            t0 = time.perf_counter()
            rule_id = archive.add_rule("/bench/small", copies=2, rses="offsite&type=disk")
            if not copies:  # the rule evaluation alone (--evaluation-only)
                evaluated = _evaluate(archive)
                say("baseline: raw INSERT of the same rows")
                raw = _raw_rows(archive, rule_id, 2)
                return {
                    "files": n_files,
                    "evaluation_s": evaluated,
                    "evaluation_files_per_s": n_files / evaluated,
                    "raw_insert_files_per_s": n_files / raw,
                    "evaluation_ratio_to_raw": raw / evaluated,
                }
            evaluated, transferred, cpu = _replicate(archive, rule_id, say, daemons)
            total = time.perf_counter() - t0
            say("baseline: raw INSERT of the same rows")
            raw = _raw_rows(archive, rule_id, 2)
            src = Path(archive.storage("CTAO-N").root) / "ctao"
            _sync()
            say("baseline: cp -r of the same files, twice")
            t1 = time.perf_counter()
            for target in ("cp1", "cp2"):
                subprocess.run(["cp", "-r", str(src), str(base / target)], check=True)
            cp = time.perf_counter() - t1
    return {
        "files": n_files,
        "bytes_per_file": size,
        "evaluation_s": evaluated,
        "evaluation_files_per_s": n_files / evaluated,
        "raw_insert_files_per_s": n_files / raw,
        "evaluation_ratio_to_raw": raw / evaluated,
        "transfers_s": transferred,
        "copies_per_s": 2 * n_files / transferred,
        "transfer_cpu_ms_per_copy": 1000 * cpu / (2 * n_files),
        "load_average": os.getloadavg()[0],
        "replication_s": total,
        "replication_files_per_s": n_files / total,
        "cp_files_per_s": n_files / cp,
        "replication_ratio_to_cp": cp / total,
    }


def _cp_one_by_one(paths: list[Path], target: Path, sync: bool = False) -> float:
    """``cp`` of each file in turn (then ``sync``: the bytes on disk, as a transfer promises)."""
    target.mkdir()
    _sync()
    t0 = time.perf_counter()
    for path in paths:
        subprocess.run(["cp", str(path), str(target / path.name)], check=True)
    if sync:
        _sync()
    seconds = time.perf_counter() - t0
    shutil.rmtree(target)
    _sync()
    return seconds


def bench_large(catalog_url: str | None, count: int, megabytes: int, say: Say) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dpps-bench-rep-") as tmp:
        base = Path(tmp)
        with _archive(catalog_url, base) as archive:
            say(f"writing {count} files of {megabytes} MiB")
            paths = _make_large(archive, "/bench/large", count, megabytes)
            total = count * megabytes * 1024 * 1024
            say("baseline: cp, one file after another")
            cp_before = _cp_one_by_one(paths, base / "cp")
            rule_id = archive.add_rule("/bench/large", copies=1, rses="PIC")
            evaluator.Evaluator(archive.context).run_once(DaemonContext("evaluator"))
            _sync()
            say("dpps transfers")
            # in this process: starting daemon processes would cost as much as the copies
            _, ours, _cpu = _replicate(archive, rule_id, say, 0)
            cp_after = _cp_one_by_one(paths, base / "cp")
            cp = (cp_before + cp_after) / 2
            say("baseline: cp then sync (the durability a transfer gives)")
            cp_sync = _cp_one_by_one(paths, base / "cp", sync=True)
    return {
        "files": count,
        "bytes": total,
        "transfer_s": ours,
        "transfer_mb_s": total / ours / 1e6,
        "cp_s_before_after": [cp_before, cp_after],
        "cp_mb_s": total / cp / 1e6,
        "ratio_to_cp": cp / ours,
        "cp_sync_mb_s": total / cp_sync / 1e6,
        "ratio_to_cp_sync": cp_sync / ours,
        "load_average": os.getloadavg()[0],
    }


def run(
    small_files: int = 100_000,
    small_size: int = 4096,
    large_files: int = 8,
    large_mb: int = 256,
    postgres: bool = False,
    quiet: bool = False,
    daemons: int = 2,
    evaluation_only: bool = False,
) -> dict[str, Any]:
    say: Say = (lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    results: dict[str, Any] = {}
    with catalogs(postgres) as backends:
        for backend, new_url in backends:
            if small_files:
                say(f"[{backend}] copies=2 rule over {small_files:,} small files")
                results[f"small_{backend}"] = bench_small(
                    new_url(), small_files, small_size, daemons, say, not evaluation_only
                )
            if large_files:
                say(f"[{backend}] {large_files} large files vs cp")
                results[f"large_{backend}"] = bench_large(new_url(), large_files, large_mb, say)
    return results


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render(results: dict[str, Any]) -> str:
    lines = [
        "| benchmark | figure | baseline (same run) | ratio | floor | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        if key.startswith("small_"):
            lines.append(
                f"| {key}: rule evaluation, copies=2, {r['files']:,} files | "
                f"{r['evaluation_files_per_s']:,.0f} files/s ({r['evaluation_s']:.1f} s) | "
                f"raw INSERT of the same rows {r['raw_insert_files_per_s']:,.0f} files/s | "
                f"{r['evaluation_ratio_to_raw']:.2f}x | >= 5,000 files/s | "
                f"{_verdict(r['evaluation_files_per_s'] >= 5000)} |"
            )
            if "replication_s" not in r:  # --evaluation-only
                continue
            lines.append(
                f"| {key}: complete verified replication ({2 * r['files']:,} copies of "
                f"{r['bytes_per_file']} B) | {r['replication_files_per_s']:,.0f} files/s "
                f"({r['replication_s']:.0f} s; {r['copies_per_s']:,.0f} copies/s) | "
                f"cp -r twice {r['cp_files_per_s']:,.0f} files/s | "
                f"{r['replication_ratio_to_cp']:.2f}x | >= 500 files/s | "
                f"{_verdict(r['replication_files_per_s'] >= 500)} |"
            )
            lines.append(
                f"| {key}: CPU of the transfer daemons per copy (load average "
                f"{r['load_average']:.1f}) | {r['transfer_cpu_ms_per_copy']:.2f} ms | - | - | "
                "- | info |"
            )
        else:
            gib = r["bytes"] / 2**30
            lines.append(
                f"| {key}: {r['files']} files, {gib:.1f} GiB, destination verified | "
                f"{r['transfer_mb_s']:,.0f} MB/s | cp one by one {r['cp_mb_s']:,.0f} MB/s | "
                f"{r['ratio_to_cp']:.2f}x | >= 0.8x cp | {_verdict(r['ratio_to_cp'] >= 0.8)} |"
            )
            lines.append(
                f"| {key}: same | {r['transfer_mb_s']:,.0f} MB/s | cp then sync "
                f"{r['cp_sync_mb_s']:,.0f} MB/s | {r['ratio_to_cp_sync']:.2f}x | - | info |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small-files", type=int, default=100_000, help="0 to skip")
    parser.add_argument("--small-size", type=int, default=4096, help="bytes per small file")
    parser.add_argument("--large-files", type=int, default=8, help="0 to skip")
    parser.add_argument("--large-mb", type=int, default=256, help="MiB per large file")
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument(
        "--daemons", type=int, default=2, help="transfer daemon processes (0: in this process)"
    )
    parser.add_argument(
        "--evaluation-only", action="store_true", help="small files: the rule evaluation only"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    results = run(
        args.small_files,
        args.small_size,
        args.large_files,
        args.large_mb,
        args.postgres,
        args.json,
        args.daemons,
        args.evaluation_only,
    )
    print(json.dumps(results, indent=2) if args.json else render(results))


if __name__ == "__main__":
    main()
