"""SimPipe and DataPipe (DL0 -> DL1 -> DL2) throughput, each next to a baseline of the same run.

* ``simpipe-simulate``: telescope images simulated and written per second; baseline: the
  shower model's waveforms alone (``dpps.physics.showers.waveforms``) for the same images, so
  the ratio is the price of the throw, the trigger decisions and the zfits writing;
* ``datapipe-dl1``: images per second; baseline: reading the same DL0 with protozfits only
  (decompressing every waveform), so the ratio is the price of checksums, calibration,
  cleaning and ctapipe's parameters;
* ``datapipe-train`` and ``datapipe-dl2``: seconds and events per second.

The issue sets no floor for these steps; the one budget that involves them is the observing
night (``dpps night`` in under 3 minutes on 2 cores, a later integration). The figures below
say how many images fit in such a budget.

    python benchmarks/bench_pipelines.py [--showers 600] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from protozfits import File

from dpps.physics import showers
from dpps.pipelines.simpipe.instrument import telescopes
from dpps.pipelines.simpipe.runcard import RunCard
from dpps.pipelines.simpipe.throw import image_rng, throw
from dpps.pipelines.tool import run_tool


def _ok(result: Any, what: str) -> Any:
    if result.exit_code != 0:
        raise SystemExit(f"{what} failed: {result.error}")
    return result


def _cpu() -> float:
    return time.process_time()


def run(showers_per_run: int = 600) -> dict[str, Any]:
    """Simulate a gamma and a proton run, process both, train, reconstruct; time each step."""
    out: dict[str, Any] = {"showers_per_run": showers_per_run}
    with tempfile.TemporaryDirectory(prefix="bench-pipelines-") as tmp:
        root = Path(tmp)
        cards = {
            "gamma": {
                "particle": "gamma",
                "n_showers": showers_per_run,
                "obs_id": 1,
                "seed": 1,
                "max_impact_m": 350.0,
                "compression": "zstd1",
            },
            "proton": {
                "particle": "proton",
                "n_showers": 2 * showers_per_run,
                "obs_id": 2,
                "seed": 2,
                "view_cone_deg": 3.0,
                "e_min_tev": 0.1,
                "e_max_tev": 100.0,
                "max_impact_m": 350.0,
                "compression": "zstd1",
            },
        }
        run_tool("simpipe-simulate", {"n_showers": 5}, {}, root / "warm")  # imports, caches
        images = 0
        t0 = time.perf_counter()
        for name, card in cards.items():
            _ok(run_tool("simpipe-simulate", card, {}, root / name), name)
        sim_s = time.perf_counter() - t0
        dl0 = {n: sorted((root / n).glob("*.fits.fz")) for n in cards}
        for files in dl0.values():
            for path in files:
                with File(str(path)) as zf:
                    images += sum(1 for _ in zf.Events)
        # baseline 1: the model's waveforms alone, for as many images
        card = RunCard(**cards["gamma"])  # type: ignore[arg-type]
        tels = telescopes(card.site)
        thrown = throw(card, tels)
        t0 = time.perf_counter()
        done = 0
        while done < images:
            for i in np.flatnonzero(thrown.triggered):
                for tel in tels:
                    rng = image_rng(card, int(i), tel.tel_id)
                    img = showers.shower_image(
                        rng, tel.spec, thrown.shower(int(i), False), tel.x_m, tel.y_m
                    )
                    showers.waveforms(rng, tel.spec, img)
                    done += 1
                    if done >= images:
                        break
                if done >= images:
                    break
        wave_s = time.perf_counter() - t0
        # baseline 2: reading every waveform with protozfits
        t0 = time.perf_counter()
        for files in dl0.values():
            for path in files:
                with File(str(path)) as zf:
                    for ev in zf.Events:
                        np.asarray(ev.waveform).sum()
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        dl1 = {}
        for name in cards:
            truth = sorted((root / name).glob("*_truth.fits"))
            res = _ok(
                run_tool(
                    "datapipe-dl1", {}, {"dl0": dl0[name], "truth": truth}, root / f"{name}-dl1"
                ),
                f"{name} dl1",
            )
            dl1[name] = res.outputs[0].path
        dl1_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _ok(
            run_tool(
                "datapipe-train",
                {"n_estimators": 100},
                {"gammas": [dl1["gamma"]], "protons": [dl1["proton"]]},
                root / "models",
            ),
            "train",
        )
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = _ok(
            run_tool(
                "datapipe-dl2",
                {},
                {"dl1": [dl1["gamma"]], "models": [root / "models" / "models.joblib"]},
                root / "dl2",
            ),
            "dl2",
        )
        dl2_s = time.perf_counter() - t0
        from astropy.table import Table

        events = len(Table.read(res.outputs[0].path, hdu="EVENTS"))
    out.update(
        images=images,
        simulate_images_per_s=images / sim_s,
        baseline_waveforms_images_per_s=images / wave_s,
        simulate_ratio_to_baseline=sim_s / wave_s,
        dl1_images_per_s=images / dl1_s,
        baseline_read_images_per_s=images / read_s,
        dl1_ratio_to_baseline=dl1_s / read_s,
        train_s=train_s,
        dl2_events=events,
        dl2_events_per_s=events / dl2_s,
        night_budget_images=int(180.0 * images / (sim_s + dl1_s)),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--showers", type=int, default=600, help="gamma showers (protons: 2x)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = run(args.showers)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    f = figures
    print(f"images: {f['images']} (4 LSTs, {args.showers} gammas + {2 * args.showers} protons)")
    print(
        f"simpipe-simulate: {f['simulate_images_per_s']:.0f} images/s; waveforms alone "
        f"{f['baseline_waveforms_images_per_s']:.0f}/s (x{f['simulate_ratio_to_baseline']:.1f})"
    )
    print(
        f"datapipe-dl1:     {f['dl1_images_per_s']:.0f} images/s; protozfits read alone "
        f"{f['baseline_read_images_per_s']:.0f}/s (x{f['dl1_ratio_to_baseline']:.1f})"
    )
    print(f"datapipe-train:   {f['train_s']:.1f} s (100 trees)")
    print(f"datapipe-dl2:     {f['dl2_events_per_s']:.0f} events/s ({f['dl2_events']} events)")
    print(
        f"simulate + DL1 in a 3-minute budget: ~{f['night_budget_images']} images "
        "(no floor in the issue)"
    )


if __name__ == "__main__":
    main()
