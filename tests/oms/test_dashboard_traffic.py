"""The traffic page (``/ui/traffic``): per link (source site -> destination site) the files and
bytes transferred and the failures, and the files ingested, as matplotlib time series with
axes and a legend per link; totals per link that are the catalog's."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from dpps.bdms import stats
from dpps.catalog.models import RSERow, TransferRow
from dpps.core.clock import utcnow
from dpps.core.states import TransferState
from tests.oms.conftest import Seeded
from tests.oms.test_dashboard_replication import make_replication


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_traffic_per_link_as_time_series(seeded: Seeded, signed_in: TestClient) -> None:
    archive = seeded.archive
    replication = make_replication(seeded)
    done = [
        t.id
        for t in archive.views.transfers().items
        if t.rule_id == replication.dl0_rule and t.id != replication.failed
    ]
    with archive.sessions.begin() as s:
        north = s.scalar(select(RSERow.id).where(RSERow.name == "CTAO-N"))
        s.execute(
            update(TransferRow)
            .where(TransferRow.id.in_(done))
            .values(
                state=TransferState.DONE.value,
                source_rse_id=north,
                bytes=1000,
                finished_at=utcnow(),
            )
        )
        s.execute(
            update(TransferRow)
            .where(TransferRow.id == replication.failed)
            .values(source_rse_id=north, finished_at=utcnow())
        )
    answer = signed_in.get("/ui/traffic")
    assert answer.status_code == 200, answer.text
    text = answer.text
    svgs = re.findall(r'<svg class="chart".*?</svg>', text, re.S)
    assert len(svgs) == 4  # files, bytes, failures, ingestion
    link = "CTAO-North \u2192 CTAO-South"
    files, volume, failures, ingested = svgs
    assert 'aria-label="files transferred"' in files
    assert "files / hour" in files  # the y axis' label, drawn as text
    assert link in files
    assert link in volume
    assert link in failures
    assert "nothing in this window" not in ingested
    row = re.search(rf'<tr data-link="{link}">(.*?)</tr>', text, re.S)
    assert row is not None
    cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row.group(1))
    assert cells == [str(len(done)), "2.0 kB", "1"]
    with archive.sessions() as s:
        now = utcnow()
        by_link = stats.transfers_by_link(s, now.replace(hour=0, minute=0), now)
    assert sum(v.files for v in by_link if v.state == "DONE") == len(done)
    month = signed_in.get("/ui/traffic", params={"window": "30d"})
    assert month.status_code == 200
    assert "files / day" in month.text
