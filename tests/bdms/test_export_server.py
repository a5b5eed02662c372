"""``POST /api/v1/exports`` (UC-110-1.11) on a live threaded server: each bag is written in a
child process, because the bagit library changes the working directory (``os.chdir``), which
belongs to the whole server. The server's cwd never moves, concurrent exports and reads all
succeed, and bad requests are refused without writing anything."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bagit
import httpx
import pytest

from dpps.bdms.archive import Archive
from dpps.oms.server import BackgroundServer
from tests.oms.conftest import DL0, DL1_FILE, Seeded, seed

pytestmark = pytest.mark.verifies_usecase("UC-110-1.11")


@pytest.fixture
def seeded(archive: Archive, tmp_path: Path) -> Seeded:
    return seed(archive, tmp_path)


def test_concurrent_exports_leave_the_servers_cwd_alone(seeded: Seeded) -> None:
    cwd = os.getcwd()
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:  # any chdir in this process during the exports shows up here
        while not stop.is_set():
            seen.add(os.getcwd())
            stop.wait(0.001)

    watcher = threading.Thread(target=watch)
    headers = seeded.headers("archive-manager")
    with (
        BackgroundServer(seeded.archive) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=300) as http,
    ):

        def export(i: int) -> httpx.Response:
            did = DL0 if i % 2 == 0 else DL1_FILE
            return http.post("/api/v1/exports", json={"did": did, "name": f"bag{i}"})

        def read(_i: int) -> httpx.Response:
            return http.get("/api/v1/rses")

        watcher.start()
        try:
            with ThreadPoolExecutor(6) as pool:
                exports = list(pool.map(export, range(4)))
                reads = list(pool.map(read, range(8)))
        finally:
            stop.set()
            watcher.join()
    assert seen == {cwd}
    assert os.getcwd() == cwd
    assert [r.status_code for r in reads] == [200] * 8
    for i, response in enumerate(exports):
        assert response.status_code == 201, response.text
        body = response.json()
        dest = Path(body["dest"])
        assert dest == seeded.archive.config.workspace / "exports" / f"bag{i}"
        assert body["files"] == (3 if i % 2 == 0 else 1)
        bagit.Bag(str(dest)).validate()


def test_export_requests_are_checked_before_anything_is_written(seeded: Seeded) -> None:
    exports = seeded.archive.config.workspace / "exports"
    with (
        BackgroundServer(seeded.archive) as server,
        httpx.Client(base_url=server.url, timeout=300) as http,
    ):
        post = http.post
        reader = post(
            "/api/v1/exports",
            json={"did": DL0, "name": "x"},
            headers=seeded.headers("reader"),
        )
        assert reader.status_code == 403
        am = seeded.headers("archive-manager")
        escape = post("/api/v1/exports", json={"did": DL0, "name": "../x"}, headers=am)
        assert escape.status_code == 400  # request validation: a bare name only
        missing = post("/api/v1/exports", json={"did": "/ctao/none", "name": "y"}, headers=am)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert post("/api/v1/exports", json={"did": DL0, "name": "z"}, headers=am).is_success
        again = post("/api/v1/exports", json={"did": DL0, "name": "z"}, headers=am)
        assert again.status_code == 409  # an export never writes into an existing path
    assert sorted(p.name for p in exports.iterdir()) == ["z"]
