"""The WMS's listings (``dpps.wms.listings``): filters, newest first, paging, totals, and
filter values refused with an error naming the known ones (REST, dashboard and CLI share it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpps.bdms.types import PageRequest
from dpps.core.errors import InvalidInput
from dpps.wms.api import WMS
from dpps.wms.listings import JobFilter, WorkflowFilter
from dpps.wms.types import SubmitOptions
from tests.wms.conftest import PY, write


def _submit(wms: WMS, tmp_path: Path, name: str, activity: str) -> int:
    job = {"name": name, "command": [PY, "-c", "pass"]}
    path = write(tmp_path / f"{name}.yaml", json.dumps(job))
    return wms.submit(path, opts=SubmitOptions(activity=activity)).id


def test_jobs_page_filters_orders_pages_and_counts(wms: WMS, tmp_path: Path) -> None:
    ids = [_submit(wms, tmp_path, f"job{i}", "cat-b" if i % 2 else "simulation") for i in range(5)]
    page = wms.jobs_page(JobFilter(), PageRequest(offset=1, limit=2))
    assert [j.id for j in page.items] == sorted(ids, reverse=True)[1:3]  # newest first
    assert (page.total, page.offset, page.limit) == (5, 1, 2)
    catb = wms.jobs_page(JobFilter(activity="cat-b"), PageRequest(limit=10))
    assert catb.total == 2
    assert {j.id for j in catb.items} == {ids[1], ids[3]}
    assert all(j.account for j in catb.items)  # the submitter, as the dashboard shows it
    submitted = wms.jobs_page(JobFilter(state="submitted"))  # any case, as typed
    assert submitted.total == 5
    assert wms.jobs_page(JobFilter(state="DONE")).total == 0
    # the CLI's list is the first page of the same query
    assert [j.id for j in wms.list_jobs(limit=3)] == sorted(ids, reverse=True)[:3]


def test_bad_filter_values_are_refused(wms: WMS) -> None:
    with pytest.raises(InvalidInput, match=r"unknown job state 'SLEEPING'.*SUBMITTED"):
        wms.jobs_page(JobFilter(state="SLEEPING"))
    with pytest.raises(InvalidInput, match="unknown workflow state 'paused'"):
        wms.workflows_page(WorkflowFilter(state="paused"))
    with pytest.raises(InvalidInput, match="limit must be 1 or more"):
        wms.jobs_page(JobFilter(), PageRequest(limit=0))
    with pytest.raises(InvalidInput, match="offset must be 0 or more"):
        wms.workflows_page(WorkflowFilter(), PageRequest(offset=-1))


def test_workflows_page_of_a_transformation_is_empty_before_it_runs(wms: WMS) -> None:
    page = wms.workflows_page(WorkflowFilter(transformation_id=12345), PageRequest(limit=5))
    assert (page.items, page.total, page.limit) == ([], 0, 5)
    assert wms.workflows_page(WorkflowFilter(state="running")).total == 0
