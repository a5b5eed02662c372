"""Settings and strategies shared by the property tests.

Hypothesis runs derandomized and without its example database, so CI sees the same cases on
every run and a local run leaves nothing behind; ``DPPS_PROPERTY_EXAMPLES`` scales the number
of examples (default 150; tests that touch a real catalog per example take a fifth).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("DPPS_PROPERTY_EXAMPLES", "150"))

PARSER = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CATALOG = settings(PARSER, max_examples=max(10, EXAMPLES // 5))

#: Text as a person types it, including what breaks parsers: markup, quotes, control characters,
#: NUL, lone surrogates (undecodable command-line bytes), the last code point.
hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(codec=None),
        st.sampled_from(list("()[]=!<>,'\"\\%_ .-+@:/\x00\ud800\U0010ffff")),
    ),
    max_size=60,
)
