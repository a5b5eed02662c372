"""One priority scale for everything that queues: replication rules (and their transfers),
jobs, transformations and campaigns.

Why: rules ran 0-5 and jobs 0-10 (issue 14), so an operator could not say "this matters more"
the same way to both. One scale, one check, one message: 0 lowest .. 10 highest, 3 by default.
Priority only orders work (higher first); a rule's old 0-5 values keep their order.
"""

from __future__ import annotations

from dpps.core.errors import InvalidInput

LOWEST = 0
HIGHEST = 10
DEFAULT = 3

#: For option and field help texts.
HELP = f"{LOWEST} lowest .. {HIGHEST} highest (default {DEFAULT})."


def check_priority(value: int) -> int:
    """``value`` if on the scale, else ``InvalidInput`` (exit 3, HTTP 400)."""
    if isinstance(value, bool) or not isinstance(value, int) or not LOWEST <= value <= HIGHEST:
        raise InvalidInput(f"priority must be between {LOWEST} and {HIGHEST}, not {value!r}")
    return value
