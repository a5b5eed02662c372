"""The WMS entry point of one step of the observing night (``night.steps:run_step``).

A transformation hands a task every DL0 file of an observation block (telescope events of all
streams, the subarray trigger file, pointing and weather tables); each step needs only some of
them. The workflow template is the same for every block, so the step chooses its files itself
by name (``select``: input name -> shell pattern, e.g. ``{"dl0": "*_TEL_CAL_*"}``), runs the
pipeline tool through ``dpps.pipelines.tool.wms_entry`` (same tool, same provenance record),
and gives outputs whose names are the same for every block (``quality_report.json``) the
observation id as a prefix, so that each block's products get their own LFN.

Parameters (all strings, since workflow step inputs are scalars): ``tool``, ``config`` (JSON),
``select`` (JSON), ``rename`` (JSON list of output names to prefix).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dpps.core.errors import ConfigError, InvalidInput
from dpps.pipelines.tool import EXIT_OK, wms_entry

_OBS = re.compile(r"OBSID(\d{10})|obs(\d{10})|obs_(\d+)\.")
STEP_ENTRY = "dpps.pipelines.night.steps:run_step"


def _json(parameters: Mapping[str, Any], key: str, default: Any) -> Any:
    raw = parameters.get(key)
    if raw in (None, ""):
        return default
    try:
        return json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"night step parameter {key!r} is not JSON: {exc}") from None


def _paths(value: Any) -> list[Path]:
    """File inputs arrive as paths (lists for arrays); scalars (the parameters) are not files."""
    items = value if isinstance(value, list) else [value]
    return [Path(v) for v in items if isinstance(v, Path)]


def select_inputs(inputs: Mapping[str, Any], select: Mapping[str, str]) -> dict[str, list[Path]]:
    """Every File input as a list of paths, those named in ``select`` narrowed to the pattern
    (the step's scalar inputs are its parameters, not files)."""
    chosen = {name: _paths(value) for name, value in inputs.items()}
    for name, pattern in select.items():
        chosen[name] = [p for p in chosen.get(name, []) if fnmatch.fnmatch(p.name, pattern)]
    return {name: paths for name, paths in chosen.items() if paths}


def observation_id(paths: list[Path]) -> int:
    """The one observation the input files belong to (from the ACADA/DataPipe file names)."""
    found = set()
    for path in paths:
        m = _OBS.search(path.name)
        if m:
            found.add(int(next(g for g in m.groups() if g)))
    if len(found) != 1:
        raise InvalidInput(f"night step: inputs name {len(found)} observations ({sorted(found)})")
    return found.pop()


def run_step(*, inputs: Mapping[str, Any], parameters: Mapping[str, Any], outdir: Path) -> int:
    """Select this step's files, run the pipeline tool, prefix block-independent names."""
    tool = str(parameters.get("tool") or "")
    if not tool:
        raise ConfigError("night step: parameter 'tool' is missing")
    config = _json(parameters, "config", {})
    select = _json(parameters, "select", {})
    rename = _json(parameters, "rename", [])
    files = select_inputs(inputs, select)
    if select and not files:
        raise InvalidInput(f"night step {tool}: no input file matches {select}")
    code = wms_entry(
        inputs={k: [str(p) for p in v] for k, v in files.items()},
        parameters={"tool": tool, "config": config},
        outdir=outdir,
    )
    if code == EXIT_OK and rename:
        obs_id = observation_id([p for paths in files.values() for p in paths])
        for name in rename:
            path = Path(outdir) / name
            if path.is_file():
                path.rename(path.with_name(f"obs{obs_id:010d}_{name}"))
    return code
