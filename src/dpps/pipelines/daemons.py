"""The pipelines' daemons by name, in the form ``dpps.bdms.daemons.register`` takes them.

Kept apart from the daemons themselves so that listing daemons imports nothing heavy; the CLI,
which combines the packages, registers these into the archive's registry.
"""

from __future__ import annotations

#: name -> ("module:function", summary)
REGISTRY: dict[str, tuple[str, str]] = {
    "campaigns": (
        "dpps.pipelines.campaign.record:daemon",
        "Run reprocessing campaigns queued over REST (dpps campaign reprocess), one at a "
        "time; take over one whose runner died.",
    ),
}
