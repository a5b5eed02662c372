"""``dpps serve --workers 2``: the API in two processes beside the daemons, stopped by SIGTERM.

A real ``dpps serve`` in a subprocess on 127.0.0.1, stopped by its PID; its workers are its
children and must go with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from dpps.bdms.archive import Archive
from dpps.core.errors import ConfigError, InvalidInput
from dpps.oms.accounts import AccountService
from dpps.oms.server import free_port


def test_serve_with_two_api_workers(archive: Archive) -> None:
    """Both workers answer, and both apply the ``api`` settings of the environment."""
    service = AccountService(archive.sessions)
    service.add_account("ops", ["reader"], [])
    token = service.create_token("ops").token
    port = free_port()
    dpps = Path(sys.executable).with_name("dpps")
    cmd = [
        str(dpps),
        "-w",
        str(archive.config.workspace),
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--only",
        "evaluator",
    ]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "DPPS_URL": "", "DPPS_API__MAX_BODY_BYTES": "1000"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "dpps serve --workers 2 did not answer"
            time.sleep(0.5)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            for _ in range(6):  # new connections: the kernel spreads them over the workers
                answer = httpx.get(f"{url}/api/v1/whoami", headers=headers, timeout=30)
                assert answer.json()["name"] == "ops"
                big = httpx.post(f"{url}/api/v1/rules", headers=headers, content=b"x" * 2000)
                assert big.status_code == 413, big.text
            assert client.get("/api/v1/dids", params={"filter": "obs_id="}).status_code == 400
        workers = [
            p
            for p in psutil.Process(proc.pid).children()
            if "resource_tracker" not in " ".join(p.cmdline())
        ]
        assert len(workers) == 2, [p.cmdline() for p in workers]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
        for worker in workers:
            assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_worker_and_thread_settings_are_refused(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dpps.oms.api import app_from_env
    from dpps.oms.server import serve

    monkeypatch.setenv("DPPS_WORKSPACE", str(archive.config.workspace))
    for bad in ("x", "0", "-3"):
        monkeypatch.setenv("DPPS_API__THREADS", bad)
        with pytest.raises(ConfigError, match=r"api\.threads"):
            app_from_env()
    monkeypatch.setenv("DPPS_API__THREADS", "4")
    app = app_from_env()
    assert app.state.dpps.settings.threads == 4
    app.state.dpps.archive.close()  # the app opened it; its lifespan never ran here
    with pytest.raises(InvalidInput, match="at least 1"):
        serve(archive, [], workers=0)
