"""Durations as people type them: ``30d``, ``12h``, ``90m``, ``2w`` or plain seconds.

Why: operators coming from Rucio give rule lifetimes in seconds (``--lifetime 2592000``) and
everyone else in days or hours; one parser gives every command the same answer and the same
error. A bare number is seconds, as in Rucio; a unit makes it explicit.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from dpps.core.errors import InvalidInput

#: Seconds per unit; no unit means seconds.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}

#: The longest duration accepted (100 years: any longer is a typo, and overflows dates).
MAX = dt.timedelta(days=36_500)

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[smhdw]?)\s*$", re.IGNORECASE)


def parse_duration(text: str, *, what: str = "duration") -> dt.timedelta:
    """``30d`` -> 30 days, ``12h``, ``90m``, ``2w``, ``3600`` or ``3600s`` -> one hour.

    Zero, negative, malformed or longer than 100 years: ``InvalidInput`` naming ``what``.
    """
    m = _DURATION.match(text)
    if m is None:
        raise InvalidInput(
            f"invalid {what} {text!r}: a number of seconds, or with a unit: 30d, 12h, 90m, 2w"
        )
    seconds = float(m["n"]) * UNITS[(m["unit"] or "s").lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(f"invalid {what} {text!r}: it must be longer than 0 seconds")
    if seconds > MAX.total_seconds():
        raise InvalidInput(f"invalid {what} {text!r}: at most {MAX.days} days")
    return dt.timedelta(seconds=seconds)
