"""``dpps stage`` and ``dpps audit`` locally and against a live server print the same."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dpps.client import views as client_views
from dpps.oms.server import BackgroundServer
from tests.bdms.preservation_helpers import storage_file
from tests.oms.conftest import Seeded
from tests.oms.staging_cases import tape_only
from tests.oms.test_remote_cli import _both, _local, _remote


def _without(text: str, *keys: str) -> Any:
    """JSON output without the fields that depend on the moment (ETA, seconds taken)."""
    data = json.loads(text)
    if isinstance(data, dict) and "items" in data:  # a listing's page
        data = data["items"]
    if isinstance(data, list):
        return [{k: v for k, v in d.items() if k not in keys} for d in data]
    return {k: v for k, v in data.items() if k not in keys}


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_stage_requests_work_remotely(seeded: Seeded, live: BackgroundServer) -> None:
    did = tape_only(seeded)
    code, out, err = _remote(
        live, seeded.tokens["data-processing-manager"], "stage", did, "--json"
    )
    assert code == 0, err
    [request] = json.loads(out)
    assert request["did"] == did
    assert request["state"] == "QUEUED"
    # The local command joins the same open request: the same record both ways.
    local = _local(seeded.archive, "stage", did, "--json")
    assert _without(local[1], "eta_seconds") == _without(out, "eta_seconds")
    for args in (
        ("stage", "--list", "--json"),
        ("stage", "--list", "--state", "queued", "--json"),
        ("stage", "--list", "--limit", "1", "--offset", "1", "--json"),
    ):
        local, remote = _both(seeded, live, *args, role="reader")
        assert local[0] == 0, local
        assert _without(local[1], "eta_seconds") == _without(remote[1], "eta_seconds"), args
    # Refusals and bad input: same exit code both ways, nothing requested by the refused.
    refused = _remote(live, seeded.tokens["reader"], "stage", did)
    assert refused[0] == 8, refused
    assert "may not stage" in refused[2]
    for args, code in ((("stage", "ctao:/ctao/none.fits"), 5), (("stage", "no scope at all"), 3)):
        local, remote = _both(seeded, live, *args)
        assert local[0] == remote[0] == code, (local, remote)
    assert len(seeded.archive.preservation.stage_requests()) == 1
    manager = seeded.tokens["archive-manager"]
    waited = _remote(live, manager, "stage", did, "--wait", "--timeout", "60", "--json")
    assert waited[0] == 0, waited
    assert [r["state"] for r in json.loads(waited[1])] == ["READY"]


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_audit_works_remotely(
    seeded: Seeded, live: BackgroundServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = seeded.tokens["operator"]
    monkeypatch.setattr(client_views, "AUDIT_CHUNK", 2)  # 3 replicas: two requests, one report
    args = ("audit", "--rse", "CTAO-N", "--json")
    code, out, err = _remote(live, operator, *args)
    assert code == 0, err
    local = _local(seeded.archive, *args)
    assert local[0] == 0
    assert _without(out, "seconds") == _without(local[1], "seconds")
    assert json.loads(out)["examined"] == 3

    damaged = storage_file(seeded.archive, seeded.dl0_files[1], "CTAO-N")
    damaged.write_bytes(b"not the archived bytes")
    code, out, err = _remote(live, operator, "audit", "--rse", "CTAO-N", "--limit", "3", "--json")
    assert code == 7, err
    report = json.loads(out)
    assert [b["did"] for b in report["bad"]] == [seeded.dl0_files[1]]
    events = seeded.archive.show(seeded.dl0_files[1]).events
    assert any(e.action == "replica.bad" and e.account == "acct-operator" for e in events)

    slow = _remote(live, operator, "audit", "--rate", "10")
    assert slow[0] == 3, slow
    assert "bytes_per_s" in slow[2]
    refused = _remote(live, seeded.tokens["data-processing-manager"], "audit")
    assert refused[0] == 8, refused
    assert "may not audit" in refused[2]
    local, remote = _both(seeded, live, "audit", "--rse", "NOPE")
    assert local[0] == remote[0] != 0, (local, remote)
