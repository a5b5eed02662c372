"""Runs a Python pipeline tool (``module:function``) as a job's process.

The worker starts ``python -m dpps.wms.pytool tool.json``; the function is called as
``function(inputs=..., parameters=..., outdir=...)`` with File inputs as ``Path`` objects (lists
for arrays) and must write its outputs under ``outdir``. Running it in its own process gives
it the same sandbox, logs, accounting and kill semantics as a command-line tool.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any


def _value(value: Any) -> Any:
    if isinstance(value, dict) and value.get("class") == "File":
        return Path(value["path"])
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


def main(argv: list[str]) -> int:
    ctx = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    module_name, _, func_name = ctx["tool"].partition(":")
    function = getattr(importlib.import_module(module_name), func_name)
    inputs = {name: _value(v) for name, v in ctx["inputs"].items()}
    result = function(inputs=inputs, parameters=ctx["parameters"], outdir=Path(ctx["outdir"]))
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
