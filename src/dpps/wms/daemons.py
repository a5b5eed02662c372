"""The WMS's daemons, declared by name in ``dpps.core.daemon.REGISTRY``.

Importing this module registers them (the CLI imports it beside the archive's and the
pipelines' declarations). Each daemon is made from a ``dpps.catalog.context.CatalogContext``;
the job manager's ``drain()`` (after a ``--once`` pass) runs the queued work to the end and
its ``close()`` stops the executor and gives back what it held. The heavy modules (executors,
the manager, transformations) are imported when a daemon starts, so listing daemons stays
cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpps.catalog.context import CatalogContext
from dpps.core.daemon import Daemon, DaemonContext, register

if TYPE_CHECKING:
    from dpps.wms.manager import JobManager


def make_manager(
    catalog: CatalogContext, executor: str | None = None, *, scheduler: str | None = None
) -> JobManager:
    """A job manager on ``executor`` (default: ``wms.executor``); unknown names refused."""
    from dpps.core.errors import InvalidInput
    from dpps.wms.executors import EXECUTORS, make_executor
    from dpps.wms.manager import JobManager

    name = executor or catalog.config.wms.executor
    if name not in EXECUTORS:
        raise InvalidInput(f"unknown executor {name!r} (use {', '.join(EXECUTORS)})")
    return JobManager(
        catalog.config,
        catalog.sessions,
        make_executor(name, catalog.config, scheduler=scheduler),
    )


class ManagerDaemon(Daemon):
    """The job manager as a daemon: the configured executor (``wms.executor``)."""

    #: Idle polling: a job submitted to an idle manager starts within ``max_sleep_s``.
    sleep_s = 0.2
    max_sleep_s = 2.0

    def __init__(
        self, catalog: CatalogContext, executor: str | None = None, *, scheduler: str | None = None
    ) -> None:
        self.manager = make_manager(catalog, executor, scheduler=scheduler)

    def run_once(self, ctx: DaemonContext) -> int:
        return self.manager.run_once(ctx)

    def drain(self) -> None:
        """A ``--once`` pass hands jobs to the executor: run them, and what they make ready
        (queued jobs, next workflow steps), to the end before the command returns."""
        self.manager.run_queue()

    def close(self) -> None:
        """Stop the executor; jobs still in flight are given back (requeued)."""
        self.manager.close()


class TransformerDaemon(Daemon):
    """The transformation daemon: book new files, create tasks, settle finished ones."""

    sleep_s = 1.0
    max_sleep_s = 10.0

    def __init__(self, catalog: CatalogContext) -> None:
        self.catalog = catalog

    def run_once(self, ctx: DaemonContext) -> int:
        from dpps.wms import transformations

        return transformations.one_pass(self.catalog.sessions, self.catalog.config, ctx.instance)


register(
    "wms-manager",
    "dpps.wms.daemons:ManagerDaemon",
    "Match and dispatch jobs to the executor, reschedule stalled ones, advance workflows.",
)
register(
    "wms-transformer",
    "dpps.wms.daemons:TransformerDaemon",
    "Turn files newly matching each transformation into tasks, once each; retry failed "
    "tasks, then mark their files problematic.",
)

#: The WMS's daemons (``dpps wms daemon NAME`` accepts only these).
NAMES = ("wms-manager", "wms-transformer")
