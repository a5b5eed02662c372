"""The pipelines' daemons, declared by name in ``dpps.core.daemon.REGISTRY``.

Importing this module registers them (the CLI imports it beside the archive's and the WMS's
declarations). Kept apart from the daemons themselves so that listing daemons imports nothing
heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpps.catalog.context import CatalogContext
from dpps.core.daemon import register

if TYPE_CHECKING:
    from dpps.pipelines.campaign.record import CampaignDaemon


def campaigns(catalog: CatalogContext) -> CampaignDaemon:
    """The campaign daemon runs whole campaigns, which use the archive's facade: one built on
    the context's engine (no second connection pool), acting as the context's account."""
    from dpps.bdms.archive import Archive
    from dpps.pipelines.campaign.record import CampaignDaemon

    return CampaignDaemon(Archive(catalog.config, account=catalog.account, engine=catalog.engine))


register(
    "campaigns",
    "dpps.pipelines.daemons:campaigns",
    "Run reprocessing campaigns queued over REST (dpps campaign reprocess), one at a "
    "time; take over one whose runner died.",
)

#: The pipelines' daemons.
NAMES = ("campaigns",)
