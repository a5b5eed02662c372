"""Role-matrix cases of tape staging and audits by hand (``dpps stage``, ``dpps audit``).

Each call prepares what it acts on with the library: a tape-only file, and no open stage
request, so every role that may stage creates a request of its own (with its event).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import update

from dpps.catalog.engine import transaction
from dpps.catalog.models import StageRequestRow
from tests.bdms.preservation_helpers import drop_tape_only, put_replica, replica_rows
from tests.oms.conftest import Seeded

Call = Callable[[TestClient, Seeded, str, dict[str, str]], httpx.Response]

STAGERS = {"admin", "archive-manager", "data-processing-manager"}
AUDITORS = {"admin", "archive-manager", "operator"}


def tape_only(s: Seeded) -> str:
    """The first DL0 file with its only replica on PIC-TAPE (made so once)."""
    did = s.dl0_files[0]
    if "PIC-TAPE" not in replica_rows(s.archive, did):
        put_replica(s.archive, did, "PIC-TAPE")
        drop_tape_only(s.archive, did)
    return did


def _stage(c: TestClient, s: Seeded, role: str, h: dict[str, str]) -> httpx.Response:
    did = tape_only(s)
    with transaction(s.archive.sessions) as session:
        session.execute(update(StageRequestRow).values(state="FAILED", error="test reset"))
    return c.post("/api/v1/stage-requests", json={"dids": [did]}, headers=h)


def _audit(c: TestClient, s: Seeded, role: str, h: dict[str, str]) -> httpx.Response:
    return c.post("/api/v1/audits", json={"replica_ids": [1]}, headers=h)


CASES: dict[str, tuple[Call, set[str]]] = {
    "stage-list": (
        lambda c, s, r, h: c.get("/api/v1/stage-requests", headers=h),
        STAGERS | AUDITORS | {"reader", "site-agent"},
    ),
    "stage": (_stage, STAGERS),
    "audit-plan": (lambda c, s, r, h: c.get("/api/v1/audits/plan", headers=h), AUDITORS),
    "audit": (_audit, AUDITORS),
}
#: Not writes that must leave an event: listing, planning, and a clean audit (it only
#: updates when replicas were last verified; damaged ones get a replica.bad event).
NOT_WRITES = {"stage-list", "audit-plan", "audit"}
