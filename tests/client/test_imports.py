"""The REST client imports record types only: never the server, the catalog or SQLAlchemy.

Checked in a fresh interpreter, since this test session has long since loaded all of them.
"""

from __future__ import annotations

import json
import subprocess
import sys

CLIENT_MODULES = (
    "dpps.client.archive",
    "dpps.client.campaigns",
    "dpps.client.export",
    "dpps.client.replication",
    "dpps.client.views",
    "dpps.client.wms",
    "dpps.bdms.api_types",
    "dpps.wms.api_types",
)
FORBIDDEN = ("sqlalchemy", "fastapi", "dpps.catalog", "dpps.oms", "dpps.pipelines")


def test_client_loads_no_server_catalog_or_sqlalchemy() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {CLIENT_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    leaked = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert leaked == []
