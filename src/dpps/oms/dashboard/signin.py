"""What stands in front of the dashboard's sign-in and sign-out forms.

``LoginThrottle``: wrong tokens are counted per client address over a sliding window, and
past ``LIMIT`` the form answers 429 without looking the token up (an adversarial run tried 200
wrong tokens in 0.4 s). It lives in the process: each worker of ``dpps serve --workers N``
counts its own, which still bounds guessing to N x LIMIT per window.

``same_origin``: the forms change state (a session opened or revoked), so a POST must come
from a page of this site. Browsers send ``Origin`` on every cross-site POST; a request whose
``Origin`` (or, without one, ``Referer``) names another site is refused. Clients that send
neither (scripts, tests) are no cross-site forgery.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from urllib.parse import urlsplit

from fastapi import Request

#: Wrong tokens allowed per client address and window.
LIMIT = 10
WINDOW_S = 60.0


class LoginThrottle:
    def __init__(self, limit: int = LIMIT, window_s: float = WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        seen = self._failures[client]
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        return seen

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            seen = self._recent(client, now)
            if len(seen) < self.limit:
                return 0
            return max(1, int(seen[0] + self.window_s - now) + 1)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._failures) > 10_000:  # forget idle clients rather than grow forever
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]


def throttle(request: Request) -> LoginThrottle:
    """The application's throttle (one per app, created on first use)."""
    found = getattr(request.app.state, "login_throttle", None)
    if found is None:
        found = request.app.state.login_throttle = LoginThrottle()
    assert isinstance(found, LoginThrottle)
    return found


def client_of(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def same_origin(request: Request) -> bool:
    """False when the request names another site as its origin (see the module docstring)."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed:
        return True
    if claimed == "null":
        return False
    origin = urlsplit(claimed)
    return (origin.scheme, origin.netloc) == (request.url.scheme, request.url.netloc)
