"""The dashboard's replication pages without a browser: rules and transfers paged and filtered
(state, RSE, site, age) through the library's listings, a page per rule, per transfer and per
RSE, and every rule or transfer id linked to its page.

The archive: the seeded DL0 dataset (3 files at CTAO-N) with a rule for a copy at CTAO-S, the
DL1 file (at CTAO-S) with a rule for a copy at CTAO-N; the evaluator makes their 4 transfers;
one of them is then failed and one made two days old, as the transfer daemon and time would.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from dpps.catalog.models import HeartbeatRow, TransferRow
from dpps.core.clock import utcnow
from dpps.core.states import TransferState
from tests.bdms.replication_helpers import evaluate
from tests.oms.conftest import DL0, DL1_FILE, Seeded


@dataclass(frozen=True)
class Replication:
    dl0_rule: int
    dl1_rule: int
    failed: int
    old: int


@pytest.fixture
def replication(seeded: Seeded) -> Replication:
    return make_replication(seeded)


def make_replication(seeded: Seeded) -> Replication:
    """The two rules, their four transfers, one failed and one old, three heartbeats."""
    archive = seeded.archive
    dl0_rule = archive.add_rule(DL0, copies=1, rses="CTAO-S")
    dl1_rule = archive.add_rule(DL1_FILE, copies=1, rses="CTAO-N")
    evaluate(archive)
    rules = (dl0_rule, dl1_rule)
    transfers = [t for t in archive.views.transfers().items if t.rule_id in rules]
    assert len(transfers) == 4
    failed = next(t.id for t in transfers if t.rule_id == dl0_rule)
    old = next(t.id for t in transfers if t.rule_id == dl1_rule)
    with archive.sessions.begin() as s:
        s.execute(
            update(TransferRow)
            .where(TransferRow.id == failed)
            .values(state=TransferState.FAILED.value, error="destination unreachable")
        )
        ago = utcnow() - dt.timedelta(days=2)
        s.execute(update(TransferRow).where(TransferRow.id == old).values(created_at=ago))
        for daemon in ("conveyor@CTAO-S", "conveyor@DESY", "evaluator"):
            s.add(HeartbeatRow(daemon=daemon, instance="i1", hostname="h", pid=1, details={}))
    return Replication(dl0_rule, dl1_rule, failed, old)


def _ids(text: str, kind: str) -> list[int]:
    return [int(i) for i in re.findall(rf'<tr data-{kind}="(\d+)"', text)]


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_transfers_are_paged_and_filtered(
    seeded: Seeded, replication: Replication, signed_in: TestClient
) -> None:
    every = [t.id for t in seeded.archive.views.transfers().items]  # newest first
    first = signed_in.get("/ui/transfers", params={"limit": 3})
    assert first.status_code == 200
    assert _ids(first.text, "transfer") == every[:3]
    assert 'data-testid="total">4<' in first.text
    assert 'data-testid="previous"' not in first.text
    following = re.search(r'href="([^"]+)" data-testid="next"', first.text)
    assert following is not None
    second = signed_in.get("/ui/transfers" + following.group(1).replace("&amp;", "&"))
    assert _ids(second.text, "transfer") == every[3:]
    assert 'data-testid="previous"' in second.text
    assert 'data-testid="next"' not in second.text

    def shown(**params: str) -> list[int]:
        answer = signed_in.get("/ui/transfers", params=params)
        assert answer.status_code == 200, answer.text
        return _ids(answer.text, "transfer")

    assert shown(state="failed") == [replication.failed]
    assert replication.old in shown(rse="CTAO-N")
    assert replication.old in shown(site="CTAO-North")
    assert replication.old not in shown(age="24h")
    assert len(shown(age="24h")) == 3
    assert sorted(shown(rule=str(replication.dl1_rule))) == [replication.old]
    assert shown(rse="PIC") == []
    wrong = signed_in.get("/ui/transfers", params={"state": "bogus"})
    assert wrong.status_code == 400
    assert "unknown transfer state" in wrong.text


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_rules_are_paged_and_filtered(
    seeded: Seeded, replication: Replication, signed_in: TestClient
) -> None:
    def shown(**params: str) -> list[int]:
        answer = signed_in.get("/ui/rules", params=params)
        assert answer.status_code == 200, answer.text
        return _ids(answer.text, "rule")

    both = [replication.dl1_rule, replication.dl0_rule]  # newest first
    assert shown() == both
    assert shown(limit="1") == both[:1]
    assert shown(limit="1", offset="1") == both[1:]
    assert shown(rse="CTAO-S") == [replication.dl0_rule]  # where its copies are locked
    assert shown(site="CTAO-North") == [replication.dl1_rule]
    assert shown(state="ok") == []
    assert shown(age="1h") == both
    assert signed_in.get("/ui/rules", params={"state": "nope"}).status_code == 400


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_a_page_per_rule_transfer_and_rse_linked_from_the_others(
    seeded: Seeded, replication: Replication, signed_in: TestClient
) -> None:
    rule = signed_in.get(f"/ui/rules/{replication.dl0_rule}")
    assert rule.status_code == 200
    assert f'data-testid="rule-id">{replication.dl0_rule}<' in rule.text
    assert f'href="/ui/transfers/{replication.failed}"' in rule.text
    transfer = signed_in.get(f"/ui/transfers/{replication.failed}")
    assert transfer.status_code == 200
    assert "destination unreachable" in transfer.text
    assert f'href="/ui/rules/{replication.dl0_rule}"' in transfer.text
    assert 'href="/ui/rses/CTAO-S"' in transfer.text
    for missing in ("/ui/rules/99999", "/ui/transfers/99999", "/ui/rses/NOWHERE"):
        assert signed_in.get(missing).status_code == 404, missing
    # wherever an id is shown, it is a link: the lists, the product's page, the RSE's page
    listed = signed_in.get("/ui/transfers").text
    assert f'href="/ui/rules/{replication.dl1_rule}" data-testid="rule-link"' in listed
    product = signed_in.get(f"/ui/products/ctao:{DL1_FILE}").text
    assert f'href="/ui/rules/{replication.dl1_rule}"' in product

    rse = signed_in.get("/ui/rses/CTAO-S")
    assert rse.status_code == 200
    held = next(r for r in seeded.archive.rses() if r.name == "CTAO-S")
    assert f'data-testid="rse-files">{held.files}<' in rse.text
    assert 'data-state="AVAILABLE"' in rse.text
    assert f'href="/ui/transfers/{replication.failed}"' in rse.text
    assert 'data-testid="rse-failed">1<' in rse.text
    daemons = rse.text.split('data-testid="rse-daemons"')[1].split("</table>")[0]
    assert "conveyor" in daemons
    assert "evaluator" in daemons
    assert daemons.count("<tr>") == 1 + 2  # header, its own site process, the archive-wide one
    index = signed_in.get("/ui/rses").text
    assert 'href="/ui/rses/CTAO-S"' in index


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_a_page_per_data_center_sums_its_rses_and_links(
    seeded: Seeded, replication: Replication, signed_in: TestClient
) -> None:
    rses = {r.name: r for r in seeded.archive.rses()}
    south = signed_in.get("/ui/sites/CTAO-South")
    assert south.status_code == 200
    assert f'data-testid="site-files">{rses["CTAO-S"].files}<' in south.text
    assert 'data-testid="site-failed">1<' in south.text  # the failed copy into CTAO-S
    assert f'href="/ui/transfers/{replication.failed}"' in south.text
    links = south.text.split('data-testid="site-links"')[1].split("</table>")[0]
    assert "(no source) \u2192 CTAO-South" in links  # it failed before a source was chosen
    assert '<td class="num alarm">1</td>' in links
    assert 'href="/ui/transfers?state=FAILED&site=CTAO-South"' in south.text.replace("&amp;", "&")

    desy = signed_in.get("/ui/sites/DESY")
    assert desy.status_code == 200
    listed = desy.text.split('data-testid="site-rses"')[1].split("</table>")[0]
    assert 'data-rse="DESY"' in listed
    assert 'data-rse="DESY-TAPE"' in listed
    assert 'data-rse="PIC"' not in listed
    daemons = desy.text.split('data-testid="site-daemons"')[1].split("</table>")[0]
    assert daemons.count("<tr>") == 1 + 2  # header, conveyor@DESY, the archive-wide evaluator
    assert "this site&#39;s process" in daemons or "this site's process" in daemons
    assert 'data-testid="site-failed">0<' in desy.text

    index = signed_in.get("/ui/sites").text
    assert 'href="/ui/sites/PIC"' in index
    assert 'href="/ui/rses/PIC-TAPE"' in index
    assert 'href="/ui/sites/CTAO-South"' in signed_in.get("/ui/rses/CTAO-S").text
    assert 'href="/ui/sites/DESY"' in signed_in.get("/ui/rses").text
    missing = signed_in.get("/ui/sites/NOWHERE")
    assert missing.status_code == 404
    assert "no data center" in missing.text
