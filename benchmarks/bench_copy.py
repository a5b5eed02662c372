"""Transfers whose destination must be verified and durable, against copies that are durable.

Floors of issue 13 (production scale, deliverable 3):

* large files: dpps transfers (copy, adler32 + BLAKE3 of the destination, fsync, replica
  AVAILABLE) >= 0.9x of ``cp`` followed by ``sync`` of the same files. Rounds interleave
  ours, ``cp`` + ``sync`` and plain ``cp`` (``--rounds``, default 5), so that the state of
  the disk (this VM's write-back speed varies by minutes) weighs on all three alike; each
  figure is printed as a median with its min-max, and the ratios per round likewise. The
  baseline's ``sync`` is ``sync FILE...`` of the copies and their directory: it fsyncs
  exactly what ``cp`` wrote, the durability a transfer gives, not other users' dirty data;
* many small files: >= 1,000 files/s verified and fsynced (2,000 copies/s of a copies=2
  rule), measured from the queued transfers to the rule OK in ``--daemons`` ``dpps daemon
  transfer`` processes, with the CPU seconds per copy of those processes (all threads; unlike
  wall time it does not depend on what else loads the machine). Baseline in the same run:
  the same number of copies by a minimal Python loop (read, write, fsync, no checksum, no
  catalog) on as many threads as the daemons have in all, then an fsync of each directory.
  That is the fairest floor for durable small copies: ``cp`` + ``sync FILE...`` would fsync
  one file after another in one process (2x slower here than the threaded loop), flattering
  us; the loop shows what the disk and kernel allow, so the ratio is what the catalog and the
  verification cost.

* the copy path alone (``--copy-path-files``): ``copy_replica`` of small files between two
  local RSEs on as many threads as the daemons have, no catalog, against the same
  read + write + fsync loop, rounds interleaved: CPU per copy of each, so that the daemons'
  figure splits into what the copies cost and what the catalog costs.

    python benchmarks/bench_copy.py [--large-files 8] [--large-mb 256] [--rounds 5]
                                    [--small-files 20000] [--small-size 4096]
                                    [--copy-path-files 5000] [--daemons 2] [--postgres]
                                    [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from bench_replication import (
    _archive,
    _done,
    _evaluate,
    _make_files,
    _replicate,
    _rule_ok,
    catalogs,
    write_random,
)
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.bdms.replication import evaluator
from dpps.catalog import attachments as attachment_repo
from dpps.catalog import dids as did_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import RuleRow
from dpps.core.config import TransferConfig
from dpps.core.daemon import DaemonContext
from dpps.core.states import DIDType
from dpps.storage.copy import copy_replica
from dpps.storage.posix import fsync_dir
from dpps.storage.rse import StorageElement

LARGE_FLOOR = 0.9  # x cp + sync
SMALL_FLOOR = 1000.0  # files/s, copies=2
Say = Callable[[str], None]


def _cpu_now() -> float:
    """CPU seconds of this process (all threads) and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# -- large files --------------------------------------------------------------------------


def _originals(base: Path, count: int, megabytes: int) -> list[tuple[Path, dict[str, str]]]:
    """Random files written once, with their checksums; each round links them anew."""
    base.mkdir()
    paths = [base / f"big_{i:03d}.dat" for i in range(count)]
    return [(path, write_random(path, megabytes)) for path in paths]


def _register_round(
    archive: Archive, dataset: str, originals: list[tuple[Path, dict[str, str]]]
) -> None:
    """The originals hard-linked into CTAO-N under ``dataset`` and catalogued there: every
    round copies the same bytes (same page-cache state) without writing them again."""
    rse = archive.storage("CTAO-N")
    rse_id = archive.rse_id("CTAO-N")
    files = []
    for path, checksums in originals:
        name = f"{dataset}/{path.name}"
        target = Path(rse.resolve(f"ctao{name}"))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
        size = path.stat().st_size
        files.append(did_repo.NewFile("ctao", name, size, checksums, rse_id, f"ctao{name}"))
    with transaction(archive.sessions) as session:
        ds = attachment_repo.get_or_create_collection(
            session, "ctao", dataset, DIDType.DATASET, account="bench"
        )
        did_repo.register_files(session, files, account="bench", dataset_id=ds.id)


def _ours(archive: Archive, dataset: str, say: Say) -> tuple[float, float]:
    """(seconds, CPU seconds) of the transfers of a copies=1 rule to PIC, in this process
    (starting daemon processes would cost as much as the copies), until the rule is OK."""
    rule_id = archive.add_rule(dataset, copies=1, rses="PIC")
    evaluator.Evaluator(archive.context).run_once(DaemonContext("evaluator"))
    os.sync()
    _, seconds, cpu = _replicate(archive, rule_id, say, 0)
    with archive.sessions() as session:
        if session.scalar(select(RuleRow.state).where(RuleRow.id == rule_id)) != "OK":
            raise RuntimeError(f"rule {rule_id} did not become OK")
    return seconds, cpu


def _cp(paths: list[Path], target: Path, sync: bool) -> tuple[float, float]:
    """(seconds, CPU seconds) of one ``cp`` of every file into ``target`` (then ``sync`` of
    the copies and the directory: fsync of each, what a transfer promises)."""
    target.mkdir()
    os.sync()
    cpu0 = _cpu_now()
    t0 = time.perf_counter()
    subprocess.run(["cp", *map(str, paths), str(target)], check=True)
    if sync:
        copies = [str(target / p.name) for p in paths]
        subprocess.run(["sync", *copies, str(target)], check=True)
    return time.perf_counter() - t0, _cpu_now() - cpu0


def bench_large(
    catalog_url: str | None, count: int, megabytes: int, rounds: int, say: Say
) -> dict[str, Any]:
    total = count * megabytes * 1024 * 1024
    ours: list[float] = []
    cp_sync: list[float] = []
    cp: list[float] = []
    cpu: dict[str, list[float]] = {"ours": [], "cp_sync": [], "cp": []}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="dpps-bench-copy-") as tmp:
        base = Path(tmp)
        with _archive(catalog_url, base) as archive:
            say(f"writing {count} files of {megabytes} MiB")
            originals = _originals(base / "originals", count, megabytes)
            paths = [p for p, _ in originals]
            pic = Path(archive.storage("PIC").root)
            for r in range(rounds):
                dataset = f"/bench/large{r}"
                _register_round(archive, dataset, originals)
                seconds, used = _ours(archive, dataset, say)
                ours.append(seconds)
                cpu["ours"].append(used)
                shutil.rmtree(pic / "ctao")  # the copies go; the catalog does not matter
                for name, times, sync in (("cp_sync", cp_sync, True), ("cp", cp, False)):
                    seconds, used = _cp(paths, base / name, sync)
                    times.append(seconds)
                    cpu[name].append(used)
                    shutil.rmtree(base / name)
                loads.append(os.getloadavg()[0])
                say(
                    f"  round {r + 1}: ours {total / ours[-1] / 1e6:,.0f} MB/s, cp + sync "
                    f"{total / cp_sync[-1] / 1e6:,.0f} MB/s, cp {total / cp[-1] / 1e6:,.0f} MB/s"
                )
    mb_s = {
        name: _spread([total / s / 1e6 for s in times])
        for name, times in (("ours", ours), ("cp_sync", cp_sync), ("cp", cp))
    }
    return {
        "files": count,
        "bytes": total,
        "rounds": rounds,
        "mb_s": mb_s,
        "ratio_to_cp_sync": _spread([b / o for o, b in zip(ours, cp_sync, strict=True)]),
        "ratio_to_cp": _spread([b / o for o, b in zip(ours, cp, strict=True)]),
        "cpu_s_per_gb": {k: statistics.median(v) / (total / 1e9) for k, v in cpu.items()},
        "load_average": _spread(loads),
    }


# -- many small files ---------------------------------------------------------------------


def _minimal_copies(sources: list[Path], targets: list[Path], threads: int) -> tuple[float, float]:
    """(seconds, CPU seconds) of read + write + fsync of each file on ``threads`` threads,
    then an fsync of each target directory: durable copies with nothing else."""
    for d in sorted({t.parent for t in targets}):
        d.mkdir(parents=True, exist_ok=True)
    os.sync()

    def one(pair: tuple[Path, Path]) -> None:
        with open(pair[0], "rb", buffering=0) as f:
            data = f.read()
        fd = os.open(pair[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    cpu0 = time.process_time()  # this process, all threads
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, zip(sources, targets, strict=True)):
            pass
    for d in sorted({t.parent for t in targets}):
        fsync_dir(str(d))
    return time.perf_counter() - t0, time.process_time() - cpu0


def _daemons_ready(procs: list[psutil.Process]) -> None:
    """Wait until the daemons have started (imported, connected, idle): their start costs
    a second of CPU each, once per process, not per copy."""
    last = -1.0
    for _ in range(300):
        time.sleep(0.5)
        used = sum(sum(p.cpu_times()[:2]) for p in procs)
        if used - last < 0.02:
            return
        last = used
    raise RuntimeError("the transfer daemons did not settle")


def _daemons_cpu(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)  # user + system, all threads


def _transfers(archive: Archive, dataset: str, daemons: int, say: Say) -> tuple[float, float]:
    """(seconds from the rule added to the rule OK, CPU seconds the daemons used meanwhile),
    with ``daemons`` ``dpps daemon transfer`` processes already running, as in production."""
    env = dict(os.environ, DPPS_WORKSPACE=str(archive.config.workspace))
    dpps = str(Path(sys.executable).with_name("dpps"))
    cmd = [dpps, "daemon", "transfer", "--sleep", "0.2", "--log-level", "WARNING"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL) for _ in range(daemons)]
    try:
        watched = [psutil.Process(p.pid) for p in procs]
        _daemons_ready(watched)
        cpu0 = _daemons_cpu(watched)
        t0 = time.perf_counter()
        rule_id = archive.add_rule(dataset, copies=2, rses="offsite&type=disk")
        _evaluate(archive)
        last = time.monotonic()
        while not _rule_ok(archive, rule_id):
            time.sleep(0.1)
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a transfer daemon died")
            if time.monotonic() - last > 10:
                say(f"  {_done(archive):,} copies made and verified")
                last = time.monotonic()
        return time.perf_counter() - t0, _daemons_cpu(watched) - cpu0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)


def bench_small(
    catalog_url: str | None, n_files: int, size: int, daemons: int, say: Say
) -> dict[str, Any]:
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="dpps-bench-copy-") as tmp:
        base = Path(tmp)
        with _archive(catalog_url, base) as archive:
            say(f"writing {n_files:,} files of {size} bytes")
            _make_files(archive, "/bench/small", n_files, size, say)
            threads = archive.config.transfers.threads * daemons
            os.sync()
            say(f"dpps transfers: {daemons} daemons, {2 * n_files:,} copies")
            seconds, cpu = _transfers(archive, "/bench/small", daemons, say)
            loads.append(os.getloadavg()[0])
            src = Path(archive.storage("CTAO-N").root)
            sources = sorted(p for p in src.rglob("*.dat"))
            say(f"baseline: read + write + fsync of the same copies on {threads} threads")
            targets = [base / copy / p.relative_to(src) for copy in ("b1", "b2") for p in sources]
            base_s, base_cpu = _minimal_copies(sources + sources, targets, threads)
            loads.append(os.getloadavg()[0])
    copies = 2 * n_files
    return {
        "files": n_files,
        "bytes_per_file": size,
        "daemons": daemons,
        "threads_in_all": threads,
        "seconds": seconds,
        "files_per_s": n_files / seconds,
        "copies_per_s": copies / seconds,
        "cpu_ms_per_copy": 1000 * cpu / copies,
        "baseline_copies_per_s": copies / base_s,
        "baseline_cpu_ms_per_copy": 1000 * base_cpu / copies,
        "ratio_to_baseline": base_s / seconds,
        "load_average": _spread(loads),
    }


def _rusage_cpu() -> float:
    """CPU seconds of this process, all threads, user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_copy_path(
    n_files: int, size: int, threads: int, rounds: int, say: Say
) -> dict[str, Any]:
    """CPU per copy of ``copy_replica`` alone (open, path checks, kernel copy, read back and
    hash the destination, fsync, publication; one directory fsync per directory), against
    the read + write + fsync loop on the same files, rounds interleaved."""
    ours_s: list[float] = []
    ours_cpu: list[float] = []
    loop_s: list[float] = []
    loop_cpu: list[float] = []
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="dpps-bench-copy-") as tmp:
        base = Path(tmp)
        (base / "A").mkdir()
        source = StorageElement("A", str(base / "A"))
        block = os.urandom(size + n_files)
        files: list[tuple[str, dict[str, str]]] = []
        for i in range(n_files):  # the layout of the catalogued benchmark's files
            rel = f"ctao/bench/small/d{i // 1000:04d}/f_{i:07d}.dat"
            Path(source.resolve(rel)).parent.mkdir(parents=True, exist_ok=True)
            Path(source.resolve(rel)).write_bytes(block[i : i + size])
            files.append((rel, source.checksum(rel, ["adler32", "blake3"])[1]))
        sources = [Path(source.resolve(rel)) for rel, _ in files]
        for r in range(rounds):
            (base / f"B{r}").mkdir()
            dest = StorageElement("B", str(base / f"B{r}"))
            os.sync()

            def one(job: tuple[str, dict[str, str]], dest: StorageElement = dest) -> str | None:
                rel, digests = job
                return copy_replica(
                    source, rel, dest, rel, digests, size=size, sync_dir=False
                ).unsynced_dir

            cpu0, t0 = _rusage_cpu(), time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                directories = set(pool.map(one, files))
            for directory in sorted(d for d in directories if d):
                fsync_dir(directory)
            ours_s.append(time.perf_counter() - t0)
            ours_cpu.append(_rusage_cpu() - cpu0)
            targets = [base / f"L{r}" / p.relative_to(base / "A") for p in sources]
            seconds, cpu = _minimal_copies(sources, targets, threads)
            loop_s.append(seconds)
            loop_cpu.append(cpu)
            loads.append(os.getloadavg()[0])
            say(
                f"  round {r + 1}: copy_replica {1000 * ours_cpu[-1] / n_files:.3f} ms per "
                f"copy, loop {1000 * loop_cpu[-1] / n_files:.3f} ms"
            )
    return {
        "files": n_files,
        "bytes_per_file": size,
        "threads": threads,
        "rounds": rounds,
        "copies_per_s": _spread([n_files / s for s in ours_s]),
        "cpu_ms_per_copy": _spread([1000 * c / n_files for c in ours_cpu]),
        "baseline_copies_per_s": _spread([n_files / s for s in loop_s]),
        "baseline_cpu_ms_per_copy": _spread([1000 * c / n_files for c in loop_cpu]),
        "cpu_ratio": _spread([o / b for o, b in zip(ours_cpu, loop_cpu, strict=True)]),
        "load_average": _spread(loads),
    }


def run(
    large_files: int = 8,
    large_mb: int = 256,
    rounds: int = 5,
    small_files: int = 20_000,
    small_size: int = 4096,
    copy_path_files: int = 5000,
    daemons: int = 2,
    postgres: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    say: Say = (lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if (
        rounds < 1
        or daemons < 1
        or large_files < 0
        or small_files < 0
        or copy_path_files < 0
        or large_mb < 1
        or small_size < 1
    ):
        raise SystemExit("--rounds, --daemons, --large-mb, --small-size must be >= 1; counts >= 0")
    results: dict[str, Any] = {}
    if copy_path_files:
        threads = TransferConfig().threads * daemons  # as many as the daemons have
        say(f"copy path alone: {copy_path_files:,} files on {threads} threads, {rounds} rounds")
        results["copy_path"] = bench_copy_path(copy_path_files, small_size, threads, rounds, say)
    with catalogs(postgres) as backends:
        for backend, new_url in backends:
            if large_files:
                say(f"[{backend}] {large_files} x {large_mb} MiB, {rounds} rounds")
                results[f"large_{backend}"] = bench_large(
                    new_url(), large_files, large_mb, rounds, say
                )
            if small_files:
                say(f"[{backend}] copies=2 rule over {small_files:,} small files")
                results[f"small_{backend}"] = bench_small(
                    new_url(), small_files, small_size, daemons, say
                )
    return results


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _range(s: dict[str, float], fmt: str = ",.0f") -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})"


def render(results: dict[str, Any]) -> str:
    lines = [
        "| benchmark | figure, median (min-max) | baseline (same run) | ratio | floor | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        if key.startswith("large_"):
            gib = r["bytes"] / 2**30
            what = f"{key}: {r['files']} files, {gib:.1f} GiB, {r['rounds']} rounds"
            mb, to_sync, to_cp = r["mb_s"], r["ratio_to_cp_sync"], r["ratio_to_cp"]
            lines.append(
                f"| {what}, verified + fsynced | {_range(mb['ours'])} MB/s | cp + sync "
                f"{_range(mb['cp_sync'])} MB/s | {_range(to_sync, '.2f')}x | "
                f">= {LARGE_FLOOR}x | {_verdict(to_sync['median'] >= LARGE_FLOOR)} |"
            )
            lines.append(
                f"| {key}: same | {_range(mb['ours'])} MB/s | plain cp {_range(mb['cp'])} MB/s "
                f"| {_range(to_cp, '.2f')}x | - | info |"
            )
            cpu = r["cpu_s_per_gb"]
            lines.append(
                f"| {key}: CPU seconds per GB (load average {_range(r['load_average'], '.1f')})"
                f" | {cpu['ours']:.2f} | cp + sync {cpu['cp_sync']:.2f}, cp {cpu['cp']:.2f} | "
                f"{cpu['ours'] / max(cpu['cp_sync'], 1e-9):.1f}x | - | info |"
            )
        elif key == "copy_path":
            cpu, base = r["cpu_ms_per_copy"], r["baseline_cpu_ms_per_copy"]
            lines.append(
                f"| copy path alone: copy_replica of {r['files']:,} files of "
                f"{r['bytes_per_file']} B, {r['threads']} threads, no catalog, {r['rounds']} "
                f"rounds: CPU per copy | {_range(cpu, '.3f')} ms | read+write+fsync loop "
                f"{_range(base, '.3f')} ms | {_range(r['cpu_ratio'], '.1f')}x | - | info |"
            )
            lines.append(
                f"| copy path alone: copies/s | {_range(r['copies_per_s'])} | loop "
                f"{_range(r['baseline_copies_per_s'])} | - | - | info |"
            )
        elif key.startswith("small_"):
            lines.append(
                f"| {key}: {2 * r['files']:,} copies of {r['bytes_per_file']} B verified + "
                f"fsynced, rule added -> OK, {r['daemons']} daemons | "
                f"{r['files_per_s']:,.0f} files/s "
                f"({r['copies_per_s']:,.0f} copies/s) | read+write+fsync loop, "
                f"{r['threads_in_all']} threads: {r['baseline_copies_per_s']:,.0f} copies/s | "
                f"{r['ratio_to_baseline']:.2f}x | >= {SMALL_FLOOR:,.0f} files/s | "
                f"{_verdict(r['files_per_s'] >= SMALL_FLOOR)} |"
            )
            lines.append(
                f"| {key}: CPU per copy (load average {_range(r['load_average'], '.1f')}) | "
                f"{r['cpu_ms_per_copy']:.2f} ms | loop {r['baseline_cpu_ms_per_copy']:.2f} ms | "
                f"{r['cpu_ms_per_copy'] / max(r['baseline_cpu_ms_per_copy'], 1e-9):.1f}x | - "
                "| info |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, default, meaning in (
        ("--large-files", 8, "large files (0 to skip)"),
        ("--large-mb", 256, "MiB per large file"),
        ("--rounds", 5, "interleaved large-file rounds"),
        ("--small-files", 20_000, "small files, two copies each (0 to skip)"),
        ("--small-size", 4096, "bytes per small file"),
        ("--copy-path-files", 5000, "files for the copy path alone, no catalog (0 to skip)"),
        ("--daemons", 2, "transfer daemon processes for the small files"),
    ):
        parser.add_argument(flag, type=int, default=default, help=meaning)
    parser.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    parser.add_argument("--json", action="store_true", help="print JSON")
    options = vars(parser.parse_args())
    as_json = options.pop("json")
    results = run(**options, quiet=as_json)  # the options are named as run's parameters
    print(json.dumps(results, indent=2) if as_json else render(results))


if __name__ == "__main__":
    main()
