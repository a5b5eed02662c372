"""Binding input values to a tool's or workflow's ports; ``lfn:`` locations become archive files.

Every File input of a job is an archive file: a ``lfn:`` location (``lfn:/ctao/dl0/x.fits``,
``lfn:ctao:/ctao/dl0/x.fits``, ``lfn:/x.fits@v2``) or a CWL File object with such a location.
A local path is refused: processing in place means the data is in the archive first. A DID
that does not exist is an error at submission; one that exists but has no readable replica is
fine here (the job then waits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, cast

from sqlalchemy.orm import Session

from dpps.bdms import resolve
from dpps.bdms.types import FileRef
from dpps.core.errors import InvalidInput
from dpps.core.identifiers import DID, parse_did
from dpps.wms.expressions import file_object
from dpps.wms.spec import LFN_SCHEME, InputPort, base_type


def parse_location(value: Any, default_scope: str, where: str) -> DID:
    location = value.get("location") or value.get("path") if isinstance(value, Mapping) else value
    if not isinstance(location, str) or not location.startswith(LFN_SCHEME):
        raise InvalidInput(
            f"{where}: {location!r} is not an archive file; write it as lfn:/path/in/archive "
            "(ingest local files into the archive first)"
        )
    return parse_did(location[len(LFN_SCHEME) :], default_scope)


def file_value(ref: FileRef) -> dict[str, Any]:
    """The File object of an archive file, with what the WMS needs to find it again."""
    obj = file_object(f"{LFN_SCHEME}{ref.label}", PurePosixPath(ref.name).name, ref.bytes)
    obj["did"] = ref.label
    obj["did_id"] = ref.id
    return obj


def _file(session: Session, value: Any, default_scope: str, where: str) -> dict[str, Any]:
    if isinstance(value, Mapping) and value.get("class") == "File" and value.get("did_id"):
        return dict(value)  # already bound (a step output handed to the next step)
    did = parse_location(value, default_scope, where)
    return file_value(resolve.file_ref(session, did))


def _scalar(core: str, value: Any, where: str) -> Any:
    checks: dict[str, tuple[type, ...]] = {
        "string": (str,),
        "int": (int,),
        "float": (int, float),
        "boolean": (bool,),
    }
    if isinstance(value, bool) and core in ("int", "float"):
        raise InvalidInput(f"{where}: expected {core}, got a boolean")
    if not isinstance(value, checks[core]):
        raise InvalidInput(f"{where}: expected {core}, got {type(value).__name__} {value!r}")
    return float(cast(float, value)) if core == "float" else value


def bind_value(
    session: Session, port: InputPort, value: Any, default_scope: str, where: str
) -> Any:
    """Check one value against its port's type; resolve archive files."""
    core, array, optional = base_type(port.type)
    if value is None:
        if port.default is not None:
            value = port.default
        elif optional:
            return None
        else:
            raise InvalidInput(f"{where}: required input {port.name!r} is missing")
    if array:
        if not isinstance(value, list | tuple):
            raise InvalidInput(f"{where}: input {port.name!r} must be a list ({port.type})")
        items = list(value)
    else:
        if isinstance(value, list | tuple):
            raise InvalidInput(f"{where}: input {port.name!r} takes one value ({port.type})")
        items = [value]
    if core == "File":
        bound = [_file(session, v, default_scope, f"{where}.{port.name}") for v in items]
    else:
        bound = [_scalar(core, v, f"{where}.{port.name}") for v in items]
    return bound if array else bound[0]


def bind_inputs(
    session: Session,
    ports: Sequence[InputPort],
    given: Mapping[str, Any],
    default_scope: str,
    where: str,
) -> dict[str, Any]:
    known = {p.name for p in ports}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidInput(
            f"{where}: unknown input(s) {', '.join(unknown)} (inputs: {', '.join(sorted(known))})"
        )
    return {p.name: bind_value(session, p, given.get(p.name), default_scope, where) for p in ports}
