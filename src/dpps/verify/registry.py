"""The use-case registry: which use cases exist, so tests can only claim to verify real ones.

The registry is a YAML file shipped with the package (``usecases.yaml``). It is the single
list both the pytest plugin (rejects unknown ids at collection) and the report (one row per use
case, including those no test verifies yet) read, so the two cannot disagree.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dpps.core.errors import InvalidInput, NotFound

#: ``UC-<three digits>-<number>[.<number>...]``, as the observatory's use-case documents number
#: them (e.g. ``UC-110-1.2.1``).
USECASE_ID_PATTERN = re.compile(r"^UC-\d{3}-\d+(\.\d+)*$")

Subsystem = Literal["BDMS", "WMS", "PIPELINES", "OMS", "CORE", "AIV"]

_PACKAGED_REGISTRY = "usecases.yaml"


class UseCase(BaseModel):
    """One use case: what a user achieves, and the requirements it traces to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="Use-case id, e.g. UC-110-1.2.1.")
    name: str = Field(min_length=1, description="One line: what the user achieves.")
    subsystem: Subsystem = Field(description="The dpps subsystem that implements it.")
    requirements: tuple[str, ...] = Field(
        default=(), description="Ids of the requirements this use case traces to."
    )
    description: str = Field(default="", description="Actor, trigger and expected outcome.")
    revision: int = Field(
        default=1, ge=1, description="Raised when what the use case asks for changes."
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not USECASE_ID_PATTERN.fullmatch(value):
            raise ValueError(f"use-case id {value!r} does not match {USECASE_ID_PATTERN.pattern}")
        return value


def _read_text(path: Path | None) -> tuple[str, str]:
    """Return (text, where) of the given registry file or of the packaged one."""
    if path is None:
        resource = resources.files("dpps.verify").joinpath(_PACKAGED_REGISTRY)
        return resource.read_text(encoding="utf-8"), f"dpps.verify/{_PACKAGED_REGISTRY}"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except FileNotFoundError as exc:
        raise NotFound(f"use-case registry {path} does not exist") from exc
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"use-case registry {path} is not a readable text file") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = ".".join(str(part) for part in error["loc"]) or "entry"
    return f"{loc}: {error['msg']}"


def parse_registry(entries: Any, where: str = "registry") -> dict[str, UseCase]:
    """Validate already-loaded YAML content (a list of mappings) into use cases by id.

    Separate from :func:`load_registry` so callers holding data (tests, other formats) need not
    write a file. Raises :class:`InvalidInput` naming the offending entry.
    """
    if not isinstance(entries, list):
        raise InvalidInput(f"{where}: expected a list of use cases, got {type(entries).__name__}")
    registry: dict[str, UseCase] = {}
    for index, entry in enumerate(entries):
        label = entry.get("id", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
        try:
            usecase = UseCase.model_validate(entry)
        except ValidationError as exc:
            raise InvalidInput(
                f"{where}: invalid use case {label}: {_first_error(exc)} (entry: {entry!r})"
            ) from exc
        if usecase.id in registry:
            raise InvalidInput(f"{where}: duplicate use-case id {usecase.id}")
        registry[usecase.id] = usecase
    return registry


def load_registry(path: Path | None = None) -> dict[str, UseCase]:
    """Load the use-case registry, by default the one shipped with dpps, keyed by id.

    Ids must be unique and match :data:`USECASE_ID_PATTERN`; unknown fields are errors, so a
    misspelled key never silently drops information.
    """
    text, where = _read_text(path)
    try:
        entries = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise InvalidInput(f"{where}: not valid YAML: {detail}") from exc
    return parse_registry(entries, where)
