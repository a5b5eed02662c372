"""Choosing a job's site: only where most of its input bytes are, never a worker elsewhere."""

from __future__ import annotations

import pytest

from dpps.wms.matching import choose_site


@pytest.mark.verifies_usecase("UC-180-2.3")
def test_a_job_runs_at_the_site_holding_most_of_its_input_bytes() -> None:
    inputs = {"CTAO-North": 900, "PIC": 100}
    assert choose_site(None, inputs, {"CTAO-North": 1, "PIC": 4}) == ("CTAO-North", None)


@pytest.mark.verifies_usecase("UC-180-2.3")
def test_without_a_worker_where_most_bytes_are_the_job_waits_with_the_reason() -> None:
    """A worker at a site holding only part of the inputs does not take the job: it would
    read the rest over the WAN."""
    site, reason = choose_site(None, {"CTAO-North": 900, "PIC": 100}, {"PIC": 4})
    assert site is None
    assert reason == (
        "most of the inputs' bytes are at CTAO-North, where no worker runs "
        "(inputs at CTAO-North, PIC)"
    )


def test_between_sites_holding_as_many_bytes_the_one_with_more_free_slots_wins() -> None:
    both = {"CTAO-North": 500, "PIC": 500}
    assert choose_site(None, both, {"CTAO-North": 3, "PIC": 1}) == ("CTAO-North", None)
    assert choose_site(None, both, {"PIC": 1}) == ("PIC", None)


def test_a_requested_site_and_jobs_without_inputs() -> None:
    assert choose_site("PIC", {"CTAO-North": 900}, {"PIC": 1}) == ("PIC", None)
    assert choose_site("CSCS", {}, {"PIC": 1}) == (
        None,
        "no worker serves the requested site CSCS",
    )
    assert choose_site(None, {}, {"PIC": 1, "DESY": 2}) == ("DESY", None)
    assert choose_site(None, {}, {}) == (None, "no worker is connected")
