"""What a job and a workflow are, independent of how they were written (CWL, YAML, Python).

CWL documents, ``JOB.yaml`` files and the Python builder all become these models; the catalog
stores them as JSON, and a worker needs nothing else to run a step. They are pydantic models
with unknown keys forbidden, so a misspelled field is an error at submission, not a job that
silently does something else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dpps.core.errors import InvalidInput
from dpps.wms.expressions import check_template, escape

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$")
SCALAR_TYPES = ("string", "int", "float", "boolean")
#: How a job's inputs name an archived file: ``lfn:scope:/name`` (bound by ``wms.binding``).
LFN_SCHEME = "lfn:"
_PY_TOOL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def base_type(type_: str) -> tuple[str, bool, bool]:
    """``File[]?`` -> ("File", is_array=True, optional=True)."""
    optional = type_.endswith("?")
    core = type_.rstrip("?")
    array = core.endswith("[]")
    core = core.removesuffix("[]")
    if core not in ("File", *SCALAR_TYPES):
        raise ValueError(
            f"unsupported type {type_!r}: use File, string, int, float, boolean, "
            "optionally with [] (array) and ? (optional)"
        )
    return core, array, optional


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputPort(_Model):
    """A named input; ``position`` set means it is bound on the command line (CWL
    ``inputBinding``)."""

    name: str
    type: str = "File"
    default: Any = None
    position: int | None = None
    prefix: str | None = None
    separate: bool = True
    item_separator: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not NAME_RE.match(self.name):
            raise ValueError(f"invalid input name {self.name!r}")
        base_type(self.type)
        return self

    @property
    def is_file(self) -> bool:
        return base_type(self.type)[0] == "File"

    @property
    def is_array(self) -> bool:
        return base_type(self.type)[1]

    @property
    def optional(self) -> bool:
        return base_type(self.type)[2] or self.default is not None


class Argument(_Model):
    """A fixed command-line argument (a template: may reference inputs and the runtime)."""

    value: str
    position: int = 0
    prefix: str | None = None
    separate: bool = True


class OutputPort(_Model):
    """An output file (or files, ``array``) and where it goes in the archive."""

    name: str
    glob: str
    array: bool = False
    lfn: str | None = Field(
        default=None, description="LFN template; default <prefix>/job_<id>/<name>."
    )
    data_level: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    rse: str | None = Field(
        default=None, description="Target RSE; default: a disk RSE of the site."
    )
    policy: str | None = Field(
        default=None, description="Replication policy applied on registration."
    )
    new_version: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not NAME_RE.match(self.name):
            raise ValueError(f"invalid output name {self.name!r}")
        return self


class Tool(_Model):
    """One invocation template: a command line (CWL CommandLineTool) or a Python pipeline tool
    (``module:function``, called with inputs, parameters and the output directory)."""

    name: str
    base_command: tuple[str, ...] = ()
    arguments: tuple[Argument, ...] = ()
    python: str | None = None
    inputs: tuple[InputPort, ...] = ()
    outputs: tuple[OutputPort, ...] = ()
    stdout: str | None = None
    stderr: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    software_version: str | None = None
    cores: int = Field(1, ge=1)
    memory_mb: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if bool(self.base_command or self.arguments) == bool(self.python):
            raise ValueError(
                f"tool {self.name!r}: give a command line or a python tool, not both or neither"
            )
        if self.python and not _PY_TOOL.match(self.python):
            raise ValueError(f"tool {self.name!r}: python tool must be 'module:function'")
        _unique([i.name for i in self.inputs], f"tool {self.name!r} input")
        _unique([o.name for o in self.outputs], f"tool {self.name!r} output")
        names = [i.name for i in self.inputs]
        where = f"tool {self.name!r}"
        try:
            for text in (*self.base_command, *(a.value for a in self.arguments)):
                check_template(text, names, where)
            for out in self.outputs:
                check_template(out.glob, names, f"{where} output {out.name}")
                if out.lfn:
                    check_template(out.lfn, names, f"{where} output {out.name} lfn")
            for text in (self.stdout or "", self.stderr or ""):
                check_template(text, names, where)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return self

    def input(self, name: str) -> InputPort:
        for port in self.inputs:
            if port.name == name:
                return port
        raise InvalidInput(f"tool {self.name!r} has no input {name!r}")


class StepInput(_Model):
    """Where a step input comes from: workflow inputs or ``step/output`` (several: a list)."""

    source: tuple[str, ...] = ()
    default: Any = None


class Step(_Model):
    name: str
    tool: Tool
    inputs: dict[str, StepInput] = Field(default_factory=dict)
    scatter: tuple[str, ...] = ()
    scatter_method: Literal["dotproduct", "flat_crossproduct"] = "dotproduct"

    def upstream(self) -> set[str]:
        return {s.split("/", 1)[0] for i in self.inputs.values() for s in i.source if "/" in s}


class WorkflowSpec(_Model):
    """A DAG of steps; a single tool is a one-step workflow."""

    name: str
    inputs: tuple[InputPort, ...] = ()
    outputs: dict[str, str] = Field(default_factory=dict)
    steps: tuple[Step, ...]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.steps:
            raise ValueError(f"workflow {self.name!r} has no steps")
        _unique([s.name for s in self.steps], f"workflow {self.name!r} step")
        inputs = {i.name for i in self.inputs}
        outs = {s.name: {o.name for o in s.tool.outputs} for s in self.steps}
        for step in self.steps:
            tool_inputs = {i.name for i in step.tool.inputs}
            for port, binding in step.inputs.items():
                if port not in tool_inputs:
                    raise ValueError(f"step {step.name!r}: tool has no input {port!r}")
                for src in binding.source:
                    _check_source(src, inputs, outs, f"step {step.name!r} input {port!r}")
            for port in step.scatter:
                if port not in step.inputs:
                    raise ValueError(
                        f"step {step.name!r}: scatter names {port!r}, which is "
                        "not a connected input of the step"
                    )
            for inp in step.tool.inputs:
                if inp.name not in step.inputs and not inp.optional:
                    raise ValueError(
                        f"step {step.name!r}: required input {inp.name!r} is not connected"
                    )
        for name, src in self.outputs.items():
            _check_source(src, inputs, outs, f"workflow output {name!r}")
        self.order()  # raises on cycles
        return self

    def order(self) -> list[Step]:
        """Steps in an order where each comes after the steps it reads from."""
        done: list[Step] = []
        names: set[str] = set()
        pending = list(self.steps)
        while pending:
            ready = [s for s in pending if s.upstream() <= names]
            if not ready:
                raise ValueError(
                    f"workflow {self.name!r}: steps {[s.name for s in pending]} form a cycle"
                )
            for s in ready:
                done.append(s)
                names.add(s.name)
                pending.remove(s)
        return done

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise InvalidInput(f"workflow {self.name!r} has no step {name!r}")


def _check_source(src: str, inputs: set[str], outs: Mapping[str, set[str]], where: str) -> None:
    if "/" in src:
        step, port = src.split("/", 1)
        if step not in outs or port not in outs[step]:
            raise ValueError(f"{where}: source {src!r} is no step output")
    elif src not in inputs:
        raise ValueError(f"{where}: source {src!r} is no workflow input")


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} {n!r}")
        seen.add(n)


def validated[M: BaseModel](model: type[M], data: Any, what: str) -> M:
    """Build a spec model, turning pydantic's report into one InvalidInput line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in err['loc'])}: " if err["loc"] else "")
            + err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise InvalidInput(f"invalid {what}: {problems}") from None


# -- command lines ----------------------------------------------------------------------------


def _render_value(port: InputPort, value: Any, ref: str) -> list[str] | None:
    """One bound input as argv templates; File paths stay references (known at run time)."""
    if value is None:
        return None
    if port.is_array:
        items = list(value)
        rendered = [_item(v, f"{ref}[{i}]") for i, v in enumerate(items)]
        if port.item_separator is not None:
            joined = port.item_separator.join(rendered)
            return [joined] if items else None
        return rendered
    if isinstance(value, bool):
        return [] if value else None
    return [_item(value, ref)]


def _item(value: Any, ref: str) -> str:
    if isinstance(value, Mapping) and value.get("class") == "File":
        return f"$({ref}.path)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _with_prefix(prefix: str | None, separate: bool, items: list[str]) -> list[str]:
    if prefix is None:
        return items
    if not items:
        return [prefix]
    if separate:
        return [prefix, *items]
    return [prefix + items[0], *items[1:]]


def command_line(tool: Tool, values: Mapping[str, Any]) -> list[str]:
    """The argv templates of one invocation: base command, then bindings by position."""
    bound: list[tuple[int, int, str, list[str]]] = []
    for index, arg in enumerate(tool.arguments):
        bound.append(
            (arg.position, 0, f"{index:06d}", _with_prefix(arg.prefix, arg.separate, [arg.value]))
        )
    for port in tool.inputs:
        if port.position is None:
            continue
        items = _render_value(port, values.get(port.name), f"inputs.{port.name}")
        if items is None:
            continue
        bound.append(
            (port.position, 1, port.name, _with_prefix(port.prefix, port.separate, items))
        )
    argv = list(tool.base_command)
    for *_key, items in sorted(bound, key=lambda b: (b[0], b[1], b[2])):
        argv.extend(items)
    return argv


def iter_files(value: Any) -> Iterator[dict[str, Any]]:
    """The File objects in a bound value (a File or a list of them)."""
    if isinstance(value, Mapping) and value.get("class") == "File":
        yield dict(value)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_files(item)
