"""Datasets and containers over REST (issue 14): the routes through the real app, the client
(``RemoteArchive.datasets``, ``get`` of a dataset) and the CLI against a live server, on both
catalogs; refusals keep their status codes and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dpps.cli.main import app
from dpps.client.archive import RemoteArchive
from dpps.core.errors import Conflict, InvalidInput, NotFound
from dpps.oms.server import BackgroundServer
from tests.oms.conftest import DL0, DL1_FILE, Seeded

runner = CliRunner()


def _remote(server: BackgroundServer, token: str, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env={"DPPS_URL": server.url, "DPPS_TOKEN": token})
    return r.exit_code, r.stdout, r.stderr


def _local(s: Seeded, *args: str) -> tuple[int, str, str]:
    ws = str(s.archive.config.workspace)
    r = runner.invoke(app, ["-w", ws, *args], env={"DPPS_URL": ""})
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.verifies_usecase("UC-110-1.12")
def test_routes_create_attach_list_close_and_refuse(seeded: Seeded, client: TestClient) -> None:
    h = seeded.headers("data-processing-manager")
    made = client.post(
        "/api/v1/datasets", json={"did": "/ctao/dl1/sel", "meta": {"n": 1}}, headers=h
    )
    assert made.status_code == 201, made.text
    assert (made.json()["did_type"], made.json()["is_open"]) == ("DATASET", True)
    box = {"did": "/ctao/box", "type": "CONTAINER"}
    assert client.post("/api/v1/datasets", json=box, headers=h).status_code == 201
    attach = {"parent": "/ctao/dl1/sel", "dids": [DL1_FILE, seeded.dl0_files[0]]}
    got = client.post("/api/v1/datasets/attach", json=attach, headers=h)
    assert got.status_code == 200, got.text
    assert got.json()["dids"] == [f"ctao:{DL1_FILE}", seeded.dl0_files[0]]
    both = {"parent": "/ctao/box", "dids": ["/ctao/dl1/sel", DL0]}
    assert client.post("/api/v1/datasets/attach", json=both, headers=h).status_code == 200

    content = client.get("/api/v1/datasets/content/ctao:/ctao/box", headers=h).json()
    assert [i["did"] for i in content["items"]] == [f"ctao:{DL0}", "ctao:/ctao/dl1/sel"]
    files = client.get(
        "/api/v1/datasets/content/ctao:/ctao/box",
        params={"recursive": True, "limit": 2, "offset": 2},
        headers=h,
    ).json()
    assert len(files["items"]) == 2  # 4 distinct files below the box (one in both datasets)
    listed = client.get("/api/v1/dids", params={"dataset": "/ctao/box"}, headers=h).json()
    assert listed["total"] == 4
    counted = client.get(
        "/api/v1/dids/count", params={"dataset": "/ctao/dl1/sel", "filter": "data_level=DL1"}
    )
    assert counted.status_code == 401  # a token is needed for every route
    counted = client.get(
        "/api/v1/dids/count",
        params={"dataset": "/ctao/dl1/sel", "filter": "data_level=DL1"},
        headers=h,
    )
    assert counted.json() == {"count": 1}

    def problem(method: str, path: str, body: object, status: int, kind: str) -> None:
        answer = client.request(method, path, json=body, headers=h)
        assert answer.status_code == status, answer.text
        assert answer.json()["type"].endswith(kind), answer.json()

    problem("POST", "/api/v1/datasets/attach", attach, 409, "Conflict")  # duplicates
    into_box = {"parent": "/ctao/box", "dids": [DL1_FILE]}
    problem("POST", "/api/v1/datasets/attach", into_box, 400, "InvalidInput")
    loop = {"parent": "/ctao/box", "dids": ["/ctao/box"]}
    problem("POST", "/api/v1/datasets/attach", loop, 400, "InvalidInput")
    unknown = {"parent": "/ctao/dl1/sel", "dids": ["/ctao/none.fits"]}
    problem("POST", "/api/v1/datasets/attach", unknown, 404, "NotFound")
    problem("POST", "/api/v1/datasets/detach", unknown, 404, "NotFound")
    problem("POST", "/api/v1/datasets", {"did": DL0}, 409, "Conflict")
    problem("POST", "/api/v1/datasets", {"did": "/x", "type": "FILE"}, 400, "InvalidInput")
    problem("GET", f"/api/v1/datasets/content/ctao:{DL1_FILE}", None, 400, "InvalidInput")
    problem("GET", f"/api/v1/content/ctao:{DL0}", None, 400, "InvalidInput")  # no own bytes

    closed = client.post(
        "/api/v1/datasets/status", json={"did": "/ctao/dl1/sel", "open": False}, headers=h
    )
    assert closed.json()["is_open"] is False
    detach = {"parent": "/ctao/dl1/sel", "dids": [DL1_FILE]}
    problem("POST", "/api/v1/datasets/detach", detach, 409, "Conflict")
    client.post("/api/v1/datasets/status", json={"did": "/ctao/dl1/sel", "open": True}, headers=h)
    assert client.post("/api/v1/datasets/detach", json=detach, headers=h).json() == {
        "dids": [f"ctao:{DL1_FILE}"]
    }

    reader = seeded.headers("reader")
    refused = client.post("/api/v1/datasets", json={"did": "/ctao/r"}, headers=reader)
    assert refused.status_code == 403
    assert client.get("/api/v1/datasets/content/ctao:/ctao/box", headers=reader).status_code == 200
    outside = client.post("/api/v1/datasets", json={"did": "sim:/sim/x"}, headers=h)
    assert outside.status_code == 403  # the account writes in scope ctao only
    events = seeded.archive.show("/ctao/dl1/sel").events
    assert {e.account for e in events if e.action.startswith(("did.", "dataset."))} == {
        "acct-data-processing-manager"
    }


@pytest.mark.verifies_usecase("UC-110-1.3.1")
@pytest.mark.verifies_usecase("UC-110-1.12")
def test_the_client_and_the_cli_do_the_same_over_rest(
    seeded: Seeded, live: BackgroundServer, tmp_path: Path
) -> None:
    token = seeded.tokens["data-processing-manager"]
    remote = RemoteArchive(live.url, token)
    try:
        ds = remote.datasets
        assert ds.add_container("/ctao/night").did_type == "CONTAINER"
        assert ds.attach("/ctao/night", [DL0]) == [f"ctao:{DL0}"]
        with pytest.raises(Conflict, match="already attached"):
            ds.attach("/ctao/night", [DL0])
        assert ds.attach("/ctao/night", [DL0], ignore_duplicates=True) == []
        with pytest.raises(InvalidInput, match="container holds datasets"):
            ds.attach("/ctao/night", [DL1_FILE])
        with pytest.raises(NotFound):
            ds.detach("/ctao/night", ["/ctao/none"])
        below = ds.list_content("/ctao/night", recursive=True)
        assert [b.did for b in below] == seeded.dl0_files
        assert (
            ds.list_content("/ctao/night", recursive=True, limit=1, offset=1)[0].did
            == (seeded.dl0_files[1])
        )
        assert [f.did for f in remote.list_files(dataset="/ctao/night")] == seeded.dl0_files
        assert remote.count(dataset="/ctao/night") == 3
        assert ds.close("/ctao/night").is_open is False
        with pytest.raises(Conflict, match="closed"):
            ds.detach("/ctao/night", [DL0])

        out = tmp_path / "out"
        first = remote.get([DL0], out)
        assert [r.status for r in first.results] == ["retrieved"] * 3
        (out / "tel_002.fits").unlink()  # as if the first run had been interrupted
        again = remote.get(["/ctao/night"], out)
        assert sorted(r.status for r in again.results) == ["present", "present", "retrieved"]
        assert not list(out.glob(".*part*"))
    finally:
        remote.close()

    # The CLI: the example works both ways, with the same files and exit codes.
    for name, run in (("local", _local), ("remote", None)):
        dest = tmp_path / f"cli-{name}"
        args = ("get", DL0, f"{dest}/", "--json")
        code, out_text, err = _local(seeded, *args) if run else _remote(live, token, *args)
        assert code == 0, err
        assert [r["status"] for r in json.loads(out_text)["results"]] == ["retrieved"] * 3
        code, out_text, err = _local(seeded, *args) if run else _remote(live, token, *args)
        assert code == 0, err
        assert {r["status"] for r in json.loads(out_text)["results"]} == {"present"}
    for args in (
        ("dataset", "ls", "/ctao/night", "--json"),
        ("dataset", "ls", "/ctao/night", "-r"),
        ("ls", "--dataset", "/ctao/night", "--json"),
        ("ls", "--dataset", "/ctao/night", "--count"),
    ):
        local, there = _local(seeded, *args), _remote(live, token, *args)
        assert local[0] == there[0] == 0, (args, local, there)
        assert local[1] == there[1], args
    code, _out, err = _remote(live, token, "dataset", "add", "/ctao/more", "--json")
    assert code == 0, err
    code, _out, err = _remote(live, token, "dataset", "attach", "/ctao/more", DL1_FILE)
    assert code == 0, err
    code, _out, err = _remote(live, token, "dataset", "attach", "/ctao/night", "/ctao/more")
    assert code == 6  # the container is closed
    assert "closed" in err
    assert _remote(live, token, "dataset", "reopen", "/ctao/night")[0] == 0
    assert _remote(live, token, "dataset", "attach", "/ctao/night", "/ctao/more")[0] == 0
    assert _remote(live, token, "dataset", "detach", "/ctao/more", DL1_FILE)[0] == 0
    code, _out, err = _remote(live, token, "dataset", "detach", "/ctao/more", DL1_FILE)
    assert code == 5  # no longer a member: NotFound
    code, _out, err = _remote(live, seeded.tokens["reader"], "dataset", "close", "/ctao/more")
    assert code == 8
    assert "may not did.write" in err
    assert seeded.archive.show("/ctao/more").parents == ["ctao:/ctao/night"]
