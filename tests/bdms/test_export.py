"""Archival information packages (UC-110-1.11): a DID as a BagIt bag that validates, and that
fails validation when anything in it is changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import bagit
import pytest
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.cli.main import app
from dpps.core.errors import Conflict, InvalidInput, NotFound, Unavailable
from dpps.storage.checksums import checksum_file
from tests.bdms.preservation_helpers import (
    actions,
    drop_tape_only,
    ingest_files,
    open_workspace,
    put_replica,
    storage_file,
)

UC = "UC-110-1.11"
pytestmark = pytest.mark.verifies_usecase(UC)
DATASET = "/ctao/dl0/run1"


@pytest.fixture
def archive(tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    with open_workspace(tmp_path, catalog_url) as arch:
        yield arch


@pytest.fixture
def dids(archive: Archive, tmp_path: Path) -> list[str]:
    dids = ingest_files(archive, tmp_path / "src", 3)
    archive.set_meta(dids[0], {"quality": "good"}, reason="shift review")
    return dids


def _payload(bag_dir: Path, did: str) -> Path:
    scope, _, name = did.partition(":")
    return bag_dir / "data" / scope / name.lstrip("/")


def test_a_dataset_becomes_a_valid_bag(archive: Archive, dids: list[str], tmp_path: Path) -> None:
    dest = tmp_path / "aip"
    report = archive.preservation.export(DATASET, dest)
    assert report.files == 3
    assert report.did == f"ctao:{DATASET}"
    bag = bagit.Bag(str(dest))
    bag.validate()  # every payload and tag file against its manifests
    assert bag.is_valid()
    assert bag.info["External-Identifier"] == f"ctao:{DATASET}"
    assert set(bag.algorithms) == {"sha256", "sha512"}
    for did in dids:
        assert (
            _payload(dest, did).read_bytes() == storage_file(archive, did, "CTAO-N").read_bytes()
        )
    meta = dest / "metadata"
    assert {p.name for p in meta.iterdir()} == {
        "dids.json",
        "fixity.json",
        "provenance.json",
        "events.json",
    }
    tagged = {name for name in bag.tagfile_entries() if name.startswith("metadata/")}
    assert tagged == {f"metadata/{p.name}" for p in meta.iterdir()}
    fixity = json.loads((meta / "fixity.json").read_text())
    for did in dids:
        entry = fixity[f"data/ctao/{did.partition(':')[2].lstrip('/')}"]
        size, sums = checksum_file(_payload(dest, did), ["adler32", "blake3"])
        assert (entry["bytes"], entry["adler32"], entry["blake3"]) == (
            size,
            sums["adler32"],
            sums["blake3"],
        )
    described = {d["did"]: d for d in json.loads((meta / "dids.json").read_text())}
    assert described[dids[0]]["meta"]["quality"] == "good"
    assert described[f"ctao:{DATASET}"]["children"] == dids
    history = json.loads((meta / "events.json").read_text())
    assert [e["action"] for e in history[dids[0]]][:2] == ["file.register", "meta.set"]
    provenance = json.loads((meta / "provenance.json").read_text())
    assert [e["action"] for e in provenance["files"][dids[0]]["events"]] == [
        "file.register",
        "meta.set",
    ]
    assert actions(archive)[-1] == "did.export"
    assert not list(tmp_path.glob(".aip.part-*"))


@pytest.mark.parametrize("target", ["payload", "metadata", "added"])
def test_tampering_fails_validation(
    archive: Archive, dids: list[str], tmp_path: Path, target: str
) -> None:
    dest = tmp_path / "aip"
    archive.preservation.export(DATASET, dest)
    if target == "payload":
        path = _payload(dest, dids[1])
        data = bytearray(path.read_bytes())
        data[500] ^= 1
        path.write_bytes(bytes(data))
    elif target == "metadata":
        path = dest / "metadata" / "dids.json"
        path.write_text(path.read_text().replace('"good"', '"bad"'))
    else:
        (dest / "data" / "smuggled.txt").write_text("not archived")
    with pytest.raises(bagit.BagValidationError):
        bagit.Bag(str(dest)).validate()


def test_a_tape_only_file_is_staged_for_export(
    archive: Archive, dids: list[str], tmp_path: Path
) -> None:
    put_replica(archive, dids[2], "PIC-TAPE")
    drop_tape_only(archive, dids[2])
    original = storage_file(archive, dids[2], "PIC-TAPE").read_bytes()
    with pytest.raises(Unavailable, match="staging from tape requested"):
        archive.preservation.export(dids[2], tmp_path / "nowait", wait=False)
    assert not (tmp_path / "nowait").exists()
    archive.preservation.export(dids[2], tmp_path / "aip")
    bagit.Bag(str(tmp_path / "aip")).validate()
    assert _payload(tmp_path / "aip", dids[2]).read_bytes() == original


def test_export_refuses_what_it_cannot_do_and_leaves_nothing(
    archive: Archive, dids: list[str], tmp_path: Path
) -> None:
    (tmp_path / "exists").mkdir()
    with pytest.raises(Conflict, match="exists"):
        archive.preservation.export(DATASET, tmp_path / "exists")
    with pytest.raises(NotFound):
        archive.preservation.export("/no/such", tmp_path / "a")
    with pytest.raises(InvalidInput, match="not a directory"):
        archive.preservation.export(DATASET, tmp_path / "missing" / "a")
    storage_file(archive, dids[1], "CTAO-N").unlink()  # the only copy is gone
    with pytest.raises(Unavailable, match="no replica could be read"):
        archive.preservation.export(DATASET, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.glob(".b.part-*"))
    archive.preservation.delete(dids[0], reason="withdrawn")
    with pytest.raises(Unavailable, match="deleted"):
        archive.preservation.export(dids[0], tmp_path / "c")


def test_cli_export(archive: Archive, dids: list[str], tmp_path: Path) -> None:
    runner = CliRunner()
    ws = ("-w", str(archive.config.workspace))
    res = runner.invoke(app, [*ws, "export", dids[0], str(tmp_path / "one"), "--json"])
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["files"] == 1
    assert out["dest"] == str(tmp_path / "one")
    bagit.Bag(str(tmp_path / "one")).validate()
    res = runner.invoke(app, [*ws, "export", dids[0], str(tmp_path / "one")])
    assert res.exit_code == Conflict.exit_code
    assert res.stderr.count("\n") == 1
