"""The observatory's time conventions: DL0 event times in TAI, files filed by observing night.

* DL0 event times are TAI seconds since 1970 plus quarter nanoseconds (``tai``); monitoring
  tables and every later data level use UTC. TAI - UTC has been 37 s since 2017-01-01.
* A file belongs to the observing night it was taken in: the date of the evening, the day
  changing at 12:00 UTC (at both sites the same night as a local-noon cut-off). Archive paths
  and the ``OBSNIGHT`` keyword use it.
"""

from __future__ import annotations

import datetime as dt
import math

#: TAI - UTC (s), constant since 2017-01-01; DL0 event times are TAI.
TAI_UTC_S = 37


def observing_night(when: dt.datetime) -> dt.date:
    """The date of the evening the night began (day boundary at 12:00 UTC)."""
    return (when - dt.timedelta(hours=12)).date()


def tai(unix_s: float) -> tuple[int, int]:
    """A UTC time (unix seconds) as DL0 stores it: (TAI seconds, quarter nanoseconds)."""
    seconds = math.floor(unix_s)
    return int(seconds) + TAI_UTC_S, round((unix_s - seconds) * 4e9) % 4_000_000_000
