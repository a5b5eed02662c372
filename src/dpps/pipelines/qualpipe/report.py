"""The quality report: a JSON verdict for machines, a self-contained HTML page for people.

The JSON report is a data product of its own (``DATALEVL = 'QUAL'``, ``DATATYPE = 'quality
report'``): its ``product`` object carries the same CTAO keywords a FITS header would, so the
archive helper (``archiving.py``) can register it with the right metadata. The HTML page
inlines its plots as base64 data URIs: one file that opens anywhere, forever, which is what an
archived report must be.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from dpps.core.errors import Conflict
from dpps.core.version import __version__
from dpps.pipelines.qualpipe.criteria import CheckResult
from dpps.pipelines.qualpipe.metrics import METRICS, MetricValue

DATA_TYPE = "quality report"
SCHEMA_VERSION = 1


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def build_report(
    *,
    title: str,
    checks: Sequence[CheckResult],
    metrics: Sequence[MetricValue],
    inputs: Mapping[str, Sequence[str]],
    identifiers: Mapping[str, int],
    criteria_source: str,
    category: str | None = None,
    plots: Sequence[str] = (),
) -> dict[str, Any]:
    """The report as a JSON-ready mapping; ``passed`` is false iff an error-severity check
    failed (warnings and missing metrics are reported but do not fail it)."""
    failed = [c for c in checks if c.failing]
    product: dict[str, Any] = {
        "DATALEVL": "QUAL",
        "DATATYPE": DATA_TYPE,
        "CREATOR": f"dpps QualPipe {__version__}",
        "CREATED": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        **identifiers,
    }
    if category:
        product["DATACAT"] = category
    return {
        "schema_version": SCHEMA_VERSION,
        "product": product,
        "title": title,
        "passed": not failed,
        "summary": {
            "checks": len(checks),
            "passed": sum(c.status == "pass" for c in checks),
            "failed": sum(c.status == "fail" for c in checks),
            "failed_errors": len(failed),
            "missing": sum(c.status == "missing" for c in checks),
        },
        "checks": [c.as_dict() for c in checks],
        "metrics": [
            {"name": m.name, "tel_id": m.tel_id, "value": _number(m.value), "unit": m.unit}
            for m in metrics
        ],
        "inputs": {k: list(v) for k, v in inputs.items()},
        "criteria_source": criteria_source,
        "plots": list(plots),
    }


def _atomic_write(path: Path, data: bytes) -> Path:
    if path.exists():
        raise Conflict(f"{path} exists already: reports are never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.part")
    temp.write_bytes(data)
    temp.rename(path)
    return path


def write_json(path: Path, report: Mapping[str, Any]) -> Path:
    text = json.dumps(report, indent=2, sort_keys=False, allow_nan=False) + "\n"
    return _atomic_write(Path(path), text.encode("utf-8"))


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ report.title }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
 .verdict { padding: .6em 1em; border-radius: 6px; font-size: 1.3em; display: inline-block; }
 .pass { background: #d9f2d9; } .fail { background: #f8d0d0; } .missing { background: #eee; }
 .warn { background: #fff0c0; }
 table { border-collapse: collapse; margin: 1em 0; }
 th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
 th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
 img { max-width: 100%; border: 1px solid #ddd; margin: .5em 0; }
</style></head><body>
<h1>{{ report.title }}</h1>
<p class="verdict {{ 'pass' if report.passed else 'fail' }}">
 {{ 'PASSED' if report.passed else 'FAILED' }}: {{ s.passed }} of {{ s.checks }} checks passed,
 {{ s.failed }} failed ({{ s.failed_errors }} errors), {{ s.missing }} missing</p>
<p>{% for k, v in report.product.items() %}<b>{{ k }}</b> {{ v }} &nbsp; {% endfor %}</p>
<h2>Checks</h2>
<table><tr><th>metric</th><th>telescope</th><th>value</th><th>unit</th><th>criterion</th>
<th>severity</th><th>status</th><th>why</th></tr>
{% for c in report.checks %}
<tr class="{{ 'warn' if c.status == 'fail' and c.severity == 'warning' else c.status }}">
<td>{{ c.metric }}</td><td>{{ c.tel_id if c.tel_id is not none else '' }}</td>
<td class="num">{{ fmt(c.value) }}</td><td>{{ c.unit }}</td><td>{{ c.criterion }}</td>
<td>{{ c.severity }}</td><td>{{ c.status }}</td><td>{{ c.description }}</td></tr>
{% endfor %}</table>
<h2>Plots</h2>
{% for name, uri in images %}<h3>{{ name }}</h3><img alt="{{ name }}" src="{{ uri }}">
{% else %}<p>No plots.</p>{% endfor %}
<h2>All metrics</h2>
<table><tr><th>metric</th><th>telescope</th><th>value</th><th>unit</th><th>meaning</th></tr>
{% for m in report.metrics %}<tr><td>{{ m.name }}</td>
<td>{{ m.tel_id if m.tel_id is not none else '' }}</td><td class="num">{{ fmt(m.value) }}</td>
<td>{{ m.unit }}</td><td>{{ meaning(m.name) }}</td></tr>{% endfor %}</table>
<h2>Inputs</h2><ul>{% for kind, paths in report.inputs.items() %}{% for p in paths %}
<li>{{ kind }}: {{ p }}</li>{% endfor %}{% endfor %}</ul>
<p>Criteria: {{ report.criteria_source }}</p>
</body></html>
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def render_html(report: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """The report as one HTML page; ``images`` (name -> PNG bytes) are inlined."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(_TEMPLATE)
    uris = [
        (name, "data:image/png;base64," + base64.b64encode(png).decode("ascii"))
        for name, png in images.items()
    ]
    return template.render(
        report=report,
        s=report["summary"],
        images=uris,
        fmt=_fmt,
        meaning=lambda name: METRICS.get(name, ("", ""))[1],
    )


def write_html(path: Path, report: Mapping[str, Any], images: Mapping[str, bytes]) -> Path:
    return _atomic_write(Path(path), render_html(report, images).encode("utf-8"))
