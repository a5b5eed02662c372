"""Event types, numbered as CTAO DL0 data (and ctapipe's ``EventType``) number them.

The simulators write these numbers into DL0 files and the pipelines select events by them
(CalibPipe keeps flat-field and pedestal events, DataPipe showers): one enum for both sides.
"""

from __future__ import annotations

from enum import IntEnum


class EventType(IntEnum):
    """Event types as CTAO DL0 data (and ctapipe's ``EventType``) number them."""

    FLATFIELD = 0
    SKY_PEDESTAL = 2
    MUON = 16
    SUBARRAY = 32
