"""Simulation productions: a grid of run cards (YAML or ECSV) -> one WMS job per run.

A production file names the production, gives defaults for every run card field, and lists
the runs, explicitly or as a cartesian grid::

    name: prod-2026a
    lfn_prefix: /ctao/sim          # outputs go to <lfn_prefix>/<name>/<file>
    defaults: {n_showers: 2000, max_impact_m: 400, site: north}
    grid:                          # every combination; or ``runs:`` a list of mappings
      particle: [gamma, proton]
      seed: [1, 2, 3]

An ECSV file is a table with one row per run (columns are run card fields) whose header meta
may hold ``name``, ``lfn_prefix`` and ``defaults``. Runs without an ``obs_id`` are numbered
from ``first_obs_id`` (default 1) in order; obs_ids must be unique within a production, since
they name the files. Every card is validated before anything is submitted, so a typo in row 57
is an error with nothing submitted, not 56 jobs and a failure.

Each run becomes a WMS job of the Python tool ``dpps.pipelines.tool:wms_entry`` with
parameters ``{"tool": "simpipe-simulate", "config": <card>}``; the WMS runs it in a sandbox and
registers the DL0 files and the truth table (category SIM; ``LIFETIME_DAYS`` in the headers
sets their end of life) under the production's LFN prefix. ``run_locally`` runs the same cards
without an archive, for a laptop.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from dpps.core.errors import ConfigError, InvalidInput
from dpps.core.identifiers import validate_lfn
from dpps.pipelines.simpipe.runcard import RunCard
from dpps.pipelines.tool import ToolResult, run_tool

if TYPE_CHECKING:
    from dpps.wms.api import WMS
    from dpps.wms.types import Submitted

TOOL = "simpipe-simulate"
ENTRY = "dpps.pipelines.tool:wms_entry"
_TOP_KEYS = {"name", "lfn_prefix", "defaults", "runs", "grid", "first_obs_id"}


@dataclass(frozen=True)
class Production:
    name: str
    lfn_prefix: str
    cards: tuple[RunCard, ...]

    def lfn_dir(self) -> str:
        return f"{self.lfn_prefix.rstrip('/')}/{self.name}"


def _card(values: Mapping[str, Any], where: str) -> RunCard:
    try:
        return RunCard.model_validate(dict(values))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None


def expand(spec: Mapping[str, Any], source: str = "production") -> Production:
    """A production mapping (the YAML form) -> validated run cards."""
    unknown = set(spec) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{source}: unknown keys {sorted(unknown)} (allowed: {', '.join(sorted(_TOP_KEYS))})"
        )
    name = str(spec.get("name") or "")
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"{source}: 'name' must be a simple word (letters, digits, - _ .)")
    prefix = str(spec.get("lfn_prefix", "/ctao/sim"))
    validate_lfn(f"{prefix.rstrip('/')}/{name}/x")
    defaults = dict(spec.get("defaults") or {})
    runs: list[dict[str, Any]] = [dict(r) for r in (spec.get("runs") or [])]
    grid = spec.get("grid")
    if grid:
        if not isinstance(grid, Mapping) or not all(isinstance(v, list) for v in grid.values()):
            raise ConfigError(f"{source}: 'grid' maps run card fields to lists of values")
        keys = list(grid)
        runs += [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(grid[k] for k in keys))
        ]
    if not runs:
        raise ConfigError(f"{source}: no runs (give 'runs' or 'grid')")
    next_obs = int(spec.get("first_obs_id", 1))
    cards: list[RunCard] = []
    for i, run in enumerate(runs, start=1):
        values = {**defaults, **run}
        if "obs_id" not in values:
            values["obs_id"] = next_obs
        next_obs = int(values["obs_id"]) + 1
        values.setdefault("seed", values["obs_id"])
        cards.append(_card(values, f"{source}: run {i}"))
    seen: dict[int, int] = {}
    for i, card in enumerate(cards, start=1):
        if card.obs_id in seen:
            raise ConfigError(
                f"{source}: runs {seen[card.obs_id]} and {i} share obs_id {card.obs_id}"
            )
        seen[card.obs_id] = i
    return Production(name, prefix, tuple(cards))


def load(path: Path) -> Production:
    """Read a production file (``.yaml``/``.yml`` or ``.ecsv``)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"production file {path} does not exist")
    if path.suffix.lower() == ".ecsv":
        return _load_ecsv(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read production {path}: {exc}") from None
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{path}: a production is a mapping (name, defaults, runs/grid)")
    return expand(spec, path.name)


def _load_ecsv(path: Path) -> Production:
    from astropy.table import Table

    try:
        table = Table.read(path, format="ascii.ecsv")
    except Exception as exc:  # astropy raises many types for a malformed ECSV
        raise ConfigError(f"cannot read production {path}: {exc}") from None
    runs = []
    for row in table:
        values: dict[str, Any] = {}
        for name in table.colnames:
            value = row[name]
            values[name] = value.item() if hasattr(value, "item") else value
        runs.append(values)
    meta = dict(table.meta)
    spec = {k: v for k, v in meta.items() if k in _TOP_KEYS - {"runs", "grid"}}
    spec.setdefault("name", path.stem)
    return expand({**spec, "runs": runs}, path.name)


def job_tool(production: Production, card: RunCard, *, rse: str | None = None) -> Any:
    """The WMS tool of one run: the pipeline entry point and where its outputs go."""
    from dpps.wms.builder import tool_python
    from dpps.wms.spec import OutputPort

    lfn = f"{production.lfn_dir()}/$(self.basename)"
    outputs = [
        OutputPort.model_validate(
            {"name": "dl0", "glob": "*.fits.fz", "array": True, "lfn": lfn, "rse": rse}
        ),
        OutputPort.model_validate(
            {"name": "truth", "glob": "*_truth.fits", "lfn": lfn, "rse": rse}
        ),
    ]
    return tool_python(f"{production.name}-run{card.obs_id:06d}", ENTRY, outputs=outputs)


def submit(
    wms: WMS,
    production: Production,
    *,
    executor: str | None = None,
    rse: str | None = None,
    priority: int = 3,
) -> list[Submitted]:
    """Submit every run as a WMS job (activity ``simulation``); returns what was created."""
    from dpps.wms.types import SubmitOptions

    submitted = []
    for card in production.cards:
        opts = SubmitOptions(
            name=f"{production.name}-run{card.obs_id:06d}",
            priority=priority,
            activity="simulation",
            executor=executor,
        )
        submitted.append(
            wms.submit_job(
                job_tool(production, card, rse=rse),
                {},
                opts=opts,
                parameters={"tool": TOOL, "config": card.model_dump(mode="json")},
            )
        )
    return submitted


def run_locally(
    production: Production,
    output_dir: Path,
    *,
    on_run: Callable[[RunCard, ToolResult], None] | None = None,
) -> list[ToolResult]:
    """Run every card here, each into ``output_dir/run<obs_id>``: no archive needed."""
    results = []
    for card in production.cards:
        result = run_tool(
            TOOL, card.model_dump(mode="json"), {}, Path(output_dir) / f"run{card.obs_id:06d}"
        )
        results.append(result)
        if on_run is not None:
            on_run(card, result)
    return results


def summary(cards: Sequence[RunCard]) -> dict[str, Any]:
    """What a production throws, per particle (for the CLI)."""
    out: dict[str, Any] = {}
    for card in cards:
        entry = out.setdefault(card.particle, {"runs": 0, "showers": 0})
        entry["runs"] += 1
        entry["showers"] += card.n_showers
    return out
