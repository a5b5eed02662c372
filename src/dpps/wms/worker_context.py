"""A worker process's catalog connection per workspace, kept between jobs.

A pool process or a Dask worker runs many jobs of few workspaces: opening an engine per job
would cost a connection (over the WAN, at a remote site) each time, so one is kept per
workspace, the least recently used closed beyond a few. A worker of a remote site names its
own workspace in ``DPPS_WORKER_WORKSPACE``: its ``dpps.yaml`` has its own storage as local
paths and the other sites' as URLs, and the manager's workspace path may not exist there.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dpps.catalog.engine import make_engine, make_sessionmaker
from dpps.core.config import Config, load_config
from dpps.core.workspace import CONFIG_NAME


@dataclass
class WorkerContext:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    #: Which configuration file the context was made from (device, inode, mtime).
    stamp: tuple[int, int, int] = (0, 0, 0)


_CONTEXTS: OrderedDict[str, WorkerContext] = OrderedDict()
_LOCK = threading.Lock()
_MAX_CONTEXTS = 4
#: The worker's own workspace, when it is not the manager's (a site's worker).
WORKER_WORKSPACE_ENV = "DPPS_WORKER_WORKSPACE"


def _stamp(workspace: str) -> tuple[int, int, int]:
    """Identity of the workspace's configuration file; (0, 0, 0) if it cannot be read (the
    load below then reports why)."""
    try:
        st = (Path(workspace) / CONFIG_NAME).stat()
    except OSError:
        return (0, 0, 0)
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


def context(workspace: str) -> WorkerContext:
    """One engine per workspace per worker process (shared by a Dask worker's threads); the
    least recently used ones are closed, so a long-lived worker holds few connections.

    A cached context is used only while the workspace's configuration file is the one it was
    made from: a workspace removed and made again at the same path (a new catalog), or whose
    configuration was edited, gets a new one. Without this check a long-lived worker kept
    reading the old catalog (a SQLite file already unlinked), could not find its jobs, and
    the manager dispatched them again and again."""
    stamp = _stamp(workspace)
    with _LOCK:
        ctx = _CONTEXTS.get(workspace)
        if ctx is not None and ctx.stamp != stamp:
            del _CONTEXTS[workspace]
            ctx.engine.dispose()
            ctx = None
        if ctx is None:
            config = load_config(Path(workspace))
            engine = make_engine(config.catalog_url(), config.catalog.busy_timeout_s)
            ctx = WorkerContext(config, engine, make_sessionmaker(engine), stamp)
            _CONTEXTS[workspace] = ctx
            while len(_CONTEXTS) > _MAX_CONTEXTS:
                _old, stale = _CONTEXTS.popitem(last=False)
                stale.engine.dispose()
        _CONTEXTS.move_to_end(workspace)
        return ctx
