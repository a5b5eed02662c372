"""Enumerations shared by the catalog, the archive and the workload manager."""

from __future__ import annotations

from enum import StrEnum


class DIDType(StrEnum):
    FILE = "FILE"
    DATASET = "DATASET"
    CONTAINER = "CONTAINER"


class ReplicaState(StrEnum):
    COPYING = "COPYING"
    AVAILABLE = "AVAILABLE"
    BAD = "BAD"
    UNAVAILABLE = "UNAVAILABLE"
    BEING_DELETED = "BEING_DELETED"


class RuleState(StrEnum):
    OK = "OK"
    REPLICATING = "REPLICATING"
    STUCK = "STUCK"
    SUSPENDED = "SUSPENDED"


class RSEKind(StrEnum):
    DISK = "disk"
    TAPE = "tape"


class DataLevel(StrEnum):
    """CTAO data levels, from raw (DL0) to science-ready (DL3) and beyond."""

    R0 = "R0"
    R1 = "R1"
    DL0 = "DL0"
    DL1 = "DL1"
    DL2 = "DL2"
    DL3 = "DL3"
    DL4 = "DL4"
    DL5 = "DL5"
    CAL = "CAL"
    MON = "MON"
    QUAL = "QUAL"
    OTHER = "OTHER"


class Category(StrEnum):
    """Processing category: A (real time), B (next day), C (final), SIM (simulation)."""

    A = "A"
    B = "B"
    C = "C"
    SIM = "SIM"


class TransferState(StrEnum):
    """A copy a rule needs: QUEUED until claimed, ACTIVE while copying, then one final state."""

    QUEUED = "QUEUED"
    ACTIVE = "ACTIVE"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


def parse_state[E: StrEnum](kind: type[E], text: str, what: str) -> E:
    """A state given by a user (any case), or a clear error naming the known ones: the one
    check the library, the REST API and the remote client make (``what``: "rule", ...)."""
    from dpps.core.errors import InvalidInput

    try:
        return kind(text.upper())
    except ValueError:
        known = ", ".join(s.value for s in kind)
        raise InvalidInput(f"unknown {what} state {text!r} (use {known})") from None
