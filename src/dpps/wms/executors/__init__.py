"""Executors: ``local`` (a process pool) and ``dask`` (a Dask distributed cluster)."""

from __future__ import annotations

from dpps.core.config import Config
from dpps.core.errors import ConfigError
from dpps.wms.executors.base import Executor, Task

EXECUTORS = ("local", "dask")


def make_executor(name: str, config: Config, *, scheduler: str | None = None) -> Executor:
    """The executor called ``name`` as the configuration describes it."""
    if name == "local":
        from dpps.wms.executors.local import LocalExecutor

        return LocalExecutor(config.wms.local_workers)
    if name == "dask":
        from dpps.wms.executors.dask import DaskExecutor

        address = scheduler or config.wms.dask_scheduler
        if not address:
            raise ConfigError("the dask executor needs wms.dask_scheduler (or --scheduler)")
        return DaskExecutor(address)
    raise ConfigError(f"unknown executor {name!r} (use {', '.join(EXECUTORS)})")


__all__ = ["EXECUTORS", "Executor", "Task", "make_executor"]
