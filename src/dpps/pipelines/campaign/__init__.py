"""Reprocessing campaigns (UC-130-3.1.1): DL0 selected by metadata, staged from tape, run
again through DataPipe with a new software version as category C, verified, and archived as
new versions beside the old products. Start at ``run_campaign``; README.md holds the
invariants."""

from __future__ import annotations

from dpps.pipelines.campaign.run import CampaignReport, run_campaign
from dpps.pipelines.campaign.spec import CampaignSpec

__all__ = ["CampaignReport", "CampaignSpec", "run_campaign"]
