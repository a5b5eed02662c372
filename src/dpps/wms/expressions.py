"""CWL parameter references: ``$(inputs.infile.path)``, ``$(runtime.outdir)``, ``$(self.x)``.

Jobs, CWL tools and LFN templates all use the same small language: a reference is a dotted path
with optional ``[N]`` or ``['key']`` subscripts into a context of plain dicts and lists. It is
what CWL calls a parameter reference; JavaScript expressions (``${...}`` or anything that is not
a path) are refused at submission with a clear message, because a workload manager that runs
arbitrary JavaScript in the archive's name would be a liability. ``\\$(`` is a literal ``$(``.

Command lines are built in two phases: at submission every reference is checked against the
names the tool declares; at run time, once the sandbox paths of the inputs are known, the
templates are expanded. A template that is exactly one reference to a list expands to several
arguments (the CWL behaviour for an array bound without ``itemSeparator``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from dpps.core.errors import InvalidInput

_REF = re.compile(r"(\\?)\$\(([^()]*)\)")
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
_ROOT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)")
#: The namespaces a reference may start with.
ROOTS = frozenset({"inputs", "runtime", "self", "job", "parameters"})


def escape(value: str) -> str:
    """A literal argument that must never be expanded (values given by a user)."""
    return value.replace("$(", "\\$(")


def parse_reference(expr: str) -> tuple[str, list[str | int]]:
    """``inputs.files[0].path`` -> ("inputs", ["files", 0, "path"]); InvalidInput otherwise."""
    text = expr.strip()
    head = _ROOT.match(text)
    if head is None or head.group(1) not in ROOTS:
        raise InvalidInput(
            f"unsupported expression $({expr}): only parameter references such as "
            "$(inputs.name.path) are supported (no JavaScript)"
        )
    path: list[str | int] = []
    pos = head.end()
    while pos < len(text):
        seg = _SEGMENT.match(text, pos)
        if seg is None:
            raise InvalidInput(
                f"unsupported expression $({expr}) at {text[pos:]!r}: only parameter "
                "references such as $(inputs.name.path) are supported (no JavaScript)"
            )
        attr, index, key1, key2 = seg.groups()
        path.append(int(index) if index is not None else (attr or key1 or key2 or ""))
        pos = seg.end()
    return head.group(1), path


def references(template: str) -> list[tuple[str, list[str | int]]]:
    """Every reference in ``template`` (validated); refuses ``${...}`` JavaScript blocks."""
    if "${" in template.replace("\\${", ""):
        raise InvalidInput(f"JavaScript expressions are not supported: {template!r}")
    return [parse_reference(m.group(2)) for m in _REF.finditer(template) if not m.group(1)]


def check_template(template: str, input_names: Iterable[str], where: str) -> None:
    """At submission: every ``inputs.X`` reference names a declared input."""
    names = set(input_names)
    for root, path in references(template):
        if root == "inputs" and (not path or path[0] not in names):
            wanted = path[0] if path else ""
            raise InvalidInput(
                f"{where}: $(inputs.{wanted}) names no input (inputs: {', '.join(sorted(names))})"
            )


def _lookup(root: str, path: Sequence[str | int], context: Mapping[str, Any], expr: str) -> Any:
    value: Any = context.get(root)
    if value is None:
        raise InvalidInput(f"$({expr}): {root} is not available here")
    for part in path:
        try:
            if isinstance(part, int) or isinstance(value, Mapping):
                value = value[part]
            elif part == "length" and isinstance(value, list):
                value = len(value)
            else:
                raise KeyError(part)
        except (KeyError, IndexError, TypeError):
            raise InvalidInput(f"$({expr}): no {part!r} here") from None
    return value


def _text(value: Any) -> str:
    if isinstance(value, Mapping) and value.get("class") == "File":
        return str(value.get("path") or value.get("location") or "")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def evaluate(template: str, context: Mapping[str, Any]) -> Any:
    """A template that is one reference yields the value itself; otherwise interpolated text."""
    whole = _REF.fullmatch(template)
    if whole is not None and not whole.group(1):
        root, path = parse_reference(whole.group(2))
        return _lookup(root, path, context, whole.group(2))

    def sub(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(0)[1:]
        root, path = parse_reference(match.group(2))
        return _text(_lookup(root, path, context, match.group(2)))

    return _REF.sub(sub, template)


def expand_argv(templates: Sequence[str], context: Mapping[str, Any]) -> list[str]:
    """The command line a worker executes, from the argv templates stored with the job."""
    argv: list[str] = []
    for template in templates:
        value = evaluate(template, context)
        if isinstance(value, list):
            argv.extend(_text(v) for v in value)
        else:
            argv.append(_text(value))
    return argv


def file_object(location: str, basename: str, size: int | None = None) -> dict[str, Any]:
    """A CWL File object as the templates see it (``path`` is set by the worker)."""
    name = PurePosixPath(basename)
    stem, suffix = name.stem, name.suffix
    return {
        "class": "File",
        "location": location,
        "basename": name.name,
        "nameroot": stem,
        "nameext": suffix,
        "size": size,
    }
