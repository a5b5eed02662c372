"""``dpps export`` against a server: the server writes the bag, the client downloads it.

The bag is written on the server (in a child process, see ``bdms/export/worker.py``) under its
``exports/`` directory with a one-off name, then fetched as one tar stream and unpacked beside
the destination under a hidden name, renamed into place only when complete: like a local
export, a destination either holds a whole bag or does not exist. The server's copy is removed
once it has been sent.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any, Protocol

import httpx

from dpps.bdms.records import ExportReport
from dpps.core.errors import Conflict, InvalidInput


class Transport(Protocol):
    http: httpx.Client

    def _json(self, method: str, path: str, **kwargs: Any) -> Any: ...


def export_remote(remote: Transport, did: str, dest: Path, *, wait: bool = True) -> ExportReport:
    """Export ``did`` as a BagIt bag at the local path ``dest`` through the server."""
    from dpps.client.archive import _error  # client.py imports the views: import on use

    dest = dest.expanduser().absolute()
    if os.path.lexists(dest):
        raise Conflict(f"{dest} exists; an export never writes into an existing path")
    if not dest.parent.is_dir():
        raise InvalidInput(f"{dest.parent} is not a directory")
    name = f"remote-{uuid.uuid4().hex}"
    made = remote._json(
        "POST", "/api/v1/exports", json={"did": did, "name": name, "wait": wait}, timeout=None
    )
    work = dest.parent / f".{dest.name}.part-{uuid.uuid4().hex}"
    work.mkdir()
    try:
        with tempfile.TemporaryFile() as tar_file:
            url = f"/api/v1/exports/{name}"
            with remote.http.stream("GET", url, params={"remove": True}, timeout=None) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise _error(answer)
                for chunk in answer.iter_bytes(4 * 1024 * 1024):
                    tar_file.write(chunk)
            tar_file.seek(0)
            with tarfile.open(fileobj=tar_file, mode="r:") as tar:
                tar.extractall(work, filter="data")  # no absolute paths, no escapes, no devices
        os.rename(work / name, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportReport(made["did"], str(dest), made["files"], made["bytes"], made["seconds"])
