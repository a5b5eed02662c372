"""The requirements registry: what the stakeholders require, and how each is verified.

``requirements.yaml``, shipped beside ``usecases.yaml``, lists each requirement with a project
id (``REQ-BDMS-001``; the observatory's own id goes to ``official_id`` once known, never
guessed), its text as the source document states it, that document, and its verification
method: ``test`` (through the use cases that trace to it), ``analysis`` (a required figure
against a measured one) or ``inspection`` (what was inspected and found).

Use cases name the requirements they trace to. :func:`check_trace` rejects a use case naming
an unknown requirement, so the traceability matrix cannot point into nothing; the pytest
plugin runs it before any test, ``dpps verify`` before any report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dpps.core.errors import InvalidInput, NotFound
from dpps.verify.analysis import Compare, Quantity, margin
from dpps.verify.registry import UseCase

#: ``REQ-<AREA>-<three digits>``: a project id, e.g. ``REQ-BDMS-001``.
REQUIREMENT_ID_PATTERN = re.compile(r"^REQ-[A-Z]+-\d{3}$")

_PACKAGED = "requirements.yaml"


class Method(StrEnum):
    """How a requirement is verified."""

    TEST = "test"
    ANALYSIS = "analysis"
    INSPECTION = "inspection"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Frozen):
    """Where the requirement's text comes from."""

    document: str = Field(description="Key of the registry's documents (the seed's file name).")
    section: str = Field(default="", description="Slide title or heading in that document.")


class AnalysisFigure(_Frozen):
    """One comparison: the required figure, the measured one, and where the latter comes from."""

    figure: str = Field(min_length=1, description="What was measured, and on what.")
    compare: Compare
    required: Quantity
    measured: Quantity
    recorded: str = Field(min_length=1, description="Where the measured value was recorded.")
    benchmark: str | None = Field(
        default=None,
        description="Dotted path into 'benchmarks/run_all.py --json' output that replaces the "
        "recorded value, in the measured unit (e.g. acada.big.ingest_mb_s).",
    )

    @model_validator(mode="after")
    def _comparable(self) -> Self:
        margin(self.required, self.measured, self.compare)  # raises on a dimension mismatch
        return self


class Inspection(_Frozen):
    """What was inspected (paths in the repository) and what was found."""

    evidence: tuple[str, ...] = Field(min_length=1)
    finding: str = Field(min_length=1)


class Requirement(_Frozen):
    """One requirement of a stakeholder, with its source and verification method."""

    id: str
    official_id: str | None = Field(description="The observatory's id; null while unknown.")
    name: str = Field(min_length=1)
    text: str | None = Field(description="As the source states it; null if it shows only a name.")
    source: Source
    verification: Method
    analysis: tuple[AnalysisFigure, ...] = ()
    inspection: Inspection | None = None
    note: str = ""

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not REQUIREMENT_ID_PATTERN.fullmatch(value):
            raise ValueError(
                f"requirement id {value!r} does not match {REQUIREMENT_ID_PATTERN.pattern}"
            )
        return value

    @model_validator(mode="after")
    def _method_has_its_evidence(self) -> Self:
        """An analysis needs figures, an inspection its finding; neither may hang on the other."""
        if (self.verification is Method.ANALYSIS) != bool(self.analysis):
            raise ValueError("'analysis' figures are required with, and only with, analysis")
        if (self.verification is Method.INSPECTION) != (self.inspection is not None):
            raise ValueError("'inspection' is required with, and only with, inspection")
        return self


class RequirementRegistry(_Frozen):
    """The documents quoted and the requirements, keyed by id in file order."""

    documents: dict[str, str]
    requirements: dict[str, Requirement]


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = ".".join(str(part) for part in error["loc"]) or "entry"
    return f"{loc}: {error['msg']}"


def parse_requirements(content: Any, where: str = "requirements") -> RequirementRegistry:
    """Validate loaded YAML (``documents`` and ``requirements``) into a registry.

    Raises :class:`InvalidInput` naming the offending entry: a malformed or duplicate id, an
    official id used twice, a source document not among ``documents``, an unknown field.
    """
    if not isinstance(content, dict) or set(content) != {"documents", "requirements"}:
        raise InvalidInput(f"{where}: expected a mapping with 'documents' and 'requirements'")
    documents, entries = content["documents"], content["requirements"]
    if not isinstance(documents, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in documents.items()
    ):
        raise InvalidInput(f"{where}: 'documents' must map file names to titles")
    if not isinstance(entries, list):
        raise InvalidInput(f"{where}: 'requirements' must be a list")
    requirements: dict[str, Requirement] = {}
    official: dict[str, str] = {}
    for index, entry in enumerate(entries):
        label = entry.get("id", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
        try:
            requirement = Requirement.model_validate(entry)
        except ValidationError as exc:
            raise InvalidInput(
                f"{where}: invalid requirement {label}: {_first_error(exc)}"
            ) from exc
        if requirement.id in requirements:
            raise InvalidInput(f"{where}: duplicate requirement id {requirement.id}")
        if requirement.source.document not in documents:
            raise InvalidInput(
                f"{where}: requirement {requirement.id} cites {requirement.source.document!r}, "
                "which is not in 'documents'"
            )
        if requirement.official_id is not None:
            if requirement.official_id in official:
                raise InvalidInput(
                    f"{where}: official id {requirement.official_id} given to both "
                    f"{official[requirement.official_id]} and {requirement.id}"
                )
            official[requirement.official_id] = requirement.id
        requirements[requirement.id] = requirement
    return RequirementRegistry(documents=documents, requirements=requirements)


def load_requirements(path: Path | None = None) -> RequirementRegistry:
    """Load the requirements registry, by default the one shipped with dpps."""
    if path is None:
        resource = resources.files("dpps.verify").joinpath(_PACKAGED)
        text, where = resource.read_text(encoding="utf-8"), f"dpps.verify/{_PACKAGED}"
    else:
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise NotFound(f"requirements registry {path} does not exist") from exc
        except (IsADirectoryError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                f"requirements registry {path} is not a readable text file"
            ) from exc
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from exc
    return parse_requirements(content, where)


def unknown_requirements(
    usecases: Mapping[str, UseCase], requirements: Mapping[str, Requirement]
) -> dict[str, list[str]]:
    """Each requirement id named by a use case but not in the registry, with those use cases."""
    unknown: dict[str, list[str]] = {}
    for usecase in usecases.values():
        for requirement_id in usecase.requirements:
            if requirement_id not in requirements:
                unknown.setdefault(requirement_id, []).append(usecase.id)
    return unknown


def check_trace(usecases: Mapping[str, UseCase], requirements: Mapping[str, Requirement]) -> None:
    """Raise :class:`InvalidInput` listing every unknown requirement id and who names it."""
    unknown = unknown_requirements(usecases, requirements)
    if unknown:
        listed = "; ".join(f"{rid} (named by {', '.join(ucs)})" for rid, ucs in unknown.items())
        raise InvalidInput(
            f"{len(unknown)} requirement id(s) named by use cases are not in the requirements "
            f"registry (src/dpps/verify/requirements.yaml): {listed}"
        )


def usecases_of(usecases: Mapping[str, UseCase], requirement_id: str) -> tuple[str, ...]:
    """The ids of the use cases tracing to ``requirement_id``, in registry order."""
    return tuple(uc.id for uc in usecases.values() if requirement_id in uc.requirements)
