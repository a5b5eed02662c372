"""Workload management: jobs, CWL workflows, transformations, local and Dask executors.

Depends on the archive (``dpps.bdms``) to resolve inputs and register outputs; nothing in bdms
depends on it. Start at ``dpps.wms.WMS``; invariants are in README.md beside this file. Names
are imported lazily, so that a worker or a sample tool importing one submodule does not pay for
the CWL parser.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dpps.wms.api import WMS as WMS
    from dpps.wms.builder import Output as Output
    from dpps.wms.builder import Workflow as Workflow
    from dpps.wms.builder import tool_command as tool_command
    from dpps.wms.builder import tool_python as tool_python
    from dpps.wms.spec import Tool as Tool
    from dpps.wms.spec import WorkflowSpec as WorkflowSpec
    from dpps.wms.states import FileStatus as FileStatus
    from dpps.wms.states import JobState as JobState
    from dpps.wms.states import TransformationState as TransformationState
    from dpps.wms.states import WorkflowState as WorkflowState
    from dpps.wms.types import SubmitOptions as SubmitOptions

_WHERE = {
    "WMS": "dpps.wms.api",
    "Output": "dpps.wms.builder",
    "Workflow": "dpps.wms.builder",
    "tool_command": "dpps.wms.builder",
    "tool_python": "dpps.wms.builder",
    "SubmitOptions": "dpps.wms.jobs",
    "Tool": "dpps.wms.spec",
    "WorkflowSpec": "dpps.wms.spec",
    "FileStatus": "dpps.wms.states",
    "JobState": "dpps.wms.states",
    "TransformationState": "dpps.wms.states",
    "WorkflowState": "dpps.wms.states",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
