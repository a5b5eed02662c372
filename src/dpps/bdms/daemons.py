"""The archive's daemons, declared by name in ``dpps.core.daemon.REGISTRY``.

Importing this module registers them (the CLI imports it with the WMS's and the pipelines'
declarations when it runs ``dpps daemon NAME`` or ``dpps serve``). Each target is the daemon's
``dpps.core.daemon.Daemon`` subclass, made from a ``dpps.catalog.context.CatalogContext`` and
imported only when the daemon starts. Looping, sleeping, heartbeats, SIGTERM are
``dpps.core.daemon``'s. To add a daemon, append one ``register(...)`` line below.
"""

from __future__ import annotations

from dpps.core.daemon import REGISTRY, register

__all__ = ["REGISTRY"]

register(
    "evaluator",
    "dpps.bdms.replication.evaluator:Evaluator",
    "Turn replication rules into the transfers and locks they still need; mark rules "
    "OK, REPLICATING or STUCK.",
)
register(
    "transfer",
    "dpps.bdms.transfer.daemon:TransferDaemon",
    "Copy files between RSEs with checksum verification, retries with backoff and per-link "
    "limits.",
)
register(
    "stager",
    "dpps.bdms.staging.stager:Stager",
    "Complete tape stage requests after the RSE's staging delay; expire buffer copies.",
)
register(
    "reaper",
    "dpps.bdms.preservation.reaper:Reaper",
    "Delete replicas past their retention: expired rules and lifetimes, on-site copies once "
    "preserved off-site, tombstones.",
)
register(
    "auditor",
    "dpps.bdms.preservation.auditor:Auditor",
    "Re-read replicas oldest-verified first (rate-limited); mark damaged ones BAD, alarm on "
    "lost files.",
)
register(
    "ingest",
    "dpps.bdms.ingestion.queue:from_config",
    "Take ACADA files from the landing area (trigger files) into the archive in place, with "
    "datasets, rules and quarantine.",
)

#: The archive's daemons (``REGISTRY`` holds every package's that this process imported).
NAMES = ("evaluator", "transfer", "stager", "reaper", "auditor", "ingest")
