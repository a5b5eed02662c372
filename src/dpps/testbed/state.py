"""Where a running testbed is written down, so that ``status`` and ``down`` work from another
process, and after a crash.

The state file (``testbed.json`` in the testbed's ``--dir``) holds the plan, the PID of every
process ``up`` started and the RSEs it serves. A pointer file in ``/run`` names the directory
of the testbed that is up, so ``status`` and ``down`` need no ``--dir``. Should both be gone,
``down`` still finds the namespaces by their prefix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_NAME = "testbed.json"
#: Names the directory of the testbed that is up (``/run`` is cleared at boot, as are netns).
POINTER = Path("/run/dpps-testbed/current")


def default_dir() -> Path:
    return Path(os.environ.get("DPPS_TESTBED_DIR", "/var/tmp/dpps-testbed"))


def write(directory: Path, state: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file) and point at it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_NAME
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(temp, path)
    POINTER.parent.mkdir(parents=True, exist_ok=True)
    POINTER.write_text(str(directory.resolve()), encoding="utf-8")


def locate(directory: Path | None) -> Path | None:
    """The directory of the testbed that is up: ``directory`` if given, else the pointer's."""
    if directory is not None:
        return directory
    try:
        return Path(POINTER.read_text(encoding="utf-8").strip())
    except OSError:
        return None


def read(directory: Path | None) -> dict[str, Any] | None:
    """The state of the testbed in ``directory`` (or the one pointed at), None if none."""
    where = locate(directory)
    if where is None:
        return None
    try:
        data = json.loads((where / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def clear(directory: Path | None) -> None:
    """Forget the testbed: its state file, and the pointer if it points there."""
    where = locate(directory)
    if where is not None:
        (where / STATE_NAME).unlink(missing_ok=True)
    try:
        pointed = Path(POINTER.read_text(encoding="utf-8").strip())
    except OSError:
        return
    if where is None or pointed.resolve() == where.resolve():
        POINTER.unlink(missing_ok=True)
