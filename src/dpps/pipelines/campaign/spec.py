"""What a reprocessing campaign is: a query, a new software version, and how to run it.

A campaign is named; the name is the key that makes a rerun idempotent (its products carry
``meta.campaign`` and its jobs are named after it), so the same name with the same query finds
what the first run did instead of doing it again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from dpps.core.errors import InvalidInput

#: What defines a campaign: a rerun under the same name must keep these (the others - priority,
#: timeout, attempts - say how to run it and may change).
IDENTITY = ("query", "software_version", "category", "activity", "configs", "models", "irf")
#: The steps of a block (the observing night's chain) whose tool options a campaign may set.
STEPS = ("camera", "atmosphere", "dl1", "dl2", "dl3", "quality")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """Everything that defines one campaign (validated on construction)."""

    query: str
    software_version: str
    name: str = ""
    category: str = "C"
    activity: str = "reprocessing"
    priority: int = 3
    #: Per step (``camera``, ``atmosphere``, ``dl1``, ``dl2``, ``dl3``, ``quality``): tool
    #: options merged into that step's configuration (``dl2.target`` names the target).
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The models (``datapipe-train`` output) and IRF (``datapipe-irf`` output) to use; None:
    #: the newest archived ones, and without any the campaign stops after DL1 / DL2.
    models: str | None = None
    irf: str | None = None
    timeout_s: float = 3600.0
    #: Attempts per job (None: the WMS default, ``wms.max_attempts``).
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise InvalidInput(
                'a campaign needs a metadata query (e.g. "obs_id in (1, 2)"): an empty '
                "query would reprocess every DL0 file of the archive"
            )
        if not self.software_version.strip():
            raise InvalidInput("give the new software version (--software-version)")
        if not self.name:
            slug = re.sub(r"[^A-Za-z0-9_.+-]+", "-", self.software_version).strip("-")
            object.__setattr__(self, "name", f"reprocessing-{slug}"[:64])
        if not _NAME.match(self.name):
            raise InvalidInput(
                f"campaign name {self.name!r}: use letters, digits and . _ + - (at most 64)"
            )
        if self.category not in ("B", "C"):
            raise InvalidInput(f"category must be B or C, not {self.category!r}")
        unknown = sorted(set(self.configs) - set(STEPS))
        if unknown:
            raise InvalidInput(f"unknown step(s) in the configuration: {unknown} (use {STEPS})")
        if not 0 <= self.priority <= 10:
            raise InvalidInput(f"priority must be 0..10, not {self.priority}")

    def to_mapping(self) -> dict[str, Any]:
        """JSON-able form: the campaign record stores it, a REST request carries it."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["configs"] = {step: dict(options) for step, options in self.configs.items()}
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CampaignSpec:
        """The inverse of ``to_mapping``; unknown keys are refused, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown campaign field(s) {unknown} (known: {sorted(known)})")
        return cls(**dict(data))

    def step_config(self, step: str) -> dict[str, Any]:
        return dict(self.configs.get(step, {}))
