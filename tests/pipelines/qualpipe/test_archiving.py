"""A quality report is archived next to the product it judges, on both catalog backends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dpps.bdms.archive import Archive
from dpps.bdms.metadata import extract_metadata
from dpps.core.errors import InvalidInput, NotFound
from dpps.pipelines.qualpipe.archiving import archive_report, report_lfn
from dpps.pipelines.tool import EXIT_OK, run_tool
from tests.pipelines.qualpipe.helpers import write_dl2

pytestmark = pytest.mark.verifies_usecase("UC-140-1.2.1")
LFN = "/ctao/dl2/2026/11/21/obs0000000001_dl2.fits"
DATASET = "/ctao/dl2/2026/11/21/obs_1"


def _evaluate(dl2: Path, out: Path, criteria: list[dict[str, object]] | None = None) -> Path:
    config: dict[str, object] = {"plots": False}
    if criteria is not None:
        config["criteria"] = criteria
    result = run_tool("qualpipe-report", config, {"dl2": [dl2]}, out)
    assert result.exit_code == EXIT_OK, result.error
    return out


def test_report_lfn_sits_beside_the_product() -> None:
    assert report_lfn(LFN) == "/ctao/dl2/2026/11/21/obs0000000001_dl2.quality.json"
    assert report_lfn("/a/b/x.fits.fz", ".quality.html") == "/a/b/x.quality.html"
    assert report_lfn("/a/b/x.h5") == "/a/b/x.quality.json"


def test_archive_report_next_to_the_product(archive: Archive, tmp_path: Path) -> None:
    n = 100
    dl2 = write_dl2(
        tmp_path / "obs0000000001_dl2.fits",
        time=np.linspace(0, 50, n),
        multiplicity=np.full(n, 2),
        energy=np.full(n, 1.0),
        gh_score=np.full(n, 0.7),
    )
    ingest = archive.ingest([dl2], "CTAO-N", lfn=LFN, dataset=DATASET)
    assert ingest.results[0].status == "registered", ingest.results[0].error
    product = archive.list_files(f'name = "{LFN}"')[0]

    out = _evaluate(dl2, tmp_path / "q1")
    stored = archive_report(
        archive,
        out / "quality_report.json",
        "CTAO-N",
        product=product.did,
        html_path=out / "quality_report.html",
    )
    report, page = stored
    assert report.name == "/ctao/dl2/2026/11/21/obs0000000001_dl2.quality.json"
    assert page.name == "/ctao/dl2/2026/11/21/obs0000000001_dl2.quality.html"
    assert (report.data_level, report.product_type, report.obs_id) == ("QUAL", "quality report", 1)
    assert page.product_type == "quality report page"
    assert report.meta["quality_passed"] is True
    assert report.meta["evaluates"] == product.did
    found = archive.list_files(f'data_level = QUAL and meta.evaluates = "{product.did}"')
    assert sorted(f.name for f in found) == sorted([report.name, page.name])
    assert DATASET in " ".join(archive.show(report.did).parents)
    assert archive.list_files("meta.quality_passed = false") == []

    # A re-evaluation with stricter criteria is a new version, the first one is kept.
    strict = [{"kind": "threshold", "metric": "dl2.gamma_like_fraction", "op": ">=", "value": 2}]
    out2 = _evaluate(dl2, tmp_path / "q2", strict)
    again = archive_report(archive, out2 / "quality_report.json", "CTAO-N", product=product.did)
    assert len(again) == 1
    assert (again[0].name, again[0].version) == (report.name, 2)
    assert again[0].meta["quality_passed"] is False
    versions = archive.list_files(f'name = "{report.name}"', all_versions=True)
    assert sorted(v.version for v in versions) == [1, 2]
    stored_json = json.loads((out2 / "quality_report.json").read_text())
    assert stored_json["passed"] is False


def test_a_report_describes_itself_to_any_ingest(archive: Archive, tmp_path: Path) -> None:
    """WMS outputs and plain ingests read the report's own product keywords."""
    n = 10
    dl2 = write_dl2(
        tmp_path / "x.fits",
        time=np.arange(n, dtype=float),
        multiplicity=np.ones(n),
        energy=np.ones(n),
        gh_score=np.ones(n),
    )
    out = _evaluate(dl2, tmp_path / "q")
    extracted = extract_metadata(out / "quality_report.json")
    assert extracted.format == "json"
    assert extracted.columns == {
        "data_level": "QUAL",
        "obs_id": 1,
        "product_type": "quality report",
    }
    assert extracted.meta["creator"].startswith("dpps QualPipe")
    report = archive.ingest([out / "quality_report.json"], "CTAO-N", lfn="/ctao/q/r.json")
    assert report.results[0].status == "registered"
    stored = archive.list_files("data_level = QUAL and product_type = 'quality report'")
    assert [f.name for f in stored] == ["/ctao/q/r.json"]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"product": "not an object"}))
    assert extract_metadata(plain).format == "other"


def test_archive_report_refuses_what_it_cannot_place(archive: Archive, tmp_path: Path) -> None:
    n = 10
    dl2 = write_dl2(
        tmp_path / "x.fits",
        time=np.arange(n, dtype=float),
        multiplicity=np.ones(n),
        energy=np.ones(n),
        gh_score=np.ones(n),
    )
    out = _evaluate(dl2, tmp_path / "q")
    with pytest.raises(NotFound):
        archive_report(archive, out / "quality_report.json", "CTAO-N", product="/ctao/nowhere")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(InvalidInput, match="not a QualPipe quality report"):
        archive_report(archive, other, "CTAO-N", product="/ctao/nowhere")
    assert archive.count("") == 0
