"""The campaign records on both catalogs: submit, claim with a lease, progress, finish, rerun,
take-over after a runner died, and the refusals (another definition, held by another runner)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from dpps.bdms.archive import Archive
from dpps.catalog.engine import transaction
from dpps.catalog.models_wms import CampaignRow
from dpps.core.errors import Conflict, InvalidInput, NotFound
from dpps.wms.api import WMS
from dpps.wms.states import CampaignState

SPEC = {"query": "obs_id = 1", "software_version": "2.0", "timeout_s": 60.0}
IDENTITY = ("query", "software_version")


def _expire(archive: Archive, name: str) -> None:
    """What a runner that died leaves behind: its lease runs out."""
    past = dt.datetime(2000, 1, 1)
    with transaction(archive.sessions) as s:
        s.execute(
            update(CampaignRow).where(CampaignRow.name == name).values(lease_expires_at=past)
        )


def test_submit_claim_progress_finish_and_rerun(archive: Archive) -> None:
    store = WMS(archive.as_account("dpm")).campaigns
    info = store.submit("c1", "reprocess", SPEC, identity=IDENTITY)
    assert (info.state, info.account, info.attempts, info.spec) == ("QUEUED", "dpm", 0, SPEC)
    with pytest.raises(NotFound, match="no campaign named 'other'"):
        store.claim("runner-a", "other")
    claimed = store.claim("runner-a")
    assert claimed is not None
    assert (claimed.name, claimed.state, claimed.owner, claimed.attempts) == (
        "c1",
        "RUNNING",
        "runner-a",
        1,
    )
    assert store.claim("runner-b") is None  # held: nothing else to take
    with pytest.raises(Conflict, match="is running"):
        store.claim("runner-b", "c1")
    assert store.progress("c1", "runner-a", "staging", 3, 10)
    assert not store.progress("c1", "runner-b", "staging", 4, 10)  # not the holder
    seen = store.get("c1")
    assert (seen.phase, seen.done, seen.total) == ("staging", 3, 10)
    # attaching while it runs changes nothing
    assert store.submit("c1", "reprocess", SPEC, identity=IDENTITY).state == "RUNNING"
    with pytest.raises(Conflict, match="no longer run by runner-b"):
        store.finish("c1", "runner-b", CampaignState.DONE, report={"ok": True})
    done = store.finish("c1", "runner-a", CampaignState.DONE, report={"ok": True, "n": 2})
    assert (done.state, done.report, done.owner) == ("DONE", {"ok": True, "n": 2}, None)
    assert done.finished_at is not None
    with pytest.raises(Conflict, match="is DONE"):
        store.claim("runner-b", "c1")
    # a rerun: same definition, another run option -> queued again, the new options kept
    rerun = store.submit("c1", "reprocess", {**SPEC, "timeout_s": 120.0}, identity=IDENTITY)
    assert (rerun.state, rerun.report, rerun.spec["timeout_s"]) == ("QUEUED", None, 120.0)
    again = store.claim("runner-b", "c1")
    assert again is not None
    assert again.attempts == 2


def test_another_definition_under_the_same_name_is_refused(archive: Archive) -> None:
    store = WMS(archive).campaigns
    store.submit("c1", "reprocess", SPEC, identity=IDENTITY)
    with pytest.raises(Conflict, match="another definition"):
        store.submit("c1", "reprocess", {**SPEC, "query": "obs_id = 2"}, identity=IDENTITY)
    with pytest.raises(Conflict, match="another definition"):
        store.submit("c1", "other-kind", SPEC, identity=IDENTITY)
    assert store.get("c1").spec == SPEC  # nothing changed


def test_a_dead_runners_campaign_is_taken_over(archive: Archive) -> None:
    store = WMS(archive).campaigns
    store.submit("c1", "reprocess", SPEC)
    assert store.claim("dead-runner") is not None
    assert store.claim("runner-b") is None
    _expire(archive, "c1")
    taken = store.claim("runner-b")
    assert taken is not None
    assert (taken.owner, taken.attempts, taken.phase) == ("runner-b", 2, "resuming")
    assert not store.progress("c1", "dead-runner", "late", 1, 1)  # the dead one lost it
    # resubmitting a campaign whose runner died queues it again
    _expire(archive, "c1")
    assert store.submit("c1", "reprocess", SPEC).state == "QUEUED"


def test_give_back_and_listing(archive: Archive) -> None:
    store = WMS(archive).campaigns
    for name in ("old", "new"):
        store.submit(name, "reprocess", {**SPEC, "name": name})
    assert [i.name for i in store.recent()] == ["new", "old"]
    claimed = store.claim("runner-a")
    assert claimed is not None
    assert claimed.name == "old"  # oldest first
    store.give_back("old", "runner-a", "interrupted: the next runner resumes it")
    back = store.get("old")
    assert (back.state, back.owner, back.phase) == ("QUEUED", None, back.phase)
    assert back.phase.startswith("interrupted")
    assert [i.name for i in store.recent(state="queued")] == ["new", "old"]
    assert store.recent(state="RUNNING") == []
    assert all(i.report is None for i in store.recent())
    page = store.listing(limit=1, offset=1)  # dpps campaign list --limit 1 --offset 1
    assert ([i.name for i in page.items], page.total, page.offset) == (["old"], 2, 1)
    assert store.listing(state="RUNNING").total == 0
    with pytest.raises(InvalidInput):
        store.listing(offset=-1)
    with pytest.raises(ValueError, match="DONE or FAILED"):
        store.finish("old", "runner-a", CampaignState.RUNNING)
