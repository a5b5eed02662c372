"""Bad input at ingest gets a clear error and leaves nothing partial behind (UC-110-1.1.3)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dpps.bdms.archive import Archive
from dpps.bdms.samples import corrupt_bytes, truncate
from dpps.catalog.query import QuerySyntaxError
from dpps.core.errors import DppsError, IntegrityFailure, InvalidInput, NotFound
from tests.bdms.helpers import make_fits, snapshot

UC = "UC-110-1.1.3"


def _single_failure(archive: Archive, path: Path, **kwargs: object) -> tuple[str, str]:
    report = archive.ingest([path], "CTAO-N", **kwargs)  # type: ignore[arg-type]
    [result] = report.results
    assert result.status == "failed"
    return result.error_type or "", result.error or ""


@pytest.mark.verifies_usecase(UC)
@pytest.mark.parametrize(
    ("case", "expected_type", "words"),
    [
        ("missing", NotFound, "no such file"),
        ("directory", InvalidInput, "is a directory"),
        ("empty", InvalidInput, "empty"),
        ("datasum", IntegrityFailure, "DATASUM"),
        ("truncated", IntegrityFailure, "truncated"),
        ("non_utf8", InvalidInput, "not allowed"),
    ],
)
def test_bad_file_fails_cleanly(
    archive: Archive, tmp_path: Path, case: str, expected_type: type[DppsError], words: str
) -> None:
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    if case == "missing":
        path = src_dir / "nope.fits"
    elif case == "directory":
        path = src_dir / "sub"
        path.mkdir()
        make_fits(path)
    elif case == "empty":
        path = src_dir / "empty.fits"
        path.touch()
    elif case == "datasum":
        path = make_fits(src_dir)
        corrupt_bytes(path)
    elif case == "truncated":
        path = make_fits(src_dir)
        truncate(path, 0.6)
    else:
        path = Path(os.fsdecode(bytes(src_dir) + b"/caf\xe9.fits"))
        path.write_bytes(make_fits(src_dir).read_bytes())
    before = snapshot(archive)
    error_type, message = _single_failure(archive, path, lfn_prefix="/ctao/bad")
    assert error_type == expected_type.__name__
    assert words.lower() in message.lower()
    assert snapshot(archive) == before
    assert not list((archive.config.workspace / "rse").rglob("*.part-*"))


@pytest.mark.verifies_usecase(UC)
@pytest.mark.parametrize(
    ("kwargs", "expected_type", "words"),
    [
        ({"rse": "NOWHERE"}, NotFound, "unknown RSE"),
        ({"lfn": "/ctao/../etc/passwd"}, InvalidInput, "'..'"),
        ({"lfn": "ctao/relative.fits"}, InvalidInput, "must start with '/'"),
        ({"lfn_prefix": "/ctao", "meta": {"Bad-Key": "1"}}, InvalidInput, "metadata key"),
        ({"lfn_prefix": "/ctao", "meta": {"obs_id": "abc"}}, InvalidInput, "obs_id"),
        ({"lfn_prefix": "/ctao", "scope": "Bad Scope"}, InvalidInput, "scope"),
    ],
)
def test_bad_request_is_refused_before_any_work(
    archive: Archive,
    tmp_path: Path,
    kwargs: dict[str, object],
    expected_type: type[DppsError],
    words: str,
) -> None:
    path = make_fits(tmp_path)
    before = snapshot(archive)
    kwargs = dict(kwargs)
    rse = str(kwargs.pop("rse", "CTAO-N"))
    with pytest.raises(expected_type, match=words.replace("(", r"\(").replace(".", r"\.")):
        archive.ingest([path], rse, **kwargs)  # type: ignore[arg-type]
    assert snapshot(archive) == before


@pytest.mark.verifies_usecase(UC)
def test_one_bad_file_does_not_stop_the_others(archive: Archive, tmp_path: Path) -> None:
    good = make_fits(tmp_path / "in", "good.fits", seed=1)
    bad = make_fits(tmp_path / "in", "bad.fits", seed=2)
    corrupt_bytes(bad)
    report = archive.ingest([good, bad], "CTAO-N", lfn_prefix="/mixed")
    assert {r.source.rsplit("/", 1)[-1]: r.status for r in report.results} == {
        "good.fits": "registered",
        "bad.fits": "failed",
    }
    assert [f.name for f in archive.list_files("name like /mixed/%")] == ["/mixed/good.fits"]


@pytest.mark.verifies_usecase("UC-110-1.2.2")
def test_query_syntax_error_names_the_position(archive: Archive) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        archive.list_files("obs_id >= ")
    assert info.value.position > 0
    assert "position" in str(info.value)
