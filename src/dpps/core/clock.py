"""The catalog's clock: naive UTC datetimes.

Timestamps are stored without a time zone because SQLite has none and both backends must compare
them the same way; every layer that writes or compares a catalog time takes it from here, so no
module has to import the catalog's tables just to know what "now" is.
"""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
