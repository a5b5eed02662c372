"""One export in a process of its own, for servers (``POST /api/v1/exports``).

The ``bagit`` library changes the working directory (``os.chdir``) while it writes a bag's
manifests. The working directory belongs to the whole process: in a threaded server every
other request would resolve relative paths against the bag being written meanwhile. So the
server never calls ``export_bag`` itself: ``run_export`` starts ``python -m
dpps.bdms.export.worker``, which opens the workspace as the requesting account, writes the
bag and answers with one JSON document on stdout (the report, or the error's class and
message, which ``run_export`` raises again as the same ``DppsError`` subclass).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from dpps.bdms.records import ExportReport
from dpps.bdms.types import to_jsonable
from dpps.core import errors
from dpps.core.errors import DppsError, Unavailable


def run_export(
    workspace: Path,
    *,
    account: str,
    did: str,
    dest: Path,
    wait: bool = True,
    timeout_s: float = 3600.0,
) -> ExportReport:
    """Export ``did`` to ``dest`` in a child process; the caller's cwd is never touched."""
    request = {
        "workspace": str(workspace),
        "account": account,
        "did": did,
        "dest": str(dest),
        "wait": wait,
    }
    try:
        done = subprocess.run(  # our own interpreter and module, no shell
            [sys.executable, "-m", "dpps.bdms.export.worker"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise Unavailable(f"export of {did} did not finish within {timeout_s:g} s") from None
    try:
        answer: dict[str, Any] = json.loads(done.stdout or "{}")
    except json.JSONDecodeError:
        answer = {}
    if "report" in answer:
        return ExportReport(**answer["report"])
    if "error" in answer:
        raise _error(answer["error"], answer.get("message", ""))
    last = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
    raise DppsError(f"export worker failed (exit {done.returncode}): {last[0]}")


def _error(name: str, message: str) -> DppsError:
    """The worker's error as the same class here (plain ``DppsError`` if unknown)."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, DppsError):
        return cls(message)
    return DppsError(message)


def main() -> int:
    """Child side: one JSON request on stdin, one JSON answer on stdout."""
    from dpps.bdms.archive import Archive  # the child needs the whole archive, the server not

    request = json.load(sys.stdin)
    try:
        with Archive.open(request["workspace"], account=request["account"]) as archive:
            report = archive.preservation.export(
                request["did"], Path(request["dest"]), wait=bool(request["wait"])
            )
    except DppsError as exc:
        json.dump({"error": type(exc).__name__, "message": str(exc)}, sys.stdout)
        return 1
    json.dump({"report": to_jsonable(report)}, sys.stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through run_export
    raise SystemExit(main())
