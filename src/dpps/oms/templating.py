"""The one Jinja2 environment of the operations subsystem (dashboard pages, HTML reports).

Autoescaping is on for every HTML template (Markdown reports are text): catalog content
(LFNs, metadata, event reasons) is data written by users and must never become markup.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from dpps.oms import svg


def _when(value: dt.datetime | dt.date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value.isoformat()


def _as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _pairs(volumes: Any) -> list[tuple[str, float]]:
    """(key, bytes) of stats.Volume rows, for a bar chart."""
    return [(v.key, v.bytes) for v in volumes]


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("dpps.oms", "templates"),
        autoescape=select_autoescape(("html", "xml"), default_for_string=True, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["bytes"] = svg.human_bytes
    env.filters["num"] = svg.plain
    env.filters["when"] = _when
    env.filters["as_json"] = _as_json
    env.globals["svg"] = svg
    env.globals["pairs"] = _pairs
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
