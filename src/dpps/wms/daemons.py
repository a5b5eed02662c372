"""The WMS's daemons by name, in the same form as ``dpps.bdms.daemons`` (merged in the CLI).

Each factory takes the ``Archive`` and returns a ``run_once(ctx) -> int``; the job manager's
also has ``close()`` (stop the executor, give back what it held). The WMS cannot register in the
bdms registry (bdms must not import wms), so the CLI layer merges ``REGISTRY`` below with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dpps.core.daemon import DaemonContext

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive


class ManagerDaemon:
    """The job manager as a daemon: the configured executor, created on first use."""

    def __init__(
        self,
        archive: Archive,
        executor: str | None = None,
        *,
        scheduler: str | None = None,
        drain: bool = False,
    ) -> None:
        from dpps.wms.api import WMS

        self.manager = WMS(archive).manager(executor, scheduler=scheduler)
        self.drain = drain

    def __call__(self, ctx: DaemonContext) -> int:
        return self.manager.run_once(ctx)

    def close(self) -> None:
        """Stop; with ``drain`` (a ``--once`` run) let the dispatched jobs finish first."""
        if self.drain:
            self.manager.drain()
        self.manager.close()


def manager(archive: Archive) -> ManagerDaemon:
    return ManagerDaemon(archive)


def transformer(archive: Archive) -> Any:
    from dpps.wms import transformations

    def run_once(ctx: DaemonContext) -> int:
        return transformations.run_once(archive.sessions, archive.config, ctx.instance)

    return run_once


#: name -> ("module:function", summary), like ``dpps.bdms.daemons.register`` takes them.
REGISTRY: dict[str, tuple[str, str]] = {
    "wms-manager": (
        "dpps.wms.daemons:manager",
        "Match and dispatch jobs to the executor, reschedule stalled ones, advance workflows.",
    ),
    "wms-transformer": (
        "dpps.wms.daemons:transformer",
        "Turn files newly matching each transformation into tasks, once each; retry failed "
        "tasks, then mark their files problematic.",
    ),
}
