"""Verification by analysis: a required quantity against a measured one, and the margin.

A requirement such as "at least 6 PB/yr" is not a test outcome but a comparison of a figure
the benchmarks measure (MB/s on the reference machine) with the figure the requirement states,
in other units. Doing the unit conversion here, once and tested, keeps the registry honest:
it records both numbers as their sources state them and never a hand-converted value.

Pure functions only; where the measured value comes from (the registry's recorded figure or a
benchmark JSON file) is decided by :mod:`dpps.verify.trace`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dpps.core.errors import InvalidInput

_YEAR_S = 365.25 * 86400.0
_MONTH_S = 30 * 86400.0  # the registry reads "one month" as 30 days

#: Units of a byte rate, in bytes per second.
BYTE_RATES: dict[str, float] = {
    "B/s": 1.0,
    "kB/s": 1e3,
    "MB/s": 1e6,
    "GB/s": 1e9,
    "Mbit/s": 1e6 / 8,
    "Gbit/s": 1e9 / 8,
    "TB/day": 1e12 / 86400.0,
    "PB/month": 1e15 / _MONTH_S,
    "PB/yr": 1e15 / _YEAR_S,
}
#: Units of a duration, in seconds.
DURATIONS: dict[str, float] = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "day": 86400.0}

Compare = Literal["at_least", "at_most"]


class Quantity(BaseModel):
    """A value with its unit, as a source states it.

    A count rate (``images/s``, ``files/s``) becomes a byte rate with ``bytes_per_item``, so a
    throughput in images can be compared with a volume per year.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float = Field(gt=0, description="The number, as the source states it.")
    unit: str = Field(description="A unit of BYTE_RATES or DURATIONS, or '<items>/s'.")
    bytes_per_item: float | None = Field(
        default=None, gt=0, description="Bytes per counted item, for a count rate."
    )

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, unit: str) -> str:
        if unit in BYTE_RATES or unit in DURATIONS or _count_item(unit):
            return unit
        known = ", ".join([*BYTE_RATES, *DURATIONS, "<items>/s"])
        raise ValueError(f"unknown unit {unit!r} (known: {known})")

    def __str__(self) -> str:
        return f"{self.value:,.4g} {self.unit}"


def _count_item(unit: str) -> str | None:
    """``images`` for ``images/s``; None for anything that is not a count per second."""
    item, _, per = unit.partition("/")
    return item if per == "s" and item.isalpha() and unit not in BYTE_RATES else None


def to_base(quantity: Quantity) -> tuple[str, float]:
    """(dimension, value in base units): ``byte-rate`` in B/s, ``time`` in s, or a count rate.

    A count rate with ``bytes_per_item`` is a byte rate; without, its dimension is
    ``<items>/s`` and it compares only with the same count rate.
    """
    if quantity.unit in BYTE_RATES:
        return "byte-rate", quantity.value * BYTE_RATES[quantity.unit]
    if quantity.unit in DURATIONS:
        return "time", quantity.value * DURATIONS[quantity.unit]
    if quantity.bytes_per_item is not None:
        return "byte-rate", quantity.value * quantity.bytes_per_item
    return quantity.unit, quantity.value


def margin(required: Quantity, measured: Quantity, compare: Compare) -> float:
    """How many times the measured figure meets the required one (>= 1: met).

    ``at_least`` (a rate): measured / required; ``at_most`` (a duration): required / measured.
    Raises :class:`InvalidInput` when the two are not of one dimension (MB/s against seconds).
    """
    req_dim, req = to_base(required)
    got_dim, got = to_base(measured)
    if req_dim != got_dim:
        raise InvalidInput(
            f"cannot compare {measured} ({got_dim}) with the required {required} ({req_dim})"
        )
    return got / req if compare == "at_least" else req / got


def in_unit_of(quantity: Quantity, reference: Quantity) -> float:
    """``quantity`` expressed in ``reference``'s unit, so a report can show both side by side."""
    dim, base = to_base(quantity)
    ref_dim, ref_base = to_base(reference)
    if dim != ref_dim:
        raise InvalidInput(f"cannot express {quantity} in {reference.unit}")
    return base / ref_base * reference.value
