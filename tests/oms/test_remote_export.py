"""``dpps export`` against a live server: the same bag as a local export, downloaded whole."""

from __future__ import annotations

import json
from pathlib import Path

import bagit
import pytest

from dpps.oms.server import BackgroundServer
from tests.oms.conftest import Seeded
from tests.oms.test_remote_cli import _local, _remote


def _payload(bag: Path) -> dict[str, bytes]:
    return {
        p.relative_to(bag / "data").as_posix(): p.read_bytes()
        for p in sorted((bag / "data").rglob("*"))
        if p.is_file() and p.suffix != ".json"  # the descriptive JSON carries the export time
    }


@pytest.mark.verifies_usecase("UC-110-1.11")
@pytest.mark.verifies_usecase("UC-160-1.2")
def test_remote_export_downloads_the_same_bag(
    seeded: Seeded, live: BackgroundServer, tmp_path: Path
) -> None:
    did = seeded.dl0_files[0].rsplit("/", 1)[0]  # the dataset of the DL0 files
    local, remote = tmp_path / "local-bag", tmp_path / "remote-bag"
    code, out, err = _local(seeded.archive, "export", did, str(local), "--json")
    assert code == 0, err
    code, out_remote, err = _remote(
        live, seeded.tokens["archive-manager"], "export", did, str(remote), "--json"
    )
    assert code == 0, err
    bagit.Bag(str(remote)).validate()  # fixity of every payload file, checked by bagit
    assert _payload(remote) == _payload(local)
    assert len(_payload(remote)) >= len(seeded.dl0_files)
    mine, theirs = json.loads(out), json.loads(out_remote)
    assert (theirs["files"], theirs["bytes"]) == (mine["files"], mine["bytes"])
    assert theirs["dest"] == str(remote)
    exports = seeded.archive.config.workspace / "exports"
    assert not exports.exists() or list(exports.iterdir()) == []  # the server's copy is gone
    assert not list(tmp_path.glob(".*part-*"))  # no half-unpacked bag left beside them


def test_remote_export_refusals_write_nothing(
    seeded: Seeded, live: BackgroundServer, tmp_path: Path
) -> None:
    did = seeded.dl0_files[0]
    tmp_path = tmp_path / "out"  # the seeded workspace lives in tmp_path itself
    tmp_path.mkdir()
    reader = _remote(live, seeded.tokens["reader"], "export", did, str(tmp_path / "r"))
    assert reader[0] == 8, reader
    missing = _remote(
        live, seeded.tokens["archive-manager"], "export", "ctao:/ctao/none", str(tmp_path / "m")
    )
    assert missing[0] == 5, missing
    (tmp_path / "exists").mkdir()
    exists = _remote(
        live, seeded.tokens["archive-manager"], "export", did, str(tmp_path / "exists")
    )
    assert exists[0] == 6, exists  # Conflict: an export never writes into an existing path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]
    assert list((tmp_path / "exists").iterdir()) == []
