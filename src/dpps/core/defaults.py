"""The default topology written by ``dpps init``: the reference observatory's six data centers.

On-site: CTAO-North (La Palma) and CTAO-South (Paranal). Off-site: CSCS, DESY, FRASCATI and PIC,
each with disk; DESY and PIC also with tape. On the embedded default every RSE is a directory in
the workspace and tape is emulated with a staging delay.
"""

from __future__ import annotations

import copy
from typing import Any

SITES: dict[str, dict[str, Any]] = {
    "CTAO-North": {
        "description": "CTAO-North, La Palma (ES)",
        "onsite": True,
        "latitude": 28.76,
        "longitude": -17.89,
    },
    "CTAO-South": {
        "description": "CTAO-South, Paranal (CL)",
        "onsite": True,
        "latitude": -24.68,
        "longitude": -70.32,
    },
    "CSCS": {
        "description": "Swiss National Supercomputing Centre, Lugano (CH)",
        "latitude": 46.02,
        "longitude": 8.96,
    },
    "DESY": {"description": "DESY, Zeuthen (DE)", "latitude": 52.35, "longitude": 13.63},
    "FRASCATI": {"description": "INAF/INFN Frascati (IT)", "latitude": 41.81, "longitude": 12.68},
    "PIC": {
        "description": "Port d'Informacio Cientifica, Barcelona (ES)",
        "latitude": 41.50,
        "longitude": 2.11,
    },
}


def _rse(
    site: str,
    country: str,
    *,
    onsite: bool = False,
    tape: bool = False,
    bandwidth: float = 200.0,
    latency: float = 20.0,
) -> dict[str, Any]:
    return {
        "url": f"rse/{site}{'-TAPE' if tape else ''}",
        "site": site,
        "kind": "tape" if tape else "disk",
        "onsite": onsite,
        "attributes": {
            "country": country,
            "type": "tape" if tape else "disk",
            "tier": 0 if onsite else 1,
        },
        "bandwidth_mb_s": bandwidth,
        "latency_ms": latency,
        "staging_delay_s": 2.0 if tape else 0.0,
    }


RSES: dict[str, dict[str, Any]] = {
    "CTAO-N": _rse("CTAO-North", "ES", onsite=True, bandwidth=1000.0, latency=2.0)
    | {"url": "rse/CTAO-N"},
    "CTAO-S": _rse("CTAO-South", "CL", onsite=True, bandwidth=1000.0, latency=2.0)
    | {"url": "rse/CTAO-S"},
    "CSCS": _rse("CSCS", "CH"),
    "DESY": _rse("DESY", "DE"),
    "DESY-TAPE": _rse("DESY", "DE", tape=True, bandwidth=300.0, latency=50.0),
    "FRASCATI": _rse("FRASCATI", "IT"),
    "PIC": _rse("PIC", "ES"),
    "PIC-TAPE": _rse("PIC", "ES", tape=True, bandwidth=300.0, latency=50.0),
}


#: The ACADA policy: one copy across the site link to off-site disk, then one more off-site
#: copy on tape sourced from off-site (the site link is the scarce resource).
POLICIES: dict[str, list[dict[str, Any]]] = {
    "acada": [
        {
            "copies": 1,
            "rses": "offsite&type=disk",
            "source": "onsite",
            "priority": 4,
            "activity": "acada",
        },
        {
            "copies": 1,
            "rses": "offsite&type=tape",
            "source": "offsite",
            "priority": 3,
            "activity": "acada",
        },
    ],
    # processed products (calibration, DL1-DL3, quality): two off-site disk copies; they can
    # be regenerated from DL0, so no tape copy
    "products": [
        {"copies": 2, "rses": "offsite&type=disk", "priority": 2, "activity": "products"},
    ],
}


def default_config() -> dict[str, Any]:
    """The configuration mapping written to a new workspace's dpps.yaml."""
    return copy.deepcopy(
        {
            "default_scope": "ctao",
            "checksums": ["adler32", "blake3"],
            "catalog": {"url": "sqlite:///catalog.db", "busy_timeout_s": 30.0},
            "ingest": {"workers": 4, "chunk_size": 500},
            "sites": SITES,
            "rses": RSES,
            "policies": POLICIES,
        }
    )
