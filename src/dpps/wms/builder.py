"""Building jobs and workflows from Python, and reading ``JOB.yaml`` files.

The builder produces exactly the ``WorkflowSpec`` a CWL document would (the tests check that
the same workflow written both ways is equal), so pipelines can define their workflows in
Python and still exchange them as CWL::

    calib = Tool.command("calib", ["python", "calib.py", "$(inputs.raw.path)", "out.h5"],
                         inputs={"raw": "File"},
                         outputs=[Output("dl1", "out.h5", lfn="/dl1/$(inputs.raw.nameroot).h5")])
    wf = Workflow("night", inputs={"raws": "File[]"})
    step = wf.step("calib", calib, raw=wf.input("raws"), scatter=["raw"])
    wf.output("dl1", step.out("dl1"))
    spec = wf.build()

A ``JOB.yaml`` describes one job: ``command`` (argv templates) or ``tool`` (``module:function``),
``inputs`` (``lfn:`` locations and scalars; their types are inferred), ``outputs`` and the
run options (see docs/wms.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from dpps.core.errors import InvalidInput, NotFound
from dpps.wms.spec import LFN_SCHEME, InputPort, OutputPort, Tool, WorkflowSpec, _Model, validated

Output = OutputPort


def _ports(inputs: Mapping[str, str | InputPort] | None) -> list[dict[str, Any]]:
    return [
        (
            t.model_copy(update={"name": n})
            if isinstance(t, InputPort)
            else InputPort(name=n, type=t)
        ).model_dump()
        for n, t in (inputs or {}).items()
    ]


def tool_command(
    name: str,
    command: Sequence[str],
    *,
    inputs: Mapping[str, str | InputPort] | None = None,
    outputs: Sequence[OutputPort] = (),
    **options: Any,
) -> Tool:
    """A command-line tool whose argv templates reference its inputs (``$(inputs.x.path)``);
    an ``InputPort`` with a ``position`` binds an input on the command line as CWL does."""
    ports = _ports(inputs)
    return validated(
        Tool,
        {
            "name": name,
            "base_command": list(command),
            "inputs": ports,
            "outputs": [o.model_dump() for o in outputs],
            **options,
        },
        f"tool {name}",
    )


def tool_python(
    name: str,
    target: str,
    *,
    inputs: Mapping[str, str | InputPort] | None = None,
    outputs: Sequence[OutputPort] = (),
    **options: Any,
) -> Tool:
    """A Python pipeline tool ``module:function(inputs=, parameters=, outdir=)``."""
    ports = _ports(inputs)
    return validated(
        Tool,
        {
            "name": name,
            "python": target,
            "inputs": ports,
            "outputs": [o.model_dump() for o in outputs],
            **options,
        },
        f"tool {name}",
    )


class StepRef:
    def __init__(self, name: str) -> None:
        self.name = name

    def out(self, port: str) -> str:
        return f"{self.name}/{port}"


class Workflow:
    """Collects steps, then ``build()`` validates the DAG into a ``WorkflowSpec``."""

    def __init__(self, name: str, inputs: Mapping[str, str | InputPort] | None = None) -> None:
        self.name = name
        self._inputs: list[dict[str, Any]] = []
        for key, value in (inputs or {}).items():
            port = value if isinstance(value, InputPort) else InputPort(name=key, type=value)
            self._inputs.append(port.model_dump())
        self._steps: list[dict[str, Any]] = []
        self._outputs: dict[str, str] = {}

    def input(self, name: str) -> str:
        return name

    def step(
        self,
        name: str,
        tool: Tool,
        *,
        scatter: Sequence[str] = (),
        scatter_method: str = "dotproduct",
        defaults: Mapping[str, Any] | None = None,
        **sources: str | Sequence[str],
    ) -> StepRef:
        bindings: dict[str, Any] = {}
        for port, src in sources.items():
            bindings[port] = {"source": [src] if isinstance(src, str) else list(src)}
        for port, value in (defaults or {}).items():
            bindings.setdefault(port, {"source": []})["default"] = value
        self._steps.append(
            {
                "name": name,
                "tool": tool.model_dump(),
                "inputs": bindings,
                "scatter": list(scatter),
                "scatter_method": scatter_method,
            }
        )
        return StepRef(name)

    def output(self, name: str, source: str) -> None:
        self._outputs[name] = source

    def build(self) -> WorkflowSpec:
        return validated(
            WorkflowSpec,
            {
                "name": self.name,
                "inputs": self._inputs,
                "outputs": self._outputs,
                "steps": self._steps,
            },
            f"workflow {self.name}",
        )


class JobFile(_Model):
    """The ``JOB.yaml`` format (unknown keys are errors)."""

    name: str | None = None
    command: list[str] | None = None
    tool: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    stdout: str | None = None
    stderr: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    software_version: str | None = None
    cores: int = 1
    memory_mb: int = 1000
    site: str | None = None
    priority: int = 3
    activity: str = "default"
    max_attempts: int | None = None


def _infer(name: str, value: Any) -> str:
    def one(v: Any) -> str:
        if (isinstance(v, str) and v.startswith(LFN_SCHEME)) or isinstance(v, dict):
            return "File"
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, int):
            return "int"
        if isinstance(v, float):
            return "float"
        if isinstance(v, str):
            return "string"
        raise InvalidInput(f"input {name!r}: cannot use a {type(v).__name__} value")

    if isinstance(value, list):
        kinds = {one(v) for v in value}
        if len(kinds) != 1:
            raise InvalidInput(f"input {name!r}: a list must hold values of one type")
        return kinds.pop() + "[]"
    return one(value)


def load_job(data: Any, where: str = "job") -> tuple[Tool, dict[str, Any], JobFile]:
    """A JOB.yaml mapping -> (tool, input values, options)."""
    job = validated(JobFile, data, where)
    name = job.name or "job"
    outputs = [{"name": o.get("name", f"out{i}"), **o} for i, o in enumerate(job.outputs)]
    options: dict[str, Any] = {
        "name": name,
        "inputs": [{"name": k, "type": _infer(k, v)} for k, v in job.inputs.items()],
        "outputs": outputs,
        "stdout": job.stdout,
        "stderr": job.stderr,
        "env": job.env,
        "software_version": job.software_version,
        "cores": job.cores,
        "memory_mb": job.memory_mb,
    }
    if job.command is not None:
        options["base_command"] = job.command
    if job.tool is not None:
        options["python"] = job.tool
    return validated(Tool, options, where), dict(job.inputs), job


def read_yaml(path: Path, what: str) -> Any:
    if not path.is_file():
        raise NotFound(f"{path}: no such {what} file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from None


def single_tool_workflow(tool: Tool) -> WorkflowSpec:
    """A tool as a one-step workflow (how transformations run a single tool)."""
    return validated(
        WorkflowSpec,
        {
            "name": tool.name,
            "inputs": [
                i.model_copy(update={"position": None, "prefix": None}).model_dump()
                for i in tool.inputs
            ],
            "outputs": {o.name: f"{tool.name}/{o.name}" for o in tool.outputs},
            "steps": [
                {
                    "name": tool.name,
                    "tool": tool.model_dump(),
                    "inputs": {i.name: {"source": [i.name]} for i in tool.inputs},
                }
            ],
        },
        f"tool {tool.name}",
    )


__all__ = [
    "JobFile",
    "Output",
    "Workflow",
    "WorkflowSpec",
    "load_job",
    "read_yaml",
    "single_tool_workflow",
    "tool_command",
    "tool_python",
]
