"""Quality criteria: typed, read from YAML, evaluated against metrics.

A criteria file::

    criteria:
      - kind: range                      # value must lie in [min, max] (either may be left out)
        metric: dl1.image_rate_hz        # a name from qualpipe.metrics.METRICS
        min: 0.5
        max: 500
      - kind: threshold                  # value <op> limit
        metric: calibration.unusable_fraction
        op: "<="
        value: 0.05
        severity: warning                # error (default) fails the report; warning does not
        required: true                   # a missing metric fails (default false: "missing")

Every model forbids unknown keys, and metric names are checked against the list of metrics,
so a misspelled key or metric is a ``ConfigError`` naming the file and the entry, never a
check that silently does not run. A per-telescope metric is checked for every telescope.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dpps.core.errors import ConfigError
from dpps.pipelines.qualpipe.metrics import METRICS, MetricValue

Severity = Literal["error", "warning"]
Status = Literal["pass", "fail", "missing"]


class _Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(description="metric name (qualpipe.metrics.METRICS)")
    severity: Severity = Field("error", description="error fails the report; warning does not")
    required: bool = Field(False, description="a missing metric counts as a failure")
    description: str = Field("", description="why this criterion exists, for the report")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}")
        return name


class Range(_Criterion):
    """The value must lie in ``[min, max]``; a missing bound is open."""

    kind: Literal["range"]
    min: float | None = Field(None, description="lowest allowed value (inclusive)")
    max: float | None = Field(None, description="highest allowed value (inclusive)")

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def accepts(self, value: float) -> bool:
        low = -math.inf if self.min is None else self.min
        high = math.inf if self.max is None else self.max
        return low <= value <= high

    def describe(self) -> str:
        low = "-inf" if self.min is None else f"{self.min:g}"
        high = "+inf" if self.max is None else f"{self.max:g}"
        return f"in [{low}, {high}]"


class Threshold(_Criterion):
    """The value compared with a limit: ``value <op> limit``."""

    kind: Literal["threshold"]
    op: Literal["<", "<=", ">", ">="] = Field(description="comparison with the limit")
    value: float = Field(description="the limit")

    def accepts(self, value: float) -> bool:
        return {
            "<": value < self.value,
            "<=": value <= self.value,
            ">": value > self.value,
            ">=": value >= self.value,
        }[self.op]

    def describe(self) -> str:
        return f"{self.op} {self.value:g}"


Criterion = Annotated[Range | Threshold, Field(discriminator="kind")]


class CriteriaFile(BaseModel):
    """The whole YAML document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    criteria: list[Criterion] = Field(min_length=1, description="the checks, in report order")


def parse_criteria(data: Any, source: str) -> list[Range | Threshold]:
    """Validate already-parsed YAML/JSON; ``ConfigError`` lists every problem with its place."""
    try:
        return list(CriteriaFile.model_validate(data).criteria)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"quality criteria {source}: {problems}") from None


def load_criteria(path: Path | None = None) -> list[Range | Threshold]:
    """Criteria from a YAML file, or the packaged defaults (``default_criteria.yaml``)."""
    if path is None:
        text = resources.files(__package__).joinpath("default_criteria.yaml").read_text("utf-8")
        source = "(packaged defaults)"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read quality criteria {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"quality criteria {source} is not valid YAML: {exc}") from None
    return parse_criteria(data, source)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One criterion applied to one metric value (or to its absence)."""

    metric: str
    tel_id: int | None
    value: float | None
    criterion: str
    severity: Severity
    status: Status
    description: str = ""

    @property
    def failing(self) -> bool:
        """Whether this result makes the report fail."""
        return self.status == "fail" and self.severity == "error"

    def as_dict(self) -> dict[str, Any]:
        value = self.value if self.value is None or math.isfinite(self.value) else str(self.value)
        return {
            "metric": self.metric,
            "tel_id": self.tel_id,
            "value": value,
            "unit": METRICS[self.metric][0],
            "criterion": self.criterion,
            "severity": self.severity,
            "status": self.status,
            "description": self.description,
        }


def evaluate(
    criteria: Sequence[Range | Threshold], metrics: Sequence[MetricValue]
) -> list[CheckResult]:
    """Apply every criterion to every value of its metric. A non-finite value fails (a NaN
    median means there was nothing to take it of); an absent metric is ``missing``, which
    fails only a ``required`` criterion."""
    by_name: dict[str, list[MetricValue]] = {}
    for m in metrics:
        by_name.setdefault(m.name, []).append(m)
    results: list[CheckResult] = []
    for c in criteria:
        values = by_name.get(c.metric, [])
        if not values:
            status: Status = "fail" if c.required else "missing"
            results.append(
                CheckResult(c.metric, None, None, c.describe(), c.severity, status, c.description)
            )
            continue
        for m in values:
            ok = math.isfinite(m.value) and c.accepts(m.value)
            results.append(
                CheckResult(
                    c.metric,
                    m.tel_id,
                    m.value,
                    c.describe(),
                    c.severity,
                    "pass" if ok else "fail",
                    c.description,
                )
            )
    return results
