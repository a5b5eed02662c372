"""The archive's listings (``dpps.bdms.listings``): rules, transfers, replicas, events and
files with filters, order, paging and totals, and bad filter values refused with an error
naming the known ones. REST, dashboard and CLI show these rows, so they are tested once here."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpps.bdms.archive import Archive
from dpps.bdms.listings import EventFilter, ReplicaFilter, RuleFilter, TransferFilter
from dpps.bdms.types import PageRequest
from dpps.core.errors import InvalidInput, NotFound
from dpps.core.identifiers import DID
from tests.bdms.replication_helpers import evaluate, ingest_dataset

DATASET = "/ctao/dl0/run1"


@pytest.fixture
def replicated(archive: Archive, tmp_path: Path) -> tuple[Archive, list[int]]:
    """Three files at CTAO-N, a rule each to PIC, DESY and CSCS (evaluated: transfers queued)."""
    ingest_dataset(archive, tmp_path / "in", 3, dataset=DATASET)
    rules = [archive.add_rule(DATASET, copies=1, rses=rse) for rse in ("PIC", "DESY", "CSCS")]
    evaluate(archive)
    return archive, rules


def test_rules_filter_order_page_and_total(replicated: tuple[Archive, list[int]]) -> None:
    archive, rules = replicated
    views = archive.views
    newest = views.rules(RuleFilter(), PageRequest(limit=2))
    assert [r.id for r in newest.items] == sorted(rules, reverse=True)[:2]
    assert newest.total == 3
    oldest = views.rules(RuleFilter(), PageRequest(offset=1, limit=5), order="oldest")
    assert [r.id for r in oldest.items] == sorted(rules)[1:]
    assert (oldest.total, oldest.offset, oldest.limit) == (3, 1, 5)
    on_did = views.rules(RuleFilter(did=DID("ctao", DATASET)))
    assert on_did.total == 3
    assert views.rules(RuleFilter(did=DID("ctao", "/nothing/here"))).total == 0
    replicating = views.rules(RuleFilter(state="replicating"))  # any case, as typed
    assert replicating.total == 3
    assert all(r.locks for r in replicating.items)  # lock counts, as 'dpps rule list'
    assert views.rules(RuleFilter(account="nobody")).total == 0
    # the CLI's list is the same query, oldest first
    assert [r.id for r in archive.replication.list_rules()] == sorted(rules)


def test_transfers_filter_order_page_and_total(replicated: tuple[Archive, list[int]]) -> None:
    archive, rules = replicated
    replication = archive.replication
    every = replication.transfers_page(TransferFilter(), PageRequest(limit=100))
    assert every.total == 9  # three files, three destinations
    ids = [t.id for t in every.items]
    assert ids == sorted(ids, reverse=True)  # newest id first
    to_pic = replication.transfers_page(TransferFilter(rse="PIC"), PageRequest(limit=2))
    assert (to_pic.total, len(to_pic.items)) == (3, 2)
    assert {t.dest for t in to_pic.items} == {"PIC"}
    assert replication.transfers_page(TransferFilter(rule_id=rules[0])).total == 3
    assert replication.transfers_page(TransferFilter(state="queued")).total == 9
    assert replication.transfers_page(TransferFilter(errors_only=True)).total == 0
    updated = replication.transfers_page(order="updated").items
    assert [t.id for t in updated] == [
        t.id for t in sorted(updated, key=lambda t: (t.updated_at, t.id), reverse=True)
    ]
    one = replication.transfer(ids[0])
    assert one.rule_id in rules
    assert replication.transfers(limit=1)[0] == updated[0].info()
    with pytest.raises(NotFound, match="no such transfer"):
        replication.transfer(999_999)


def test_replicas_events_and_files(replicated: tuple[Archive, list[int]]) -> None:
    archive, _rules = replicated
    views = archive.views
    at_origin = views.replicas(ReplicaFilter(rse="CTAO-N", state="available"))
    assert at_origin.total == 3
    assert all(r.did.endswith("@v1") and r.rse == "CTAO-N" for r in at_origin.items)
    assert views.replicas(ReplicaFilter(rse="PIC")).total == 0
    registered = views.events(EventFilter(action="file.register"), PageRequest(limit=2))
    assert (registered.total, len(registered.items)) == (3, 2)
    assert registered.items[0].id > registered.items[1].id  # newest first
    files = views.files(f"name like {DATASET}/%", PageRequest(limit=2), order_by="-name")
    assert files.total == 3
    assert [f.name for f in files.items] == sorted((f.name for f in files.items), reverse=True)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.views.rules(RuleFilter(state="DONE")), "unknown rule state 'DONE'"),
        (lambda a: a.views.rules(order="latest"), "unknown rule order 'latest'"),
        (
            lambda a: a.replication.transfers_page(TransferFilter(state="lost")),
            "unknown transfer state 'lost'",
        ),
        (lambda a: a.replication.transfers_page(order="name"), "unknown transfer order"),
        (lambda a: a.views.replicas(ReplicaFilter(state="gone")), "unknown replica state"),
        (lambda a: a.views.files("", order_by="colour"), "cannot order by 'colour'"),
        (lambda a: a.views.events(page=PageRequest(limit=0)), "limit must be 1 or more"),
        (lambda a: a.views.events(page=PageRequest(offset=-5)), "offset must be 0 or more"),
    ],
)
def test_bad_filter_values_are_refused(archive: Archive, call: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call(archive)  # type: ignore[operator]  # each case is a callable of the archive
