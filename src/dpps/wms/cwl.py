"""CWL v1.2 documents (``Workflow``, ``CommandLineTool``) to ``WorkflowSpec``, via cwl-utils.

cwl-utils parses and validates the document against the CWL schema; this module then maps the
subset dpps runs onto its own model and refuses the rest with a clear message instead of
running something different from what the document says. Supported: File/File[]/string/int/
float/boolean inputs (optional ``?``), ``baseCommand``, ``arguments``, ``inputBinding``
(position, prefix, separate, itemSeparator), ``stdout``/``stderr``, output ``glob``,
``ResourceRequirement``, ``EnvVarRequirement``, ``SoftwareRequirement`` (the software version),
step ``source``/``default``, ``scatter`` with ``dotproduct`` or ``flat_crossproduct``.
Refused: JavaScript, ``valueFrom``, nested workflows, ``ShellCommandRequirement``,
``DockerRequirement`` as a requirement (as a hint it is ignored).

Where an output goes in the archive is not CWL's business, so it is written with extension
fields in the ``dpps`` namespace on the output (``dpps:lfn``, ``dpps:data_level``, ``dpps:meta``,
``dpps:rse``, ``dpps:policy``, ``dpps:new_version``); see docs/wms.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import cwl_utils.parser as cwl
from schema_salad.exceptions import SchemaSaladException

from dpps.core.errors import InvalidInput, NotFound
from dpps.wms.builder import single_tool_workflow
from dpps.wms.spec import Tool, WorkflowSpec
from dpps.wms.spec import validated as _validated

DPPS_NS = "https://ctao.org/dpps/cwl#"
_OUTPUT_EXT = ("lfn", "data_level", "meta", "rse", "policy", "new_version")


def _short(uri: str | None) -> str:
    """``file:///w.cwl#step/run/port`` -> ``port``."""
    frag = (uri or "").rsplit("#", 1)[-1]
    return frag.rsplit("/", 1)[-1]


def _source(uri: str) -> str:
    """``file:///w.cwl#calib/out`` -> ``calib/out``; ``...#files`` -> ``files``."""
    return (uri or "").rsplit("#", 1)[-1]


def _one_line(exc: Exception) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text[:800]


def load(path: Path) -> WorkflowSpec:
    """Parse and validate a CWL v1.2 file (Workflow or CommandLineTool)."""
    if not path.is_file():
        raise NotFound(f"{path}: no such CWL file")
    doc = _load_uri(path.resolve().as_uri())
    if isinstance(doc, cwl.cwl_v1_2.CommandLineTool):
        return single_tool_workflow(_tool(doc, path.stem))
    if isinstance(doc, cwl.cwl_v1_2.Workflow):
        return _workflow(doc, path)
    raise InvalidInput(
        f"{path.name}: class {type(doc).__name__} is not supported "
        "(use Workflow or CommandLineTool)"
    )


def _load_uri(uri: str) -> Any:
    try:
        doc = cwl.load_document_by_uri(Path(unquote(urlparse(uri).path)))
    except SchemaSaladException as exc:
        raise InvalidInput(f"invalid CWL: {_one_line(exc)}") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read CWL {uri}: {exc}") from None
    version = getattr(doc, "cwlVersion", None)
    if version != "v1.2":
        raise InvalidInput(
            f"{uri}: cwlVersion {version} is not supported; use v1.2 "
            "(cwl-upgrader converts older documents)"
        )
    return doc


def _type(t: Any, where: str) -> str:
    """A CWL type to 'File', 'File[]', 'int?', ...; refuses records, enums, unions."""
    optional = False
    if isinstance(t, list):
        rest = [x for x in t if x != "null"]
        optional = len(rest) < len(t)
        if len(rest) != 1:
            raise InvalidInput(f"{where}: union types are not supported")
        t = rest[0]
    suffix = "?" if optional else ""
    if isinstance(t, str):
        name = _short(t) if "#" in t else t
        if name in ("stdout", "stderr"):
            return "File"
        if name in ("File", "string", "int", "long", "float", "double", "boolean"):
            mapped = {"long": "int", "double": "float"}.get(name, name)
            return mapped + suffix
        raise InvalidInput(f"{where}: type {name!r} is not supported")
    items = getattr(t, "items", None)
    if items is not None and getattr(t, "type_", None) == "array":
        inner = _type(items, where)
        if inner.endswith(("?", "]")):
            raise InvalidInput(f"{where}: nested or optional array items are not supported")
        return inner + "[]" + suffix
    raise InvalidInput(f"{where}: record and enum types are not supported")


def _requirements(proc: Any, where: str) -> tuple[dict[str, Any], str | None]:
    """Resources, environment and software version from requirements and hints."""
    found: dict[str, Any] = {"env": {}}
    version = None
    for source, hard in ((proc.hints or [], False), (proc.requirements or [], True)):
        for req in source:
            kind = type(req).__name__ if not isinstance(req, dict) else req.get("class", "")
            if kind == "ResourceRequirement":
                if isinstance(req.coresMin, int | float):
                    found["cores"] = max(1, int(req.coresMin))
                if isinstance(req.ramMin, int | float):
                    found["memory_mb"] = max(1, int(req.ramMin))
            elif kind == "EnvVarRequirement":
                for env in req.envDef or []:
                    found["env"][env.envName] = env.envValue
            elif kind == "SoftwareRequirement":
                pkgs = req.packages or []
                if pkgs:
                    versions = pkgs[0].version or []
                    version = f"{pkgs[0].package} {versions[0]}" if versions else pkgs[0].package
            elif kind in ("ScatterFeatureRequirement", "MultipleInputFeatureRequirement"):
                pass
            elif hard:
                raise InvalidInput(f"{where}: requirement {kind} is not supported")
            # Other hints are ignored, as CWL allows (e.g. DockerRequirement).
    return found, version


def _binding(b: Any, where: str) -> dict[str, Any]:
    if b is None:
        return {}
    if getattr(b, "valueFrom", None) is not None:
        raise InvalidInput(f"{where}: inputBinding.valueFrom is not supported")
    out: dict[str, Any] = {"position": int(b.position) if isinstance(b.position, int) else 0}
    if b.prefix is not None:
        out["prefix"] = b.prefix
    if b.separate is not None:
        out["separate"] = bool(b.separate)
    if b.itemSeparator is not None:
        out["item_separator"] = b.itemSeparator
    return out


def _tool(doc: Any, fallback_name: str, name: str | None = None) -> Tool:
    where = f"CWL tool {name or fallback_name}"
    extra, version = _requirements(doc, where)
    base = doc.baseCommand
    base_command = [base] if isinstance(base, str) else list(base or [])
    arguments = []
    for arg in doc.arguments or []:
        if isinstance(arg, str):
            arguments.append({"value": arg})
        else:
            if arg.valueFrom is None:
                raise InvalidInput(f"{where}: an argument needs valueFrom")
            entry: dict[str, Any] = {
                "value": arg.valueFrom,
                "position": arg.position or 0,
                **({"prefix": arg.prefix} if arg.prefix else {}),
                **({"separate": arg.separate} if arg.separate is not None else {}),
            }
            arguments.append(entry)
    inputs = []
    for inp in doc.inputs:
        iname = _short(inp.id)
        port = {
            "name": iname,
            "type": _type(inp.type_, f"{where} input {iname}"),
            "default": inp.default,
            **_binding(inp.inputBinding, f"{where} input {iname}"),
        }
        inputs.append(port)
    outputs = []
    for out in doc.outputs:
        oname = _short(out.id)
        typ = _type(out.type_, f"{where} output {oname}")
        if typ.rstrip("?") not in ("File", "File[]"):
            raise InvalidInput(f"{where}: output {oname} must be a File or File[]")
        glob = None
        if out.type_ in ("stdout", "stderr"):
            attr = "stdout" if out.type_ == "stdout" else "stderr"
            glob = getattr(doc, attr, None) or f"{oname}.{attr}.txt"
            if getattr(doc, attr, None) is None:
                setattr(doc, attr, glob)
        elif out.outputBinding is not None and isinstance(out.outputBinding.glob, str):
            glob = out.outputBinding.glob
        if glob is None:
            raise InvalidInput(f"{where}: output {oname} needs outputBinding.glob (one pattern)")
        ext = {
            k.rsplit("#", 1)[-1]: v
            for k, v in (out.extension_fields or {}).items()
            if k.startswith(DPPS_NS)
        }
        unknown = sorted(set(ext) - set(_OUTPUT_EXT))
        if unknown:
            raise InvalidInput(f"{where}: output {oname}: unknown dpps field(s) {unknown}")
        outputs.append({"name": oname, "glob": glob, "array": typ.startswith("File[]"), **ext})
    data = {
        "name": name or fallback_name,
        "base_command": base_command,
        "arguments": arguments,
        "inputs": inputs,
        "outputs": outputs,
        "stdout": doc.stdout,
        "stderr": doc.stderr,
        "software_version": version,
        **extra,
    }
    if doc.stdin is not None:
        raise InvalidInput(f"{where}: stdin is not supported")
    return _validated(Tool, data, where)


def _workflow(doc: Any, path: Path) -> WorkflowSpec:
    where = f"CWL workflow {path.name}"
    _requirements(doc, where)
    inputs = [
        {
            "name": _short(i.id),
            "type": _type(i.type_, f"{where} input {_short(i.id)}"),
            "default": i.default,
        }
        for i in doc.inputs
    ]
    outputs: dict[str, str] = {}
    for out in doc.outputs:
        src = out.outputSource
        if not isinstance(src, str):
            raise InvalidInput(f"{where}: output {_short(out.id)} needs one outputSource")
        outputs[_short(out.id)] = _source(src)
    steps = []
    for st in doc.steps:
        sname = _short(st.id)
        run = st.run
        if isinstance(run, str):
            run = _load_uri(run)
        if not isinstance(run, cwl.cwl_v1_2.CommandLineTool):
            raise InvalidInput(
                f"{where}: step {sname} must run a CommandLineTool "
                "(nested workflows are not supported)"
            )
        tool = _tool(run, sname, name=sname)
        bindings: dict[str, Any] = {}
        for si in st.in_:
            if getattr(si, "valueFrom", None) is not None:
                raise InvalidInput(f"{where}: step {sname} input valueFrom is not supported")
            srcs = si.source if isinstance(si.source, list) else [si.source] if si.source else []
            bindings[_short(si.id)] = {"source": [_source(s) for s in srcs], "default": si.default}
        scatter = (
            st.scatter if isinstance(st.scatter, list) else [st.scatter] if st.scatter else []
        )
        method = st.scatterMethod or "dotproduct"
        if method not in ("dotproduct", "flat_crossproduct"):
            raise InvalidInput(f"{where}: step {sname}: scatterMethod {method} is not supported")
        steps.append(
            {
                "name": sname,
                "tool": tool.model_dump(),
                "inputs": bindings,
                "scatter": [_short(s) for s in scatter],
                "scatter_method": method,
            }
        )
    name = (
        _short(doc.id) if doc.id and "#" in doc.id and not doc.id.endswith(".cwl") else path.stem
    )
    return _validated(
        WorkflowSpec, {"name": name, "inputs": inputs, "outputs": outputs, "steps": steps}, where
    )
