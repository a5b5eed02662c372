"""Where a campaign's products go: the LFN of the product they supersede, as a new version.

Products are immutable, so reprocessed DL1/DL2/DL3 are registered under the LFN of the
existing product of the same observation, level and type, as that LFN's next version: the
old version stays queryable (``version=N``, ``@vN``) and retrievable, and queries return the
newest by default. Where no earlier product exists, the default layout
``/ctao/<level>/<YYYY>/<MM>/<DD>/obs_<obs_id>/<file name>`` is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from dpps.bdms.archive import Archive


@dataclass(frozen=True, slots=True)
class Target:
    """The LFN (or LFN template) an output port is registered under."""

    lfn: str
    supersedes: str | None  # the DID of the product this one becomes the next version of


def default_dir(level: str, obs_id: int, night: object | None) -> str:
    date = getattr(night, "strftime", None)
    day = date("%Y/%m/%d") if date is not None else "undated"
    return f"/ctao/{level.lower()}/{day}/obs_{obs_id:06d}"


def target(
    archive: Archive, level: str, product_type: str, obs_id: int, night: object | None
) -> Target:
    """The existing product's LFN (not a simulation), else the default layout."""
    existing = archive.list_files(
        f"data_level={level} and obs_id={obs_id} and product_type='{product_type}' "
        "and category in (A, B, C)",
        limit=None,
    )
    if existing:
        newest = max(existing, key=lambda f: (f.created_at, f.version))
        return Target(newest.name, newest.did)
    return Target(f"{default_dir(level, obs_id, night)}/$(self.basename)", None)
