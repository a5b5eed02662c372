"""Finding the workspace a command works on, the way git finds its repository."""

from __future__ import annotations

import os
from pathlib import Path

from dpps.core.errors import NotFound

CONFIG_NAME = "dpps.yaml"
ENV_WORKSPACE = "DPPS_WORKSPACE"


def find_workspace(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the workspace directory: explicit, else $DPPS_WORKSPACE, else the cwd or a parent.

    A workspace is a directory holding ``dpps.yaml``.
    """
    if explicit is None:
        explicit = os.environ.get(ENV_WORKSPACE) or None
    if explicit is not None:
        path = Path(explicit).expanduser().resolve()
        if not (path / CONFIG_NAME).is_file():
            raise NotFound(f"no dpps workspace at {path} (missing {CONFIG_NAME}; run 'dpps init')")
        return path
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise NotFound(
        f"no dpps workspace in {cwd} or its parents: run 'dpps init', pass --workspace "
        f"or set {ENV_WORKSPACE}"
    )
