"""ACADA ingestion benchmarks: trigger-to-registered latency, small-file rate, a 1 GiB file.

Each figure is printed next to a baseline measured in the same run on the same disk:

* latency (p50/p95): files announced one by one to a running queue (poll interval 0.5 s);
  baseline: the pure per-file work (verify + checksum) of one such file;
* sustained rate: a backlog of small simulated files drained by the queue's process pool;
  baseline: ``cp -r`` of the same files (touching each file once, nothing else);
* 1 GiB DL0 file (zfits, raw waveforms): trigger to registered vs ``cp`` of the same file.

Floors (issue 3): p50 < 2 s; >= 50 files/s; 1 GiB ingest within 2x the time of ``cp``.
Uses SQLite in a temporary workspace (the embedded default).

    python benchmarks/bench_acada.py [--small 300] [--latency-files 40] [--big-gib 1.0] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dpps.acada.simulate import SimulationConfig, simulate, write_trigger
from dpps.bdms.archive import Archive
from dpps.bdms.ingestion.landing import WorkSpec, inspect, scan_triggers
from dpps.bdms.ingestion.queue import IngestionQueue
from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.core.daemon import DaemonContext, run_daemon
from dpps.instrument.dl0 import quiet_native_stdout

FLOOR_P50_S = 2.0
FLOOR_FILES_S = 50.0
FLOOR_BIG_RATIO = 2.0


def _config(obs: int, **changes: Any) -> SimulationConfig:
    base = SimulationConfig(
        telescopes=(1, 2, 3, 4),
        duration_s=1.0,
        event_rate_hz=2.0,
        events_per_chunk=1,
        first_obs_id=obs,
        triggers=False,
        start=dt.datetime(2026, 11, 21, 22) + dt.timedelta(minutes=obs),
    )
    return dataclasses.replace(base, **changes)


def _small_files(landing: Path, n: int, first_obs: int) -> list[Path]:
    files: list[Path] = []
    obs = first_obs
    while len(files) < n:
        files += simulate(landing, _config(obs))
        obs += 1
    return files


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _drain(queue: IngestionQueue) -> None:
    ctx = DaemonContext("ingest")
    while scan_triggers(queue.settings.landing):
        queue.run_once(ctx)


def bench_rate(archive: Archive, queue: IngestionQueue, n: int, work: Path) -> dict[str, Any]:
    landing = queue.settings.landing
    for f in _small_files(landing / "warm-up", 8, first_obs=1):  # pool started, caches warm
        write_trigger(f)
    _drain(queue)
    batch = landing / "dl0"
    files = _small_files(landing, n, first_obs=1000)
    copy_dest = work / "cp-rate"
    started = time.perf_counter()
    subprocess.run(["cp", "-r", str(batch), str(copy_dest)], check=True)
    cp_s = time.perf_counter() - started
    for f in files:
        write_trigger(f)
    started = time.perf_counter()
    _drain(queue)
    ingest_s = time.perf_counter() - started
    rate = len(files) / ingest_s
    return {
        "files": len(files),
        "mean_bytes": sum(f.stat().st_size for f in files) / len(files),
        "files_per_s": rate,
        "cp_files_per_s": len(files) / cp_s,
        "ratio_to_cp": rate / (len(files) / cp_s),
        "floor_files_per_s": FLOOR_FILES_S,
        "pass": rate >= FLOOR_FILES_S,
    }


def bench_latency(archive: Archive, queue: IngestionQueue, n: int) -> dict[str, Any]:
    landing = queue.settings.landing
    files = _small_files(landing, n, first_obs=5000)[:n]
    spec = WorkSpec(
        "CTAO-N",
        archive.config.rse_url("CTAO-N"),
        "ctao",
        queue.rse_id,
        tuple(archive.config.checksums),
        (),
    )
    started = time.perf_counter()
    inspect(spec, str(files[0]), "/ctao/bench/probe.fits.fz")
    work_s = time.perf_counter() - started
    stop = threading.Event()
    queue.latencies.clear()
    daemon = threading.Thread(
        target=run_daemon,
        args=("ingest", queue.run_once, DatabaseHeartbeats(archive.sessions)),
        kwargs={"stop": stop, "sleep_s": queue.sleep_s, "max_sleep_s": queue.max_sleep_s},
    )
    daemon.start()
    try:
        for f in files:  # ~4 files/s, as a site closes files while it observes
            write_trigger(f)
            time.sleep(0.25)
        deadline = time.monotonic() + 120
        while len(queue.latencies) < len(files) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        daemon.join()
    lat = list(queue.latencies)
    p50 = statistics.median(lat)
    return {
        "files": len(lat),
        "poll_interval_s": queue.settings.poll_interval_s,
        "p50_s": p50,
        "p95_s": _percentile(lat, 0.95),
        "per_file_work_s": work_s,
        "p50_ratio_to_work": p50 / work_s,
        "floor_p50_s": FLOOR_P50_S,
        "pass": p50 < FLOOR_P50_S,
    }


def bench_big(archive: Archive, queue: IngestionQueue, gib: float, work: Path) -> dict[str, Any]:
    landing = queue.settings.landing
    camera_event_bytes = 1855 * 40 * 2
    events = max(1, int(gib * 2**30 / camera_event_bytes))
    config = _config(
        9000,
        telescopes=(1,),
        duration_s=events / 50.0,
        event_rate_hz=50.0,
        events_per_chunk=10**7,
        muon_fraction=0.0,
        calibration_fraction=0.0,
        compression="raw",
        monitoring=False,
        streams=("SHOWER",),
    )
    files = simulate(landing, config)
    big = max(files, key=lambda p: p.stat().st_size)
    size = big.stat().st_size
    for f in files:
        if f != big:
            write_trigger(f)
    _drain(queue)  # the subarray file: warms the pool up too
    dest = work / "big-copy.fits.fz"
    started = time.perf_counter()
    subprocess.run(["cp", str(big), str(dest)], check=True)
    cp_s = time.perf_counter() - started
    dest.unlink()
    write_trigger(big)
    started = time.perf_counter()
    _drain(queue)
    ingest_s = time.perf_counter() - started
    return {
        "bytes": size,
        "ingest_s": ingest_s,
        "cp_s": cp_s,
        "ratio_to_cp": ingest_s / cp_s,
        "ingest_mb_s": size / ingest_s / 1e6,
        "floor_ratio": FLOOR_BIG_RATIO,
        "pass": ingest_s <= FLOOR_BIG_RATIO * cp_s,
    }


def run(
    small: int = 300, latency_files: int = 40, big_gib: float = 1.0, workers: int = 2
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-acada-") as tmp, quiet_native_stdout():
        work = Path(tmp)
        archive = Archive.init(work / "ws")
        queue = archive.acada.queue(workers=workers)
        try:
            queue.start()
            results = {
                "rate": bench_rate(archive, queue, small, work),
                "latency": bench_latency(archive, queue, latency_files),
                "big": bench_big(archive, queue, big_gib, work) if big_gib > 0 else None,
            }
        finally:
            queue.close()
            archive.close()
            shutil.rmtree(work, ignore_errors=True)
    return results


def _print(results: dict[str, Any]) -> None:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    r, lat, big = results["rate"], results["latency"], results["big"]
    print("| figure | value | baseline (same run) | ratio | floor | |")
    print("|---|---|---|---|---|---|")
    print(
        f"| trigger-to-registered p50 | {lat['p50_s']:.2f} s | per-file work "
        f"{lat['per_file_work_s'] * 1000:.0f} ms | {lat['p50_ratio_to_work']:.1f}x | < 2 s | "
        f"{verdict(lat['pass'])} |"
    )
    print(
        f"| trigger-to-registered p95 | {lat['p95_s']:.2f} s | poll interval "
        f"{lat['poll_interval_s']} s | | | |"
    )
    print(
        f"| sustained rate, {r['files']} files of {r['mean_bytes'] / 1e3:.0f} kB | "
        f"{r['files_per_s']:.0f} files/s | cp -r {r['cp_files_per_s']:.0f} files/s | "
        f"{r['ratio_to_cp']:.2f}x | >= 50 files/s | {verdict(r['pass'])} |"
    )
    if big:
        print(
            f"| {big['bytes'] / 2**30:.2f} GiB DL0 file, trigger to registered | "
            f"{big['ingest_s']:.2f} s ({big['ingest_mb_s']:.0f} MB/s) | cp {big['cp_s']:.2f} s | "
            f"{big['ratio_to_cp']:.2f}x | <= 2x cp | {verdict(big['pass'])} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=300, help="small files for the rate")
    parser.add_argument("--latency-files", type=int, default=40, help="files for the latency")
    parser.add_argument(
        "--big-gib", type=float, default=1.0, help="size of the big file (0: skip)"
    )
    parser.add_argument("--workers", type=int, default=2, help="pool processes")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    results = run(args.small, args.latency_files, args.big_gib, args.workers)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)
    ok = all(v["pass"] for v in results.values() if v)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
