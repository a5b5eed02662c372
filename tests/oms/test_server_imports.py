"""The API server stays small at rest: building its app loads none of the science stack.

``dpps serve`` must sit under 150 MiB at rest (issue 13; benchmarks/bench_memory.py measures
it). The campaigns router once pulled the whole DataPipe (scikit-learn, SciPy, astropy, h5py)
through the campaign comparison's imports and took the server from about 90 to 250 MiB; this
checks the cause, the modules in ``sys.modules``, not a size (no figures in tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dpps.bdms.archive import Archive

SRC = Path(__file__).resolve().parents[2] / "src"
#: What a job's tools need and the server does not.
SCIENCE = ("astropy", "h5py", "sklearn", "scipy", "gammapy", "ctapipe", "pyirf", "matplotlib")


def test_building_the_api_app_loads_no_science_library(tmp_path: Path) -> None:
    Archive.init(tmp_path / "ws").close()
    script = (
        "import json, sys\n"
        "from dpps.oms.api import app_from_env\n"
        "app_from_env()\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({SCIENCE!r}))))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "DPPS_WORKSPACE": str(tmp_path / "ws"),
        "DPPS_URL": "",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
