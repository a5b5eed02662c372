"""Preservation at scale: fixity audits, the reaper, tape staging and the locate estimate.

Each figure is measured next to a baseline in the same run on the same files:

* audit (read every replica, compare adler32 + BLAKE3 with the catalog, stamp it in the
  catalog) against hashing the same files with ``checksum_file`` in a loop: the catalog work
  must cost little, floor >= 0.8x the baseline's MB/s;
* one reaper pass deleting on-site copies (checks, two events per replica, bytes removed)
  against ``os.unlink`` of as many files: information, no floor (the catalog bookkeeping is
  the point);
* staging tape-only files (stager copy into the buffer, verified) against ``shutil.copyfile``
  of the same files: information;
* ``locate`` of a tape-only file (availability and retrieval-time estimate): floor < 1 s (the
  observatory's requirement), measured as the p95 over many calls.

Usage: python benchmarks/bench_preservation.py [--files 2000] [--kib 256] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, update

from dpps.bdms.archive import Archive
from dpps.bdms.preservation import auditor, reaper
from dpps.bdms.staging import stager
from dpps.catalog import attachments as attachment_repo
from dpps.catalog.dids import NewFile
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, ReplicaRow, RuleRow, StageRequestRow
from dpps.core.daemon import DaemonContext
from dpps.core.states import DIDType
from dpps.storage.checksums import checksum_file

AUDIT_FLOOR = 0.8
LOCATE_FLOOR_S = 1.0


def _workspace(base: Path) -> Archive:
    Archive.init(base / "ws").close()
    path = base / "ws" / "dpps.yaml"
    data = yaml.safe_load(path.read_text())
    data["reaper"] = {"onsite_retention_days": 0, "min_offsite_copies": 1}
    data["rses"]["PIC-TAPE"]["staging_delay_s"] = 0.0
    path.write_text(yaml.safe_dump(data))
    return Archive.open(base / "ws")


def _register(archive: Archive, base: Path, files: int, kib: int) -> list[Path]:
    """Write random files on CTAO-N and PIC and register both replicas (no copy timing)."""
    paths: list[Path] = []
    news: list[NewFile] = []
    onsite, pic = archive.rse_id("CTAO-N"), archive.rse_id("PIC")
    for i in range(files):
        rel = f"ctao/bench/f{i:06d}.bin"
        src = Path(archive.storage("CTAO-N").resolve(rel))
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(os.urandom(kib * 1024))
        size, sums = checksum_file(src, ["adler32", "blake3"])
        dst = Path(archive.storage("PIC").resolve(rel))
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        paths.append(src)
        news.append(NewFile("ctao", f"/bench/f{i:06d}.bin", size, sums, onsite, rel))
    for start in range(0, files, 1000):
        archive.register(news[start : start + 1000])
    with transaction(archive.sessions) as session:
        rows = session.execute(
            ReplicaRow.__table__.select().where(ReplicaRow.rse_id == onsite)
        ).all()
        session.execute(
            ReplicaRow.__table__.insert(),
            [
                {
                    "did_id": r.did_id,
                    "rse_id": pic,
                    "state": "AVAILABLE",
                    "path": r.path,
                    "bytes": r.bytes,
                    "lock_count": 0,
                    "created_at": r.created_at,
                    "updated_at": r.updated_at,
                }
                for r in rows
            ],
        )
    return paths


def run(files: int = 2000, kib: int = 256) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dpps-bench-") as tmp:
        base = Path(tmp)
        archive = _workspace(base)
        paths = _register(archive, base, files, kib)
        nbytes = files * kib * 1024
        # Audit of the on-site copies vs hashing them in a loop (page cache warm for both).
        for p in paths:
            checksum_file(p, ["adler32", "blake3"])
        t = time.perf_counter()
        for p in paths:
            checksum_file(p, ["adler32", "blake3"])
        hash_s = time.perf_counter() - t
        ids = archive.preservation.plan_audit(rse="CTAO-N")
        t = time.perf_counter()
        report = archive.preservation.audit(replica_ids=ids)
        audit_s = time.perf_counter() - t
        assert report.good == files, report
        # Tape: stage every file of a tape-only copy set vs copyfile of the same files.
        tape = archive.storage("PIC-TAPE")
        rows: list[tuple[str, str]] = []
        for p in paths[: min(files, 500)]:
            rel = p.relative_to(archive.storage("CTAO-N").root).as_posix()
            dst = Path(tape.resolve(rel))
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst)
            rows.append((rel, f"ctao:/bench/{Path(rel).name}"))
        tape_id = archive.rse_id("PIC-TAPE")
        with transaction(archive.sessions) as session:
            session.execute(
                update(ReplicaRow)
                .where(ReplicaRow.rse_id == archive.rse_id("PIC"))
                .values(state="AVAILABLE")
            )
            pic_rows = session.execute(
                ReplicaRow.__table__.select().where(ReplicaRow.rse_id == archive.rse_id("PIC"))
            ).all()
            wanted = {rel for rel, _did in rows}
            session.execute(
                ReplicaRow.__table__.insert(),
                [
                    {
                        "did_id": r.did_id,
                        "rse_id": tape_id,
                        "state": "AVAILABLE",
                        "path": r.path,
                        "bytes": r.bytes,
                        "lock_count": 0,
                    }
                    for r in pic_rows
                    if r.path in wanted
                ],
            )
        copy_dir = base / "copies"
        copy_dir.mkdir()
        t = time.perf_counter()
        for i, (rel, _did) in enumerate(rows):
            shutil.copyfile(tape.resolve(rel), copy_dir / f"{i}.bin")
        copy_s = time.perf_counter() - t
        archive.preservation.stage([did for _rel, did in rows])
        t = time.perf_counter()
        ctx = DaemonContext(name="stager")
        while stager.one_pass(ctx, archive.sessions, archive.config, batch=100):
            pass
        stage_s = time.perf_counter() - t
        with archive.sessions() as session:
            ready = session.query(StageRequestRow).filter_by(state="READY").count()
        assert ready == len(rows), ready
        # locate of a file whose disk copies are gone: only tape remains.
        with transaction(archive.sessions) as session:
            session.execute(
                update(ReplicaRow)
                .where(ReplicaRow.rse_id != tape_id, ReplicaRow.path == rows[0][0])
                .values(state="UNAVAILABLE")
            )
        latencies = []
        for _ in range(200):
            t = time.perf_counter()
            loc = archive.locate(rows[0][1])
            latencies.append(time.perf_counter() - t)
        assert loc.best_rse == "PIC-TAPE", loc
        with transaction(archive.sessions) as session:
            session.execute(
                update(ReplicaRow)
                .where(ReplicaRow.state == "UNAVAILABLE")
                .values(state="AVAILABLE")
            )
        # Reaper: on-site copies go (one rule on a dataset of every file, marked OK as the
        # evaluator would once the PIC copies are locked... here they are left unlocked).
        with transaction(archive.sessions) as session:
            dataset = attachment_repo.get_or_create_collection(
                session, "ctao", "/bench", DIDType.DATASET, account="bench"
            )
            file_ids = [
                row.id for row in session.scalars(select(DIDRow).where(DIDRow.did_type == "FILE"))
            ]
            attachment_repo.attach(session, dataset.id, file_ids)
        archive.add_rule("ctao:/bench", copies=1, rses="PIC")
        with transaction(archive.sessions) as session:
            session.execute(update(RuleRow).values(state="OK"))
        for p in paths:  # unlink baseline on copies of the same size
            shutil.copyfile(p, p.with_suffix(".extra"))
        t = time.perf_counter()
        for p in paths:
            os.unlink(p.with_suffix(".extra"))
        unlink_s = time.perf_counter() - t
        rctx = DaemonContext(name="reaper")
        t = time.perf_counter()
        deleted = reaper.one_pass(rctx, archive.sessions, archive.config)
        reap_s = time.perf_counter() - t
        archive.close()
    p95 = statistics.quantiles(latencies, n=20)[18]
    audit_ratio = (nbytes / audit_s) / (nbytes / hash_s)
    return {
        "files": files,
        "kib": kib,
        "cpus": os.cpu_count(),
        "audit": {
            "files_s": files / audit_s,
            "mb_s": nbytes / audit_s / 1e6,
            "baseline_mb_s": nbytes / hash_s / 1e6,
            "ratio": audit_ratio,
            "floor": AUDIT_FLOOR,
            "pass": audit_ratio >= AUDIT_FLOOR,
            "metrics": dict(auditor.METRICS),
        },
        "stage": {
            "files": len(rows),
            "files_s": len(rows) / stage_s,
            "baseline_files_s": len(rows) / copy_s,
            "ratio": copy_s / stage_s,
        },
        "locate_tape": {
            "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": p95 * 1000,
            "floor_ms": LOCATE_FLOOR_S * 1000,
            "pass": p95 < LOCATE_FLOOR_S,
        },
        "reap_onsite": {
            "deleted": deleted,
            "files_s": deleted / reap_s,
            "baseline_unlink_files_s": files / unlink_s,
            "ratio": unlink_s / reap_s,
        },
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _print(report: dict[str, Any]) -> None:
    a, s, loc, r = report["audit"], report["stage"], report["locate_tape"], report["reap_onsite"]
    print(f"{report['files']} files of {report['kib']} KiB, {report['cpus']} CPUs, SQLite")
    print("| figure | dpps | baseline (same run) | ratio | floor | |")
    print("|---|---|---|---|---|---|")
    print(
        f"| audit (read, adler32+BLAKE3, catalog stamp) | {a['mb_s']:,.0f} MB/s "
        f"({a['files_s']:,.0f} files/s) | checksum_file loop {a['baseline_mb_s']:,.0f} MB/s "
        f"| {a['ratio']:.2f}x | >= {a['floor']}x | {'PASS' if a['pass'] else 'FAIL'} |"
    )
    print(
        f"| stage {s['files']} tape files into the buffer (verified) | {s['files_s']:,.0f} "
        f"files/s | copyfile {s['baseline_files_s']:,.0f} files/s | {s['ratio']:.2f}x | | info |"
    )
    print(
        f"| locate a tape-only file, p95 (p50) | {loc['p95_ms']:.1f} ms ({loc['p50_ms']:.1f} ms)"
        f" | | | < {loc['floor_ms']:.0f} ms | {'PASS' if loc['pass'] else 'FAIL'} |"
    )
    print(
        f"| reaper: delete {r['deleted']} on-site copies (checks, events, bytes) | "
        f"{r['files_s']:,.0f} files/s | os.unlink {r['baseline_unlink_files_s']:,.0f} files/s "
        f"| {r['ratio']:.2f}x | | info |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=2000, help="files in the archive")
    parser.add_argument("--kib", type=int, default=256, help="size of each file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    report = run(args.files, args.kib)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    ok = report["audit"]["pass"] and report["locate_tape"]["pass"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
