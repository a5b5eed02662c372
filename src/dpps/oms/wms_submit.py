"""What the REST API adds to workload writes: workflow documents validated from JSON, and the
event-log record of each write (the WMS keeps its own job history; the archive's event log must
name who submitted, killed or retried). Job documents go to ``WMS.submit_document``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dpps.catalog import events
from dpps.catalog.engine import transaction
from dpps.wms.api import WMS
from dpps.wms.spec import WorkflowSpec, validated


def workflow_spec(data: Mapping[str, Any], what: str = "workflow") -> WorkflowSpec:
    return validated(WorkflowSpec, data, what)


def record(wms: WMS, action: str, **details: Any) -> None:
    """One event naming the account of a workload write (``job.submit``, ``job.kill``...)."""
    with transaction(wms.sessions) as session:
        events.record(session, account=wms.account, action=action, details=details)
