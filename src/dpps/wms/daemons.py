"""The WMS's daemons by name, in the form ``dpps.bdms.daemons.register`` takes them.

Each factory takes the ``Archive`` and returns a ``run_once(ctx) -> int``; the job manager's
also has ``drain()`` (after a ``--once`` pass: run the queued work to the end) and ``close()``
(stop the executor, give back what it held). bdms must not import wms, so the layer that
combines both, the CLI (``dpps daemon``, ``dpps serve``), registers ``REGISTRY`` below into the
archive's registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpps.core.daemon import DaemonContext

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive


class ManagerDaemon:
    """The job manager as a daemon: the configured executor (``wms.executor``)."""

    #: Idle polling: a job submitted to an idle manager starts within ``max_sleep_s``.
    sleep_s = 0.2
    max_sleep_s = 2.0

    def __init__(
        self, archive: Archive, executor: str | None = None, *, scheduler: str | None = None
    ) -> None:
        from dpps.wms.api import WMS

        self.manager = WMS(archive).manager(executor, scheduler=scheduler)

    def __call__(self, ctx: DaemonContext) -> int:
        return self.manager.run_once(ctx)

    def drain(self) -> None:
        """A ``--once`` pass hands jobs to the executor: run them, and what they make ready
        (queued jobs, next workflow steps), to the end before the command returns."""
        self.manager.run_queue()

    def close(self) -> None:
        """Stop the executor; jobs still in flight are given back (requeued)."""
        self.manager.close()


def manager(archive: Archive) -> ManagerDaemon:
    return ManagerDaemon(archive)


class TransformerDaemon:
    """The transformation daemon: book new files, create tasks, settle finished ones."""

    sleep_s = 1.0
    max_sleep_s = 10.0

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def __call__(self, ctx: DaemonContext) -> int:
        from dpps.wms import transformations

        return transformations.run_once(self.archive.sessions, self.archive.config, ctx.instance)


def transformer(archive: Archive) -> TransformerDaemon:
    return TransformerDaemon(archive)


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
