"""CalibPipe and QualPipe benchmarks: camera calibration throughput, quality report time.

Each figure is printed next to a baseline measured in the same run on the same files:

* camera calibration (``calibpipe-camera``: integrity check, two passes, F-factor, product)
  of ACADA-simulated LSTCam calibration events (1855 pixels x 40 samples); baseline: reading
  the same events once with protozfits and nothing else (the least any calibration must do);
* quality report (``qualpipe-report`` with plots and HTML) of those calibration products and
  a DL2 file; baseline: the same report without plots.

Floors (set for the observing night, which must run in < 3 minutes on 2 cores; the issue
gives none for these steps): calibration >= 200 events/s and within 4x the raw read (it reads
the events twice); a quality report < 10 s.

    python benchmarks/bench_calibpipe.py [--events 400] [--telescopes 2] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from protozfits import File

from dpps.acada.simulate import SimulationConfig, simulate
from dpps.instrument.dl0 import quiet_native_stdout
from dpps.pipelines.tool import run_tool

FLOOR_EVENTS_S = 200.0
FLOOR_READ_RATIO = 4.0
FLOOR_REPORT_S = 10.0


def _raw_read(files: list[Path]) -> int:
    count = 0
    for path in files:
        with File(str(path)) as zfile:
            for event in zfile.Events:
                count += int(np.asarray(event.waveform).size > 0)
    return count


def _dl2(path: Path, n: int) -> Path:
    import astropy.units as u
    from astropy.io import fits
    from astropy.table import QTable

    rng = np.random.default_rng(0)
    table = QTable()
    table["obs_id"] = np.ones(n, dtype=int)
    table["event_id"] = np.arange(n)
    table["time"] = np.sort(rng.uniform(0, 600, n)) * u.s
    table["multiplicity"] = rng.integers(1, 5, n)
    table["reco_energy"] = rng.lognormal(-1, 1, n) * u.TeV
    table["gh_score"] = rng.uniform(0, 1, n)
    for col in ("reco_alt", "reco_az", "pointing_alt", "pointing_az"):
        table[col] = np.full(n, 70.0) * u.deg
    hdu = fits.table_to_hdu(table)
    hdu.name = "EVENTS"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


def run(events: int = 400, telescopes: int = 2, rounds: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-calibpipe-") as tmp:
        root = Path(tmp)
        config = SimulationConfig(
            telescopes=tuple(range(1, telescopes + 1)),
            duration_s=4.0,
            event_rate_hz=events / 4.0 / 0.95,
            calibration_fraction=0.95,
            muon_fraction=0.0,
            streams=("CAL",),
            events_per_chunk=200,
            triggers=False,
            start=dt.datetime(2026, 11, 21, 22),
        )
        with quiet_native_stdout():
            files = simulate(root / "landing", config)
        cal_files = [f for f in files if "_TEL_CAL_" in f.name]
        n_events = _raw_read(cal_files)  # also warms the page cache and the imports
        run_tool("calibpipe-atmosphere", {}, {"weather": [files[-1]]}, root / "warm")
        read_s, calib_s = [], []
        outputs: list[Path] = []
        for i in range(rounds):  # interleaved, so load hits both alike
            started = time.perf_counter()
            _raw_read(cal_files)
            read_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = run_tool("calibpipe-camera", {}, {"dl0": files}, root / f"cal{i}")
            calib_s.append(time.perf_counter() - started)
            assert result.exit_code == 0, result.error
            outputs = [o.path for o in result.outputs]
        dl2 = _dl2(root / "dl2.fits", 20_000)
        inputs = {"calibration": outputs, "dl2": [dl2]}
        plain_s, full_s = [], []
        for i in range(rounds):
            started = time.perf_counter()
            result = run_tool("qualpipe-report", {"plots": False}, inputs, root / f"p{i}")
            plain_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = run_tool("qualpipe-report", {}, inputs, root / f"q{i}")
            full_s.append(time.perf_counter() - started)
            assert result.exit_code == 0, result.error
    read, calib = statistics.median(read_s), statistics.median(calib_s)
    plain, full = statistics.median(plain_s), statistics.median(full_s)
    rate = n_events / calib
    return {
        "events": n_events,
        "telescopes": telescopes,
        "calibration_s": round(calib, 3),
        "calibration_events_per_s": round(rate, 1),
        "raw_read_s": round(read, 3),
        "raw_read_events_per_s": round(n_events / read, 1),
        "calibration_to_read_ratio": round(calib / read, 2),
        "report_s": round(full, 3),
        "report_without_plots_s": round(plain, 3),
        "report_ratio": round(full / plain, 2),
        "floors": {
            "calibration_events_per_s": [FLOOR_EVENTS_S, rate >= FLOOR_EVENTS_S],
            "calibration_to_read_ratio": [FLOOR_READ_RATIO, calib / read <= FLOOR_READ_RATIO],
            "report_s": [FLOOR_REPORT_S, full < FLOOR_REPORT_S],
        },
    }


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=400, help="calibration events per tel")
    parser.add_argument("--telescopes", type=int, default=2, help="LSTCam telescopes (1-4)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    r = run(args.events, args.telescopes, args.rounds)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    floors = r["floors"]
    calib_ok = floors["calibration_events_per_s"][1] and floors["calibration_to_read_ratio"][1]
    print(f"{r['events']} LSTCam calibration events, {r['telescopes']} telescopes")
    print("| figure | measured | baseline (same run) | ratio | floor | verdict |")
    print("|---|---|---|---|---|---|")
    print(
        f"| camera calibration | {r['calibration_events_per_s']:.0f} events/s "
        f"({r['calibration_s']:.2f} s) | protozfits read {r['raw_read_events_per_s']:.0f} "
        f"events/s | {r['calibration_to_read_ratio']:.2f}x the read time | "
        f">= {FLOOR_EVENTS_S:.0f} events/s, <= {FLOOR_READ_RATIO:.0f}x | {_verdict(calib_ok)} |"
    )
    print(
        f"| quality report (2 products + 20,000 DL2 events, plots, HTML) | "
        f"{r['report_s']:.2f} s | without plots {r['report_without_plots_s']:.2f} s | "
        f"{r['report_ratio']:.2f}x | < {FLOOR_REPORT_S:.0f} s | "
        f"{_verdict(floors['report_s'][1])} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
